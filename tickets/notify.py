"""Messages the desk owes to groups and staff, kept in the store until sent (table `ticket_notices`).

A notice is written in the same transaction as the change it reports (the unique `key` means nothing is ever
owed twice). Each row goes pending -> sending -> sent (or back to pending after a failed send, failed after
MAX_ATTEMPTS):

1. `flush` claims a pending row (`sending`, the claim time in `sent_at`) and hands it to the throttled sender;
2. the sender's hook marks it `sent` right after the platform call, before the next send.

A process killed between 1 and 2 leaves the row `sending`: in doubt. After `claim_lease_seconds` the next
process *reconciles* it: when the channel keeps the group's history (`Capabilities.keeps_history`, as the
simulator does; asked through `Sender.said`)
the row is marked sent if the text is there and owed again if it is not: exactly once. On a channel without
history it is owed again: a second "已收到，工单号 #123" is better than a resident never learning the number.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from core.message import Reply
from core.ports import Clock, Groups, Sender
from store import Store
from store.models import TicketNotice

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5
CLAIM_LEASE_SECONDS = 120.0  # a row `sending` for longer than this was claimed by a process that stopped


def owe(
    s: Session,
    *,
    key: str,
    kind: str,
    group: str,
    text: str,
    channel: str = "",
    ticket_id: int | None = None,
    mentions: list[str] | None = None,
    in_reply_to: str = "",
    not_before: datetime | None = None,
) -> bool:
    """Record a notice in the caller's transaction; False if one with this key exists already.
    `not_before` holds it back (the end of the group's quiet hours)."""
    if s.scalars(select(TicketNotice.id).where(TicketNotice.key == key)).first() is not None:
        return False
    s.add(
        TicketNotice(
            key=key,
            kind=kind,
            channel=channel,
            group_id=group,
            text=text,
            ticket_id=ticket_id,
            mentions=list(dict.fromkeys(mentions or [])),
            in_reply_to=in_reply_to,
            not_before=not_before,
        )
    )
    return True


class Notifier:
    def __init__(
        self,
        store: Store,
        sender: Sender,
        clock: Clock,
        groups: Groups,
        *,
        claim_lease_seconds: float = CLAIM_LEASE_SECONDS,
    ) -> None:
        self.store = store
        self.sender = sender
        self.clock = clock
        self.groups = groups
        self.claim_lease_seconds = claim_lease_seconds
        self._mine: dict[
            int, tuple[Reply, int]
        ] = {}  # id(reply) -> (reply, notice id), claimed by this process
        sender.on_attempt(self._after_send)
        self.owns: Callable[[str], bool] = lambda group: True  # the desk sets the config's group ownership

    # --- sending -------------------------------------------------------------------------------------

    def _channel_for(self, n: TicketNotice) -> str | None:
        if n.kind != "alert" and not self.owns(n.group_id):
            return None  # a group of another process's account: that process sends it
        names = self.sender.channel_names()
        for ch in (n.channel, self.groups.channel_of(n.group_id)):
            if ch and ch in names:
                return ch
        return names[0] if len(names) == 1 else None

    @staticmethod
    def _reply(n: TicketNotice, channel: str) -> Reply:
        kind = {"status": "status", "alert": "notice"}.get(n.kind, "ack")
        return Reply(
            group=n.group_id,
            text=n.text,
            mentions=tuple(n.mentions or ()),
            in_reply_to=n.in_reply_to,
            channel=channel,
            kind=kind,
        )

    def flush(self) -> int:
        """Claim every pending notice and queue it on the sender; returns how many were queued."""
        with self.store.session() as s:
            pending = s.scalars(
                select(TicketNotice)
                .where(
                    TicketNotice.state == "pending",
                    or_(TicketNotice.not_before.is_(None), TicketNotice.not_before <= self.clock.now()),
                )
                .order_by(TicketNotice.id)
                .limit(500)
            ).all()
        queued = 0
        for n in pending:
            channel = self._channel_for(n)
            if channel is None:
                continue  # the group's channel is not running in this process: keep it owed
            with self.store.session() as s:
                won = s.execute(
                    update(TicketNotice)
                    .where(TicketNotice.id == n.id, TicketNotice.state == "pending")
                    .values(state="sending", sent_at=self.clock.now())
                )
                if getattr(won, "rowcount", 0) != 1:
                    continue
            reply = self._reply(n, channel)
            self._mine[id(reply)] = (reply, n.id)
            fut = self.sender.submit(reply)
            fut.add_done_callback(functools.partial(self._done, reply))
            queued += 1
        return queued

    async def _after_send(self, reply: Reply, ok: bool, error: str) -> None:
        """The sender's hook, right after each platform call: mark ours sent before the next send."""
        entry = self._mine.get(id(reply))
        if entry is None or entry[0] is not reply or not ok:
            return
        del self._mine[id(reply)]
        with self.store.session() as s:
            s.execute(
                update(TicketNotice)
                .where(TicketNotice.id == entry[1])
                .values(state="sent", sent_at=self.clock.now(), attempts=TicketNotice.attempts + 1)
            )

    def _done(self, reply: Reply, fut: asyncio.Future[bool]) -> None:
        entry = self._mine.pop(id(reply), None)
        ok = not fut.cancelled() and fut.exception() is None and bool(fut.result())
        if ok or entry is None:
            return  # marked sent by the hook already
        try:
            with self.store.session() as s:
                n = s.get(TicketNotice, entry[1])
                if n is not None and n.state == "sending":
                    n.attempts += 1
                    n.state = "failed" if n.attempts >= MAX_ATTEMPTS else "pending"
                    if n.state == "failed":
                        log.error(
                            "ticket notice %s to %s failed %d times; given up", n.key, n.group_id, n.attempts
                        )
        except Exception:  # the store closed under us (shutdown): the row stays `sending`, reconciled later
            log.warning("could not record the outcome of ticket notice %s", entry[1])

    # --- after a crash -------------------------------------------------------------------------------

    def reconcile(self) -> int:
        """Rows left `sending` by a process that stopped: sent if the channel's history shows them, else owed."""
        cutoff = self.clock.now() - timedelta(seconds=self.claim_lease_seconds)
        mine = {nid for _, nid in self._mine.values()}
        with self.store.session() as s:
            stale = [
                n
                for n in s.scalars(
                    select(TicketNotice).where(
                        TicketNotice.state == "sending", TicketNotice.sent_at <= cutoff
                    )
                ).all()
                if n.id not in mine
                and self._channel_for(n) is not None  # only the owner can check its history
            ]
        settled = 0
        for n in stale:
            delivered = self._seen_on_platform(n)
            with self.store.session() as s:
                won = s.execute(
                    update(TicketNotice)
                    .where(
                        TicketNotice.id == n.id,
                        TicketNotice.state == "sending",
                        TicketNotice.sent_at == n.sent_at,
                    )
                    .values(state="sent" if delivered else "pending")
                )
                if getattr(won, "rowcount", 0) != 1:
                    continue  # another process settled or re-claimed it meanwhile
            settled += 1
            log.warning(
                "ticket notice %s was in flight when a process stopped: %s",
                n.key,
                "found in the group's history, not resent" if delivered else "owed again",
            )
        return settled

    def _seen_on_platform(self, n: TicketNotice) -> bool:
        said = self.sender.said(self._channel_for(n) or "", n.group_id)
        if said is None:  # the channel keeps no history: owed again
            return False
        return any(n.text in text for text in said)

    def pending(self) -> int:
        with self.store.session() as s:
            return len(
                s.scalars(select(TicketNotice.id).where(TicketNotice.state.in_(("pending", "sending")))).all()
            )
