"""The webhook receiver (tickets/web.py) and the desk's ordering of updates (desk.apply_remote): what issue
10 item 9 forged with the shipped secret, pinned with a date in 2099, slipped past with an unreadable date, or
replayed, is refused; real updates still reach the group."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from bot.clock import ManualClock
from bot.config import Config
from core.ports import RemoteRequest
from store.models import Ticket
from tests.security_support import Stack, serve_stack, signed
from tests.support import Say

SHIPPED_SECRET = "doorstep-webhook-secret"  # what config/doorstep.yaml used to ship


@pytest.fixture
async def stack(config: Config, clock: ManualClock) -> AsyncIterator[Stack]:
    async with serve_stack(config, clock) as s:
        yield s


@pytest.fixture
async def filed(stack: Stack, say: Say) -> Stack:
    """One report filed as ticket #1 on the built-in backend (service_request_id 1)."""
    await stack.app.handle(say("3号楼门口井盖松了"))
    await stack.settle()
    assert stack.ticket().remote_id == "1"
    return stack


def closing(stack: Stack, **over: object) -> dict[str, object]:
    at = stack.clock.now()
    doc: dict[str, object] = {
        "service_request_id": "1",
        "status": "closed",
        "status_notes": "已处理",
        "updated_datetime": at.isoformat(),
    }
    return {**doc, **over}


def told(stack: Stack) -> list[str]:
    return [t for t in stack.channel.texts() if t.startswith("工单 #1")]


async def test_a_webhook_forged_with_the_shipped_secret_closes_nothing(filed: Stack) -> None:
    """The issue's forgery: signed with `doorstep-webhook-secret`, it closed the ticket and the group was told
    "已处理完毕（伪造：已处理）". The secret is now generated per installation."""
    ts = int(filed.clock.now().timestamp())
    body, headers = signed(SHIPPED_SECRET, ts, closing(filed, status_notes="伪造：已处理"))
    r = await filed.webhook(body, headers)
    assert r.status_code == 401
    await filed.settle()
    assert filed.ticket().status == "open" and told(filed) == []
    # the secret the backend really signs with is another one, and it works
    body, headers = signed(filed.app.config.webhook_secret, ts, closing(filed))
    assert (await filed.webhook(body, headers)).status_code == 200
    await filed.app.sender.drain()
    assert len(told(filed)) == 1 and "已处理完毕" in told(filed)[0]


async def test_an_update_dated_in_the_future_is_refused_and_pins_nothing(filed: Stack) -> None:
    secret, now = filed.app.config.webhook_secret, filed.clock.now()
    body, headers = signed(
        secret, int(now.timestamp()), closing(filed, updated_datetime="2099-01-01T00:00:00+08:00")
    )
    r = await filed.webhook(body, headers)
    assert r.status_code == 400 and "future" in r.json()["error"]
    assert filed.ticket().status == "open"
    # nor through a poll
    far = RemoteRequest.from_doc(closing(filed, updated_datetime="2099-01-01T00:00:00+08:00"))
    assert filed.desk.apply_remote(far) is False
    # a real closing, then a real reopening: both applied, both told (a 2099 pin would have swallowed them)
    filed.clock.advance(60)
    body, headers = signed(secret, int(filed.clock.now().timestamp()), closing(filed))
    assert (await filed.webhook(body, headers)).json()["changed"] is True
    filed.clock.advance(60)
    body, headers = signed(secret, int(filed.clock.now().timestamp()), closing(filed, status="open"))
    assert (await filed.webhook(body, headers)).json()["changed"] is True
    await filed.app.sender.drain()
    assert ["已处理完毕" in t for t in told(filed)] == [True, False]
    assert filed.ticket().status == "open"


async def test_a_ticket_pinned_before_the_fix_takes_real_updates_again(filed: Stack) -> None:
    with filed.app.store.session() as s:  # what a 2099 update left behind in an existing database
        t = s.get(Ticket, 1)
        assert t is not None
        t.status, t.status_version = "closed", 1
        t.updated_at = filed.clock.now() + timedelta(days=365 * 70)
    doc = closing(filed, status="open", updated_datetime=filed.clock.now().isoformat())
    assert filed.desk.apply_remote(RemoteRequest.from_doc(doc)) is True


@pytest.mark.parametrize("stamp", ["yesterday", "2026-13-45T00:00:00Z", "1732000000"])
async def test_an_unreadable_date_is_refused_not_applied_unordered(filed: Stack, stamp: str) -> None:
    ts = int(filed.clock.now().timestamp())
    body, headers = signed(filed.app.config.webhook_secret, ts, closing(filed, updated_datetime=stamp))
    r = await filed.webhook(body, headers)
    assert r.status_code == 400 and "W3C" in r.json()["error"]
    assert filed.desk.apply_remote(RemoteRequest.from_doc(closing(filed, updated_datetime=stamp))) is False
    await filed.settle()
    assert filed.ticket().status == "open" and told(filed) == []


async def test_a_webhook_without_a_date_or_timestamp_is_refused(filed: Stack) -> None:
    ts = int(filed.clock.now().timestamp())
    doc = closing(filed)
    del doc["updated_datetime"]
    body, headers = signed(filed.app.config.webhook_secret, ts, doc)
    assert (await filed.webhook(body, headers)).status_code == 400
    body, headers = signed(filed.app.config.webhook_secret, ts, closing(filed))
    del headers["X-Open311-Timestamp"]
    assert (await filed.webhook(body, headers)).status_code == 401
    assert filed.ticket().status == "open"


@pytest.mark.parametrize("off", [-301, 301])
async def test_a_timestamp_more_than_five_minutes_off_is_refused(filed: Stack, off: int) -> None:
    ts = int(filed.clock.now().timestamp()) + off
    body, headers = signed(filed.app.config.webhook_secret, ts, closing(filed))
    assert (await filed.webhook(body, headers)).status_code == 401


async def test_a_replayed_webhook_is_refused(filed: Stack, config: Config) -> None:
    """A captured closing, replayed after the ticket was reopened, closed it again."""
    secret = filed.app.config.webhook_secret
    ts = int(filed.clock.now().timestamp())
    captured = signed(secret, ts, closing(filed))
    assert (await filed.webhook(*captured)).status_code == 200
    filed.clock.advance(30)
    body, headers = signed(secret, int(filed.clock.now().timestamp()), closing(filed, status="open"))
    assert (await filed.webhook(body, headers)).json()["changed"] is True
    filed.clock.advance(30)
    r = await filed.webhook(*captured)  # within the five minutes its timestamp is still fresh
    assert r.status_code == 409 and r.json()["error"] == "replayed"
    assert filed.ticket().status == "open"
    # what was taken is remembered in the store: a restarted receiver refuses the replay too
    async with serve_stack(config, filed.clock) as again:
        assert (await again.webhook(*captured)).status_code == 409


async def test_the_backends_own_webhooks_are_taken_once(filed: Stack) -> None:
    """The real sender's deliveries pass every check; a delivery the sender retries (new timestamp, new
    signature) is taken and changes nothing twice."""
    filed.backend.update_status(1, "closed", "已更换井盖", "街道城管科")
    await filed.settle()
    assert filed.ticket().status == "closed"
    assert len(told(filed)) == 1 and "已更换井盖" in told(filed)[0]
