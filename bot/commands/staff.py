"""`doorstep staff set-password ID` and `doorstep staff list`: workbench sign-in for the staff of staff.yaml.

The password is asked twice on a terminal (or read from stdin with --password-stdin) and only its scrypt hash
is kept, in the store that `serve` uses; the staff member's open sessions end. A running `serve` needs no
restart."""

from __future__ import annotations

import argparse
import getpass
import sys

from bot.clock import SystemClock
from bot.config import load_config
from core.errors import UserError
from store import Store


def run(args: argparse.Namespace) -> int:
    from workbench.auth import Auth, AuthError

    config = load_config()
    store = Store(config.database_url)
    store.migrate()
    auth = Auth(store)  # setting a password needs no session lengths
    try:
        if args.staff_command == "list":
            for s in config.staff.staff:
                has = "password set" if auth.has_password(s.id) else "no password (sign in with a link)"
                print(f"{s.id}\t{s.name}\t{'、'.join(s.roles)}\t{has}")
            return 0
        staff = config.staff_member(args.staff_id)
        if staff is None:
            raise UserError(
                f"no staff member {args.staff_id!r} in {config.path.parent / config.main.files.staff}"
            )
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass(f"New workbench password for {staff.name} ({staff.id}): ")
            if getpass.getpass("Again: ") != password:
                raise UserError("the two passwords differ; nothing changed")
        try:
            auth.set_password(staff, password, SystemClock().now())
        except AuthError as e:
            raise UserError(f"password refused: {e}") from None
        print(f"password set for {staff.name} ({staff.id}); their open workbench sessions are ended")
        return 0
    finally:
        store.close()
