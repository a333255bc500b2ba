"""Messages the desk owes to groups and staff, kept in the store until sent (table `ticket_notices`).

A notice is written in the same transaction as the change it reports; `flush` hands pending ones to the
throttled sender and marks each sent when the sender says so. A restart re-sends what was still owed; the
unique `key` means nothing is ever owed twice.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.message import Reply
from bot.sender import ThrottledSender
from bot.store import Store
from bot.store.models import TicketNotice

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5


def owe(s: Session, *, key: str, kind: str, group: str, text: str, channel: str = "", ticket_id: int | None = None,
        mentions: list[str] | None = None, in_reply_to: str = "") -> bool:
    """Record a notice in the caller's transaction; False if one with this key exists already."""
    if s.scalars(select(TicketNotice.id).where(TicketNotice.key == key)).first() is not None:
        return False
    s.add(TicketNotice(key=key, kind=kind, channel=channel, group_id=group, text=text, ticket_id=ticket_id,
                       mentions=list(dict.fromkeys(mentions or [])), in_reply_to=in_reply_to))
    return True


class Notifier:
    def __init__(self, store: Store, sender: ThrottledSender, clock: Clock,
                 group_channels: dict[str, str] | None = None) -> None:
        self.store = store
        self.sender = sender
        self.clock = clock
        self.group_channels = group_channels if group_channels is not None else {}
        self._in_flight: set[int] = set()

    def _channel_for(self, n: TicketNotice) -> str | None:
        for ch in (n.channel, self.group_channels.get(n.group_id, "")):
            if ch and ch in self.sender.channels:
                return ch
        return next(iter(self.sender.channels), None) if len(self.sender.channels) == 1 else None

    def flush(self) -> int:
        """Queue every pending notice on the sender; returns how many were queued."""
        with self.store.session() as s:
            pending = s.scalars(select(TicketNotice).where(TicketNotice.state == "pending")
                                .order_by(TicketNotice.id).limit(500)).all()
        queued = 0
        for n in pending:
            if n.id in self._in_flight:
                continue
            channel = self._channel_for(n)
            if channel is None:
                continue  # the group's channel is not running in this process: keep it owed
            reply = Reply(group=n.group_id, text=n.text, mentions=tuple(n.mentions or ()), in_reply_to=n.in_reply_to,
                          channel=channel, kind="status" if n.kind == "status" else "ack" if n.kind != "alert" else "notice")
            self._in_flight.add(n.id)
            fut = self.sender.submit(reply)
            fut.add_done_callback(lambda f, nid=n.id: self._done(nid, f))
            queued += 1
        return queued

    def _done(self, notice_id: int, fut: asyncio.Future[bool]) -> None:
        self._in_flight.discard(notice_id)
        ok = not fut.cancelled() and fut.exception() is None and bool(fut.result())
        try:
            with self.store.session() as s:
                if ok:
                    s.execute(update(TicketNotice).where(TicketNotice.id == notice_id)
                              .values(state="sent", sent_at=self.clock.now(), attempts=TicketNotice.attempts + 1))
                else:
                    n = s.get(TicketNotice, notice_id)
                    if n is not None:
                        n.attempts += 1
                        if n.attempts >= MAX_ATTEMPTS:
                            n.state = "failed"
                            log.error("ticket notice %s to %s failed %d times; given up", n.key, n.group_id, n.attempts)
        except Exception:  # the store closed under us (shutdown): the notice stays owed
            log.warning("could not record the outcome of ticket notice %s", notice_id)

    def pending(self) -> int:
        with self.store.session() as s:
            return len(s.scalars(select(TicketNotice.id).where(TicketNotice.state == "pending")).all())
