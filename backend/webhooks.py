"""Webhooks: every change to a service request is pushed to the subscribers, signed, retried with backoff.

Signature: `X-Open311-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the shared secret>` and
`X-Open311-Timestamp: <unix seconds>`, the time of this attempt; receivers refuse timestamps more than five
minutes off their clock (see `verify`) and a signature they have already taken (a replay). Deliveries are rows,
so a restart of the backend resumes them; a subscriber that stays down is given up after `max_attempts`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.models import Subscriber, WebhookDelivery

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Open311-Signature"
TIMESTAMP_HEADER = "X-Open311-Timestamp"
EVENT_HEADER = "X-Open311-Event"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def enqueue(s: Session, payload: dict[str, Any], extra_urls: list[str], now: datetime) -> None:
    """Queue one event for every subscriber (in the caller's transaction, with the change itself)."""
    urls = {*extra_urls, *s.scalars(select(Subscriber.url)).all()}
    event_id = uuid.uuid4().hex
    for url in sorted(urls):
        s.add(
            WebhookDelivery(
                event_id=event_id, url=url, payload={**payload, "event_id": event_id}, next_attempt_at=now
            )
        )


class WebhookSender:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        secret: str,
        now: Callable[[], datetime],
        *,
        max_attempts: int = 8,
        base_delay: float = 2.0,
        max_delay: float = 600.0,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.sessions = sessions
        self.secret = secret
        self.now = now
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.rng = rng or random.Random()
        self.client = httpx.AsyncClient(timeout=10.0, transport=transport)

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with full jitter around the nominal delay."""
        nominal = min(self.max_delay, self.base_delay * 2 ** max(0, attempts - 1))
        return nominal * self.rng.uniform(0.5, 1.5)

    async def deliver_due(self, limit: int = 50) -> int:
        """Try every delivery that is due now; returns how many were delivered."""
        now = self.now()
        with self.sessions() as s:
            due = s.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.id)
                .limit(limit)
            ).all()
        delivered = 0
        for d in due:
            ok, err = await self._post(d.url, d.payload)
            with self.sessions() as s, s.begin():
                row = s.get(WebhookDelivery, d.id)
                if row is None:
                    continue
                row.attempts += 1
                if ok:
                    row.state = "delivered"
                    delivered += 1
                elif row.attempts >= self.max_attempts:
                    row.state = "failed"
                    row.last_error = err
                    log.error(
                        "webhook %s to %s given up after %d attempts: %s",
                        d.event_id,
                        d.url,
                        row.attempts,
                        err,
                    )
                else:
                    row.last_error = err
                    row.next_attempt_at = self.now() + timedelta(seconds=self.backoff(row.attempts))
        return delivered

    async def _post(self, url: str, payload: dict[str, Any]) -> tuple[bool, str]:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        ts = int(self.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, ts, body),
            TIMESTAMP_HEADER: str(ts),
            EVENT_HEADER: str(payload.get("event_id", "")),
        }
        try:
            r = await self.client.post(url, content=body, headers=headers)
        except httpx.HTTPError as e:
            return False, f"{type(e).__name__}: {e}"
        if 200 <= r.status_code < 300:
            return True, ""
        return False, f"HTTP {r.status_code}"

    async def aclose(self) -> None:
        await self.client.aclose()
