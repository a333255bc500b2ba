"""The throttled sender: every reply leaves through here, within WeChat's limits (the `Sender` port).

Nothing else calls a channel's send_text/send_image: handlers return replies, and the parts that speak on their
own (notices, the desk's notifier, greetings, alerts) submit theirs here.

One queue and one worker per channel (per bot account): at most one message every
`account_interval_seconds` plus random jitter, and at most `group_per_minute` messages per group.
A group that is at its limit does not hold up the others. Each send is recorded in `deliveries`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import update

from bot.config import SendLimits
from bot.ratelimit import SlidingWindow
from core.message import Reply
from core.ports import Channel, Clock, SendHook
from store import Store
from store.models import Delivery

log = logging.getLogger(__name__)


@dataclass
class _Outgoing:
    reply: Reply
    delivery_id: int
    attempts: int = 0
    done: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class ThrottledSender:
    def __init__(
        self,
        channels: Mapping[str, Channel],
        limits: SendLimits,
        clock: Clock,
        store: Store,
        rng: random.Random | None = None,
        max_attempts: int = 3,
    ) -> None:
        self.channels = channels
        self.limits = limits
        self.clock = clock
        self.store = store
        self.rng = rng or random.Random()
        self.max_attempts = max_attempts
        self._group_window = SlidingWindow(limits.group_per_minute, timedelta(minutes=1))
        self._queues: dict[str, list[_Outgoing]] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._last_sent: dict[str, float] = {}
        self.hooks: list[SendHook] = []
        self.sent_count = 0

    # --- what the parts may ask (core.ports.Sender)

    def on_attempt(self, hook: SendHook) -> None:
        self.hooks.append(hook)

    def channel_names(self) -> list[str]:
        return list(self.channels)

    def serving(self, group: str) -> str:
        return next((name for name, ch in self.channels.items() if ch.serves(group)), "")

    def said(self, channel: str, group: str) -> list[str] | None:
        ch = self.channels.get(channel)
        if ch is None or not ch.capabilities.keeps_history:
            return None
        return list(ch.history(group))

    def _record(self, reply: Reply, channel: str) -> int:
        with self.store.session() as s:
            d = Delivery(
                channel=channel,
                group_id=reply.group,
                kind=reply.kind,
                text=reply.text[:4000],
                in_reply_to=reply.in_reply_to,
            )
            s.add(d)
            s.flush()
            return d.id

    def _mark(self, delivery_id: int, status: str, error: str = "") -> None:
        with self.store.session() as s:
            values: dict[str, object] = {"status": status, "error": error}
            if status == "sent":
                values["sent_at"] = self.clock.now()
            s.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))

    def submit(self, reply: Reply) -> asyncio.Future[bool]:
        """Queue a reply; the returned future resolves to whether it was sent."""
        channel = reply.channel
        if channel not in self.channels:
            raise ValueError(f"reply for unknown channel {channel!r}")
        item = _Outgoing(reply, self._record(reply, channel))
        self._queues.setdefault(channel, []).append(item)
        self._wakeup(channel).set()
        if channel not in self._workers or self._workers[channel].done():
            self._workers[channel] = asyncio.create_task(self._work(channel), name=f"sender-{channel}")
        return item.done

    async def send(self, reply: Reply) -> bool:
        return await self.submit(reply)

    def _wakeup(self, channel: str) -> asyncio.Event:
        return self._wakeups.setdefault(channel, asyncio.Event())

    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values())

    async def drain(self) -> None:
        """Wait until every queued reply has been sent or given up."""
        while True:
            futures = [i.done for q in self._queues.values() for i in q]
            if not futures:
                return
            await asyncio.gather(*futures, return_exceptions=True)

    def _account_wait(self, channel: str) -> float:
        last = self._last_sent.get(channel)
        if last is None:
            return 0.0
        now = self.clock.now().timestamp()
        return max(0.0, last + self.limits.account_interval_seconds - now)

    async def _work(self, channel: str) -> None:
        queue = self._queues[channel]
        while queue:
            now = self.clock.now()
            ready = next((i for i in queue if self._group_window.allowed(i.reply.group, now)), None)
            if ready is None:  # every queued group is at its limit: wait for the soonest to free up
                await self.clock.sleep(min(self._group_window.wait(i.reply.group, now) for i in queue))
                continue
            wait = self._account_wait(channel)
            if wait > 0:
                await self.clock.sleep(wait + self.rng.uniform(0, self.limits.jitter_seconds))
                continue
            queue.remove(ready)
            await self._deliver(channel, ready)  # a failed send is queued again inside, for a retry

    async def _deliver(self, channel: str, item: _Outgoing) -> None:
        r = item.reply
        now = self.clock.now()
        self._group_window.hit(r.group, now)
        self._last_sent[channel] = now.timestamp()
        item.attempts += 1
        try:
            ch = self.channels[channel]
            if r.image is not None:
                await ch.send_image(r.group, r.image, r.image_name or "image.png")
            if r.text:
                await ch.send_text(r.group, r.text, r.mentions, in_reply_to=r.in_reply_to)
        except Exception as e:  # a platform failure must not kill the worker
            err = f"{type(e).__name__}: {e}"
            log.warning("send to %s/%s failed (attempt %d): %s", channel, r.group, item.attempts, err)
            if item.attempts < self.max_attempts:
                self._queues[channel].append(item)
                return
            self._mark(item.delivery_id, "failed", err)
            await self._notify(r, False, err)
            item.done.set_result(False)
            return
        self.sent_count += 1
        self._mark(item.delivery_id, "sent")
        await self._notify(r, True, "")
        item.done.set_result(True)

    async def _notify(self, reply: Reply, ok: bool, error: str) -> None:
        for hook in self.hooks:
            try:
                await hook(reply, ok, error)
            except Exception:
                log.exception("send hook failed")

    async def stop(self) -> None:
        for t in self._workers.values():
            t.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
