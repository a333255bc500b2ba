"""The FastAPI app of `serve` (the web shell): /health, the admin API, the tickets' webhook and built-in backend,
the offline API docs, and whatever routes the parts declare (`App.declared_routes()`: the simulator's page and
/sim API, a handler's routes, the staff workbench at /staff/). It names none of those parts."""

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


DOCS_ASSETS = "/docs-assets"


def offline_docs(web: FastAPI) -> None:
    """/docs as FastAPI serves it, with Swagger UI's script, styles and icon served by Doorstep itself."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    web.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @web.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=web.openapi_url or "/openapi.json",
            title=f"{web.title} – API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
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

    # the API docs page loads nothing from a CDN: Swagger UI's files come from a PyPI package (offline_docs)
    web = FastAPI(
        title="Doorstep (家门口)", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    web.add_exception_handler(RequestValidationError, _validation_error)
    web.state.app = app
    web.add_middleware(Utf8FormMiddleware)  # form data is UTF-8 on every route (admin uploads, status notes)

    for routes in app.declared_routes():
        web.include_router(routes)

    mount_tickets(web, app)  # the webhook receiver, and the built-in Open311 backend at /open311/v2
    web.include_router(admin_router(app), prefix="/admin")
    offline_docs(web)

    @web.get("/health", tags=["health"])
    async def health() -> dict[str, Any]:
        return app.health()

    return web
