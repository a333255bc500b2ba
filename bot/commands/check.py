"""`doorstep check`: validate the configuration files; a wrong file gets one line naming file and key."""

from __future__ import annotations

import argparse
import stat

from bot.config import Config, load_config
from bot.credentials import ENV_OF, SECRETS_FILE, exposure_problem, is_loopback


def secret_warnings(c: Config) -> list[str]:
    """What `check` warns about secrets: shipped defaults (refused beyond loopback), a secrets file others
    can read."""
    out = []
    host = c.main.http.host
    for setting in c.shipped_defaults():
        where = (
            f"serve refuses it on {host or 'every interface'}"
            if not is_loopback(host)
            else "serve refuses it beyond loopback"
        )
        out.append(
            f"warning: {setting} is the value Doorstep once shipped with, known to everyone ({where}); "
            f"set your own (${ENV_OF[setting]}) or leave it empty to have one generated"
        )
    problem = exposure_problem(host, c.shipped_defaults())
    if problem:
        out.append(f"warning: http.host is {host or 'every interface'}: {problem}")
    path = c.data_dir / SECRETS_FILE
    if path.exists() and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        out.append(f"warning: {path} can be read by other users: chmod 600 it")
    return out


def _secrets_line(c: Config) -> str:
    configured = [
        name
        for name, value in (
            ("http.admin_token", c.main.http.admin_token),
            ("tickets.webhook_secret", c.main.tickets.webhook_secret),
            ("tickets.api_keys", ",".join(c.main.tickets.api_keys)),
        )
        if value
    ]
    generated = 3 - len(configured)
    path = c.data_dir / SECRETS_FILE
    if not generated:
        return "secrets: all configured"
    state = "in" if path.exists() else "on first start into"
    return f"secrets: {len(configured)} configured, {generated} generated {state} {path}"


def run(args: argparse.Namespace) -> int:
    c = load_config()
    print(f"config: {c.path}")
    print(f"groups: {len(c.groups.groups)} in {len(c.groups.communities)} communities")
    print(f"staff: {len(c.staff.staff)}")
    print(f"services: {len(c.services.services)}")
    print(f"lexicon terms: {len(c.lexicon.terms)}; FAQ entries: {len(c.faq.faq)}")
    print(f"store: {c.database_url}")
    print(f"index: {c.main.index.chroma_url or c.index_dir}")
    print(_secrets_line(c))
    for w in secret_warnings(c):
        print(w)
    print("ok")
    return 0
