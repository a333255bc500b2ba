"""`doorstep serve`: the bot with its channels, the admin API and the built-in ticket backend."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from bot.config import load_config
from bot.runtime import build_app
from bot.web.app import create_web_app

log = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    config = load_config()
    app = build_app(config)
    web = create_web_app(app)
    host, port = config.main.http.host, config.http_port
    print(f"Doorstep is running: open http://{host}:{port}/ (simulator), http://{host}:{port}/health", flush=True)
    uvicorn.run(web, host=host, port=port, log_level="info")
    return 0
