"""One bot as `serve` wires it (the web app with the built-in backend mounted at /open311/v2, the webhook
receiver, the admin API), every HTTP hop in process over ASGI, on the test's clock; and a webhook signer
written here from the documented scheme, not with the code under test."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from backend import Backend
from bot.app import App
from bot.clock import ManualClock
from bot.config import Config
from bot.web.app import create_web_app
from store.models import Ticket
from tests.support import RecordingChannel
from tickets.desk import ReportDesk
from tickets.open311 import GeoReportClient


def signed(secret: str, ts: int, doc: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A webhook as docs/tickets.md specifies it: HMAC-SHA256 of "<timestamp>.<body>", hex, "sha256=" prefix."""
    body = json.dumps(doc, ensure_ascii=False).encode()
    mac = hmac.new(secret.encode(), str(ts).encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = {"X-Open311-Signature": f"sha256={mac}", "X-Open311-Timestamp": str(ts)}
    return body, {**headers, "Content-Type": "application/json"}


@dataclass
class Stack:
    app: App
    web: FastAPI
    http: httpx.AsyncClient  # to the web app, as a browser, a staff tool or an attacker would reach it
    channel: RecordingChannel
    clock: ManualClock

    @property
    def desk(self) -> ReportDesk:
        assert isinstance(self.app.services.tickets, ReportDesk)
        return self.app.services.tickets

    @property
    def backend(self) -> Backend:
        be = self.desk.embedded_backend
        assert isinstance(be, Backend)
        return be

    async def settle(self) -> None:
        """Due work done: the outbox sent, the backend's webhooks delivered, every reply out."""
        await self.app.tick()
        await self.backend.webhooks.deliver_due()
        await self.app.tick()
        await self.app.sender.drain()

    def ticket(self, ticket_id: int = 1) -> Ticket:
        with self.app.store.session() as s:
            t = s.get(Ticket, ticket_id)
            assert t is not None
            return t

    async def webhook(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.http.post("/tickets/webhook", content=body, headers=headers)


@asynccontextmanager
async def serve_stack(config: Config, clock: ManualClock, knowledge: Any = None) -> AsyncIterator[Stack]:
    channel = RecordingChannel()
    app = App(config, clock=clock, channels={"rec": channel}, knowledge=knowledge)
    await app.start(background=False)
    web = create_web_app(app, manage_lifecycle=False)
    asgi = httpx.ASGITransport(app=web)
    desk = app.services.tickets
    assert isinstance(desk, ReportDesk) and isinstance(desk.embedded_backend, Backend)
    # the bot's client and the backend's webhook sender keep their URLs, keys and secrets (what is under
    # test); only the wire is in process
    client = GeoReportClient(
        desk.client.base_url, desk.client.api_key, desk.client.jurisdiction_id, transport=asgi
    )
    await desk.client.aclose()
    desk.client = desk.outbox.client = client
    await desk.embedded_backend.webhooks.client.aclose()
    desk.embedded_backend.webhooks.client = httpx.AsyncClient(transport=asgi)
    async with httpx.AsyncClient(transport=asgi, base_url="http://127.0.0.1") as http:
        try:
            yield Stack(app, web, http, channel, clock)
        finally:
            await desk.embedded_backend.webhooks.aclose()
            await app.stop()
