"""The FastAPI app of `serve`: the simulator channel, /health, and the parts other modules mount."""

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
from bot.channels.simulator import SimulatorChannel
from bot.tickets.web import mount_tickets
from bot.web.admin import admin_router
from bot.web.simulator import simulator_router

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


def _mount_wecom(web: FastAPI, app: App) -> None:
    """The WeCom channels' callback URLs, where their settings have a callback token (docs/wecom.md)."""
    from channels.wecom_bot.channel import WecomBotChannel
    from channels.wecom_bot.routes import wecom_bot_router
    from channels.wecom_kf.channel import WecomKfChannel
    from channels.wecom_kf.routes import wecom_kf_router

    bot = app.channels.get("wecom_bot")
    if isinstance(bot, WecomBotChannel) and bot.callback is not None:
        web.include_router(wecom_bot_router(bot))
    kf = app.channels.get("wecom_kf")
    if isinstance(kf, WecomKfChannel) and kf.callback is not None:
        web.include_router(wecom_kf_router(kf))


def create_web_app(app: App, *, manage_lifecycle: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await app.start()
        try:
            yield
        finally:
            interrupt = getattr(app.services.knowledge, "interrupt", None)
            if callable(interrupt):  # an upload still ingesting ends now rather than hold up the shutdown
                interrupt()
            if manage_lifecycle:
                await app.stop()

    web = FastAPI(title="Doorstep (家门口)", version="0.1.0", lifespan=lifespan)
    web.add_exception_handler(RequestValidationError, _validation_error)
    web.state.app = app
    web.add_middleware(Utf8FormMiddleware)  # form data is UTF-8 on every route (admin uploads, status notes)

    sim = app.channels.get("simulator")
    if isinstance(sim, SimulatorChannel):
        web.include_router(simulator_router(sim, app.config))

    _mount_wecom(web, app)
    mount_tickets(web, app)  # the webhook receiver, and the built-in Open311 backend at /open311/v2
    web.include_router(admin_router(app), prefix="/admin")

    @web.get("/health", tags=["health"])
    async def health() -> dict[str, Any]:
        return app.health()

    return web
