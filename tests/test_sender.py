"""The throttled sender under virtual time: per-account spacing with jitter, per-group limits, retries."""

from __future__ import annotations

import random
from collections.abc import Sequence

from sqlalchemy import select

from bot.clock import ManualClock
from bot.config import SendLimits
from bot.sender import ThrottledSender
from core.message import Reply
from store import Store
from store.models import Delivery
from tests.support import RecordingChannel


class TimedChannel(RecordingChannel):
    def __init__(self, clock: ManualClock) -> None:
        super().__init__(name="rec")
        self.clock = clock
        self.times: list[tuple[str, float]] = []

    async def send_text(
        self, group: str, text: str, mentions: Sequence[str] = (), in_reply_to: str = ""
    ) -> None:
        await super().send_text(group, text, mentions)
        self.times.append((group, self.clock.now().timestamp()))


def make(tmp_path, clock, **limits) -> tuple[ThrottledSender, TimedChannel, Store]:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    store.migrate()
    ch = TimedChannel(clock)
    s = ThrottledSender({"rec": ch}, SendLimits(**limits), clock, store, rng=random.Random(1))
    return s, ch, store


def reply(group: str, i: int) -> Reply:
    return Reply(group=group, text=f"第{i}条", channel="rec")


async def test_account_interval_with_jitter(tmp_path) -> None:
    clock = ManualClock()
    s, ch, _ = make(tmp_path, clock, account_interval_seconds=1.0, jitter_seconds=0.5)
    for i in range(10):
        s.submit(reply(f"g{i}", i))
    await s.drain()
    gaps = [b[1] - a[1] for a, b in zip(ch.times, ch.times[1:], strict=False)]
    assert len(ch.times) == 10
    assert all(1.0 <= g <= 1.5 for g in gaps)
    assert len({round(g, 3) for g in gaps}) > 1  # jittered, not a fixed beat


async def test_group_limit_per_minute_does_not_block_other_groups(tmp_path) -> None:
    clock = ManualClock()
    s, ch, _ = make(tmp_path, clock, group_per_minute=5, account_interval_seconds=0.1, jitter_seconds=0)
    for i in range(8):
        s.submit(reply("busy", i))
    for i in range(3):
        s.submit(reply("quiet", i))
    await s.drain()
    busy = [t for g, t in ch.times if g == "busy"]
    quiet = [t for g, t in ch.times if g == "quiet"]
    assert len(busy) == 8 and len(quiet) == 3
    start = ch.times[0][1]
    assert busy[5] - busy[0] >= 60  # the sixth waits for the minute to pass
    assert all(t - start < 60 for t in quiet)  # the other group went out meanwhile
    # order within a group is kept
    assert ch.texts("busy") == [f"第{i}条" for i in range(8)]


async def test_failed_send_is_retried_and_recorded(tmp_path) -> None:
    clock = ManualClock()
    s, ch, store = make(tmp_path, clock, account_interval_seconds=1.0, jitter_seconds=0)
    ch.fail_next = 2
    ok = await s.send(reply("g", 1))
    assert ok and ch.texts() == ["第1条"]
    ch.fail_next = 5
    ok = await s.send(reply("g", 2))
    assert not ok
    with store.session() as sess:
        rows = sess.scalars(select(Delivery).order_by(Delivery.id)).all()
    assert [r.status for r in rows] == ["sent", "failed"]
    assert "ConnectionError" in rows[1].error and rows[0].sent_at is not None
