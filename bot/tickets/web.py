"""HTTP parts of tickets in `serve`'s app: the signed webhook receiver, and the built-in backend mounted at
/open311/v2 when no external GeoReport v2 server is configured."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from backend import Backend, BackendSettings, create_backend_app
from backend.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from bot.tickets.client import RemoteRequest
from bot.tickets.desk import ReportDesk

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)
WEBHOOK_PATH = "/tickets/webhook"


def webhook_router(desk: ReportDesk, secret: str) -> APIRouter:
    router = APIRouter(tags=["tickets"])

    @router.post(WEBHOOK_PATH, summary="Status changes pushed by the ticket backend (HMAC-signed)")
    async def webhook(request: Request) -> JSONResponse:
        body = await request.body()
        ok = verify(
            secret,
            body,
            request.headers.get(SIGNATURE_HEADER, ""),
            request.headers.get(TIMESTAMP_HEADER, ""),
            desk.clock.now().timestamp(),
        )
        if not ok:
            log.warning("refused a ticket webhook with a bad or stale signature")
            return JSONResponse({"error": "bad signature"}, status_code=401)
        try:
            event: dict[str, Any] = json.loads(body)
        except ValueError:
            return JSONResponse({"error": "not JSON"}, status_code=400)
        if not isinstance(event, dict) or not event.get("service_request_id"):
            return JSONResponse({"error": "no service_request_id"}, status_code=400)
        changed = desk.apply_remote(RemoteRequest.from_doc(event))
        desk.notifier.flush()
        return JSONResponse({"ok": True, "changed": changed})

    return router


def mount_tickets(web: FastAPI, app: App) -> None:
    """Add the webhook receiver and, unless an external backend is configured, the built-in backend."""
    desk = app.services.tickets
    if not isinstance(desk, ReportDesk):
        return
    cfg = app.config
    web.include_router(webhook_router(desk, cfg.main.tickets.webhook_secret))
    if cfg.main.tickets.open311_url:
        return
    # the embedded backend keeps the bot's clock, so a pinned or virtual clock holds for both sides
    backend = Backend(BackendSettings.from_config(cfg), now=app.clock.now)
    http = cfg.main.http
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host
    backend.subscribe(f"http://{host}:{cfg.http_port}{WEBHOOK_PATH}")
    web.mount("/open311/v2", create_backend_app(backend, manage_lifecycle=False))
    desk.embedded_backend = backend
