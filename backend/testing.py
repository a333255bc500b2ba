"""Run the backend on a real loopback port in a thread (tests and the benchmark), at `/open311/v2` as
`doorstep backend` serves it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from backend.api import GEOREPORT_PATH, Backend, create_backend_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(app: FastAPI, port: int | None = None) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 until the block ends; yields the base URL."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the backend did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def running_backend(backend: Backend, port: int | None = None) -> Iterator[str]:
    """Serve the built-in backend as `doorstep backend` does; yields its GeoReport v2 base,
    `http://127.0.0.1:PORT/open311/v2` (what DOORSTEP_OPEN311_URL names)."""
    with running(create_backend_app(backend, manage_lifecycle=False), port) as root:
        yield root + GEOREPORT_PATH
