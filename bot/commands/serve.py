"""`doorstep serve`: the bot with its channels, the admin API and the built-in ticket backend."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import socket
import sys

import uvicorn

from bot.app import STOP_TIMEOUT, App
from bot.config import Config, load_config
from bot.credentials import exposure_problem
from bot.runtime import build_app, load_knowledge_in_background
from bot.web.app import create_web_app
from core.channel import ChannelError
from core.errors import UserError
from knowledge.handoff import local_url, serve_claim

log = logging.getLogger(__name__)


def bind_listener(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a taken port is one clear line. SO_REUSEADDR, as uvicorn sets it:
    the TIME_WAIT connections a crashed server leaves for about a minute do not block a restart at once,
    while a port another server listens on is still refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} on {host} is already in use (set DOORSTEP_PORT to another)"
            ) from None
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _refuse_shipped_secrets(config: Config, host: str) -> None:
    """CONTRACT.md "Start-up": with a secret everyone knows, listen on loopback only."""
    problem = exposure_problem(host, config.shipped_defaults())
    if problem:
        raise UserError(problem)
    _ = (
        config.admin_token,
        config.webhook_secret,
        config.api_keys,
    )  # generated now, or one line if unreadable


async def _serve(app: App, sock: socket.socket, host: str, port: int) -> None:
    # The web side first: it connects the built-in backend to the desk, so `app.start()` starts the backend's
    # webhook loop. Then the channels, before HTTP answers, so a wrong WeChat token or an unreachable puppet
    # service is one clear line and exit 2 rather than a web server that runs without its channel.
    web = create_web_app(app, manage_lifecycle=False)
    try:
        await app.start()
    except ChannelError as e:
        await app.stop()
        raise UserError(str(e)) from None
    # the index opens (and on a first start fills) in the background: HTTP, reports and /health at once
    load_knowledge_in_background(app, console=sys.stderr)
    server = uvicorn.Server(
        uvicorn.Config(
            web,
            log_level="info",
            timeout_graceful_shutdown=int(STOP_TIMEOUT),  # then an upload still ingesting is interrupted
        )
    )
    print(
        f"Doorstep is running: open http://{host}:{port}/ (simulator), http://{host}:{port}/health",
        flush=True,
    )
    try:
        await server.serve(sockets=[sock])
    finally:
        await app.stop()


def run(args: argparse.Namespace) -> int:
    config = load_config()
    host, port = config.main.http.host, config.http_port
    _refuse_shipped_secrets(config, host)
    sock = bind_listener(host, port)
    try:
        # the one writer of its index while it runs: `kb ingest` hands its files to this process
        # (knowledge/handoff.py)
        with serve_claim(config.index_dir, local_url(host, port), shared=bool(config.main.index.chroma_url)):
            app = build_app(config, with_knowledge=False, train_in_background=True)
            asyncio.run(_serve(app, sock, host, port))
    finally:
        sock.close()
    return 0
