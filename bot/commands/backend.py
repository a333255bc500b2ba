"""`doorstep backend [--host H] [--port P] [--db URL]`: the built-in Open311 GeoReport v2 backend alone, at
`http://H:P/open311/v2` as the contract says."""

from __future__ import annotations

import argparse
import asyncio

import uvicorn

from backend import create_backend_app
from backend.api import GEOREPORT_PATH
from bot.builtin_backend import backend_settings
from bot.cli import UserError
from bot.commands.serve import bind_listener
from bot.config import Config, load_config
from bot.credentials import exposure_problem


def _refuse_shipped_secrets(config: Config, host: str) -> None:
    """As `serve` does: with a shipped API key or webhook secret, listen on loopback only."""
    problem = exposure_problem(host, config.shipped_defaults(backend_only=True))
    if problem:
        raise UserError(problem)
    _ = (config.webhook_secret, config.api_keys)  # generated now, or one line if unreadable


def run(args: argparse.Namespace) -> int:
    config = load_config()
    _refuse_shipped_secrets(config, args.host)
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}")
    db = args.db or config.main.storage.url or None
    if db is not None and "://" not in db:
        raise UserError(f"--db must be a SQLAlchemy URL such as sqlite:///open311.db, got {db!r}")
    settings = backend_settings(config, db)
    sock = bind_listener(args.host, args.port)  # a taken port is one line; a restart after a crash works
    try:
        try:
            app = create_backend_app(settings)
        except Exception as e:  # an unreachable or unwritable database
            raise UserError(f"cannot open the ticket database {settings.db_url}: {e}") from None
        print(
            f"Open311 GeoReport v2 backend: http://{args.host}:{args.port}{GEOREPORT_PATH}/services.json "
            f"(jurisdiction_id={settings.jurisdiction_id}, database {settings.db_url})",
            flush=True,
        )
        asyncio.run(uvicorn.Server(uvicorn.Config(app, log_level="info")).serve(sockets=[sock]))
    finally:
        sock.close()
    return 0
