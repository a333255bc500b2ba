"""`doorstep serve`: the bot with its channels, the admin API and the built-in ticket backend."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import socket

import uvicorn

from bot.app import STOP_TIMEOUT, App
from bot.channels.base import ChannelError
from bot.config import load_config
from bot.errors import UserError
from bot.runtime import build_app
from bot.web.app import create_web_app
from knowledge.handoff import local_url, serve_claim

log = logging.getLogger(__name__)


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UserError(
                    f"port {port} on {host} is already in use (set DOORSTEP_PORT to another)"
                ) from None
            raise UserError(f"cannot listen on {host}:{port}: {e.strerror}") from None


async def _serve(app: App, host: str, port: int) -> None:
    # Channels start before the HTTP side, so a wrong WeChat token or an unreachable puppet service is one
    # clear line and exit 2 rather than a web server that runs without its channel.
    try:
        await app.start()
    except ChannelError as e:
        await app.stop()
        raise UserError(str(e)) from None
    server = uvicorn.Server(
        uvicorn.Config(
            create_web_app(app, manage_lifecycle=False),
            host=host,
            port=port,
            log_level="info",
            timeout_graceful_shutdown=int(STOP_TIMEOUT),  # then an upload still ingesting is interrupted
        )
    )
    print(
        f"Doorstep is running: open http://{host}:{port}/ (simulator), http://{host}:{port}/health",
        flush=True,
    )
    try:
        await server.serve()
    finally:
        await app.stop()


def run(args: argparse.Namespace) -> int:
    config = load_config()
    host, port = config.main.http.host, config.http_port
    _check_port_free(host, port)
    # the one writer of its index while it runs: `kb ingest` hands its files to this process (knowledge/handoff.py)
    with serve_claim(config.index_dir, local_url(host, port), shared=bool(config.main.index.chroma_url)):
        app = build_app(config)
        asyncio.run(_serve(app, host, port))
    return 0
