"""HTTP parts of tickets in `serve`'s app: the signed webhook receiver, and the built-in backend mounted at
/open311/v2 when no external GeoReport v2 server is configured.

A webhook is taken only when its signature is good and its timestamp within five minutes of our clock, it has
not been taken before (its signature is remembered until it would be stale anyway), and its `updated_datetime`
is present, readable and not in the future."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from backend import Backend, BackendSettings, create_backend_app
from backend.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from bot.store.models import WebhookReceipt
from bot.tickets.client import RemoteRequest
from bot.tickets.desk import BadRemoteTime, ReportDesk, remote_time

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)
WEBHOOK_PATH = "/tickets/webhook"


WEBHOOK_TOLERANCE_SECONDS = 300.0  # a signature older or newer than this is refused, so receipts expire then


def _first_receipt(desk: ReportDesk, signature: str, ts: int) -> bool:
    """Remember a signed webhook until it would be stale anyway; False if it was taken before (a replay)."""
    now = desk.clock.now()
    digest = hashlib.sha256(signature.encode()).hexdigest()
    expires = datetime.fromtimestamp(ts + WEBHOOK_TOLERANCE_SECONDS, UTC)
    try:
        with desk.store.session() as s:
            s.execute(delete(WebhookReceipt).where(WebhookReceipt.expires_at < now))
            s.add(WebhookReceipt(digest=digest, expires_at=max(expires, now)))
    except IntegrityError:
        return False
    return True


def webhook_router(desk: ReportDesk, secret: str) -> APIRouter:
    router = APIRouter(tags=["tickets"])

    @router.post(WEBHOOK_PATH, summary="Status changes pushed by the ticket backend (HMAC-signed)")
    async def webhook(request: Request) -> JSONResponse:
        body = await request.body()
        signature = request.headers.get(SIGNATURE_HEADER, "")
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        ok = verify(
            secret, body, signature, timestamp, desk.clock.now().timestamp(), WEBHOOK_TOLERANCE_SECONDS
        )
        if not ok:
            log.warning("refused a ticket webhook with a bad, missing or stale signature")
            return JSONResponse({"error": "bad signature"}, status_code=401)
        try:
            event: dict[str, Any] = json.loads(body)
        except ValueError:
            return JSONResponse({"error": "not JSON"}, status_code=400)
        if not isinstance(event, dict) or not event.get("service_request_id"):
            return JSONResponse({"error": "no service_request_id"}, status_code=400)
        remote = RemoteRequest.from_doc(event)
        if not remote.updated_datetime:
            return JSONResponse({"error": "no updated_datetime"}, status_code=400)
        try:
            remote_time(remote.updated_datetime, desk.clock.now())
        except BadRemoteTime as e:
            log.warning("refused a ticket webhook: %s", e)
            return JSONResponse({"error": str(e)}, status_code=400)
        if not _first_receipt(desk, signature, int(timestamp)):
            log.warning("refused a replayed ticket webhook for %s", remote.service_request_id[:64])
            return JSONResponse({"error": "replayed"}, status_code=409)
        changed = desk.apply_remote(remote)
        desk.notifier.flush()
        return JSONResponse({"ok": True, "changed": changed})

    return router


def mount_tickets(web: FastAPI, app: App) -> None:
    """Add the webhook receiver and, unless an external backend is configured, the built-in backend."""
    desk = app.services.tickets
    if not isinstance(desk, ReportDesk):
        return
    cfg = app.config
    web.include_router(webhook_router(desk, cfg.webhook_secret))
    if cfg.main.tickets.open311_url:
        return
    # the bot's clock: the backend's timestamps and the receiver's freshness checks read the same time
    backend = Backend(BackendSettings.from_config(cfg), now=app.clock.now)
    http = cfg.main.http
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host
    backend.subscribe(f"http://{host}:{cfg.http_port}{WEBHOOK_PATH}")
    web.mount("/open311/v2", create_backend_app(backend, manage_lifecycle=False, prefix=""))
    desk.embedded_backend = backend
