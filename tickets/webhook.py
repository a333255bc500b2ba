"""The signed webhook receiver: status changes pushed by the ticket backend (mounted by `serve`'s web shell).

The signature scheme is the one docs/tickets.md documents (the built-in backend signs with it, backend/webhooks.py):
`X-Open311-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` with `X-Open311-Timestamp`.

A webhook is taken only when its signature is good and its timestamp within five minutes of our clock, it has
not been taken before (its signature is remembered until it would be stale anyway), and its `updated_datetime`
is present, readable and not in the future."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from core.ports import RemoteRequest
from store.models import WebhookReceipt
from tickets.desk import BadRemoteTime, ReportDesk, remote_time

log = logging.getLogger(__name__)
WEBHOOK_PATH = "/tickets/webhook"


WEBHOOK_TOLERANCE_SECONDS = 300.0  # a signature older or newer than this is refused, so receipts expire then
SIGNATURE_HEADER = "X-Open311-Signature"
TIMESTAMP_HEADER = "X-Open311-Timestamp"


def verify(
    secret: str,
    body: bytes,
    signature: str,
    timestamp: str,
    now: float,
    tolerance: float = WEBHOOK_TOLERANCE_SECONDS,
) -> bool:
    """Whether a webhook is authentic and fresh: signed with `secret` (never an empty one) at a time within
    `tolerance` seconds of `now`. A fresh, authentic body may still be a replay: `_first_receipt` remembers
    what was taken until it is stale."""
    if not secret:
        return False
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(now - ts) > tolerance:
        return False
    expected = "sha256=" + hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature or "")


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
