"""The FastAPI app of `serve` (the web shell): /health, the admin API, the tickets' webhook and built-in backend,
and whatever routes the channels declare (`Channel.routes()`: the simulator's page and /sim API)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from backend.utf8form import Utf8FormMiddleware
from bot.app import App
from bot.builtin_backend import mount_tickets
from bot.web.admin import admin_router

log = logging.getLogger(__name__)


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        problems.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
    log.info("rejected request: %s", "; ".join(problems))
    return JSONResponse(
        status_code=422, content={"error": "; ".join(problems), "message": "请求格式不对，请检查后重试。"}
    )


def create_web_app(app: App, *, manage_lifecycle: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await app.start()
        try:
            yield
        finally:
            app.knowledge.interrupt()  # an upload still ingesting ends now rather than hold up the shutdown
            if manage_lifecycle:
                await app.stop()

    web = FastAPI(title="Doorstep (家门口)", version="0.1.0", lifespan=lifespan)
    web.add_exception_handler(RequestValidationError, _validation_error)
    web.state.app = app
    web.add_middleware(Utf8FormMiddleware)  # form data is UTF-8 on every route (admin uploads, status notes)

    for channel in app.channels.values():
        routes = channel.routes()
        if routes is not None:
            web.include_router(routes)

    mount_tickets(web, app)  # the webhook receiver, and the built-in Open311 backend at /open311/v2
    web.include_router(admin_router(app), prefix="/admin")

    @web.get("/health", tags=["health"])
    async def health() -> dict[str, Any]:
        return app.health()

    return web
