"""The durable outbox: tickets go to the ticket backend (`TicketBackend` port; GeoReport v2 by default) from here, never straight from a handler.

Each ticket has one row with an idempotency key made when the ticket was committed, so a retry (after a
timeout, a crash, a restart) never makes a second ticket on a backend that honours the key. Failures back off
exponentially with jitter; after `max_attempts` the row is parked and staff are alerted, and a parked row is
still retried every `parked_retry_seconds`: nothing is ever dropped.

Several bot processes share one outbox: each round *claims* its due rows (store/claims.py: `FOR UPDATE SKIP
LOCKED` on PostgreSQL, one atomic UPDATE on SQLite) under a lease of `lease_seconds`, so no two processes send a
row at the same time; a process that dies holding rows loses them when the lease ends and another one sends
them, with the same idempotency key (at least once, and the key makes the repeat harmless).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import func, or_, select

from core.ports import Clock, Photo, TicketBackend, TicketBackendError
from store import Store
from store.claims import claim, complete, new_worker_id, release
from store.models import Ticket, TicketMedia, TicketOutbox, TicketReport

log = logging.getLogger(__name__)
ParkedHook = Callable[[int, str], None]  # (ticket id, last error)


class Outbox:
    def __init__(
        self,
        store: Store,
        client: TicketBackend,
        clock: Clock,
        *,
        base_delay: float = 2.0,
        max_delay: float = 300.0,
        max_attempts: int = 8,
        parked_retry_seconds: float = 1800.0,
        concurrency: int = 4,
        lease_seconds: float = 120.0,
        batch: int = 50,
        worker: str = "",
        rng: random.Random | None = None,
        on_parked: ParkedHook | None = None,
    ) -> None:
        self.store = store
        self.client = client
        self.clock = clock
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        self.parked_retry_seconds = parked_retry_seconds
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds  # longer than a send takes (the client's timeouts) plus clock skew
        self.batch = batch  # rows claimed per round: what one process takes while others may take the rest
        self.worker = worker or new_worker_id("outbox")
        self.rng = rng or random.Random()
        self.on_parked = on_parked
        self.last_error = ""
        self.last_ok: bool | None = None
        self._busy = False

    def backoff(self, attempts: int) -> float:
        nominal = min(self.max_delay, self.base_delay * 2 ** max(0, attempts - 1))
        return nominal * self.rng.uniform(0.5, 1.5)  # jitter: restarts and outages do not retry in lockstep

    async def run_due(self) -> int:
        """Send every row that is due; returns how many tickets reached the backend."""
        if self._busy:  # one round at a time per process
            return 0
        self._busy = True
        try:
            now = self.clock.now()
            with self.store.session() as s:  # committed before sending: other processes skip these rows
                due = [
                    r.id
                    for r in claim(
                        s,
                        TicketOutbox,
                        worker=self.worker,
                        where=[
                            or_(TicketOutbox.state == "pending", TicketOutbox.state == "parked"),
                            TicketOutbox.next_attempt_at <= now,
                        ],
                        order_by=[TicketOutbox.next_attempt_at, TicketOutbox.id],
                        limit=self.batch,
                        lease=timedelta(seconds=self.lease_seconds),
                        now=now,
                    )
                ]
            sem = asyncio.Semaphore(self.concurrency)

            async def one(oid: int) -> bool:
                async with sem:
                    return await self._send(oid)

            results = await asyncio.gather(*(one(o) for o in due))
            return sum(results)
        finally:
            self._busy = False

    async def _send(self, outbox_id: int) -> bool:
        with self.store.session() as s:
            row = s.get(TicketOutbox, outbox_id)
            if row is None or row.state == "done" or row.claimed_by != self.worker:
                return False
            ticket = s.get(Ticket, row.ticket_id)
            assert ticket is not None
            first = s.scalars(
                select(TicketReport).where(TicketReport.ticket_id == ticket.id).order_by(TicketReport.id)
            ).first()
            n_reporters = (
                s.scalar(
                    select(func.count(func.distinct(TicketReport.sender))).where(
                        TicketReport.ticket_id == ticket.id
                    )
                )
                or 1
            )
            media = s.scalars(
                select(TicketMedia)
                .join(TicketReport, TicketMedia.report_id == TicketReport.id)
                .where(TicketReport.ticket_id == ticket.id)
                .order_by(TicketMedia.id)
            ).first()
            key, code = row.idempotency_key, ticket.service_code
            address = " ".join(
                x
                for x in (
                    ticket.community,
                    ticket.place or f"{ticket.grid}（{first.group_id if first else ''}）",
                )
                if x
            )
            payload = dict(
                service_code=code,
                description=ticket.description,
                address=address,
                lat=ticket.lat,
                lon=ticket.lon,
                attributes={
                    "community": ticket.community,
                    "grid": ticket.grid,
                    "urgency": ticket.urgency,
                    "reporters": str(n_reporters),
                },
                photo=Photo(media.data, media.mime, media.name) if media else None,
                idempotency_key=key,
                first_name=first.sender_name if first else "",
                phone=first.contact.split(",")[0].strip() if first else "",
                account_id=f"doorstep:{ticket.id}",
            )
        try:
            created = await self.client.create(**payload)  # type: ignore[arg-type]
        except TicketBackendError as e:
            self._failed(outbox_id, e)
            return False
        except Exception as e:  # a bug or an odd answer must not kill the loop
            log.exception("sending ticket outbox row %s failed", outbox_id)
            self._failed(outbox_id, TicketBackendError(f"{type(e).__name__}: {e}"))
            return False
        with self.store.session() as s:
            row = s.get(TicketOutbox, outbox_id)
            assert row is not None
            ticket = s.get(Ticket, row.ticket_id)
            assert ticket is not None
            now = self.clock.now()
            values = {
                "state": "done",
                "attempts": TicketOutbox.attempts + 1,
                "last_error": "",
                "updated_at": now,
            }
            if not complete(s, TicketOutbox, [outbox_id], worker=self.worker, values=values):
                # our lease ran out and another process took the row over: it sends the same idempotency key,
                # so the backend answers it with this same ticket; recording the answer here is harmless
                log.warning("lost the claim on ticket outbox row %s (lease over)", outbox_id)
            ticket.remote_id = created.service_request_id
            ticket.remote_token = created.token
            ticket.sync = "sent"
            if ticket.status_version == 0:  # afterwards updated_at is the backend's time (desk.apply_remote)
                ticket.updated_at = now
        self.last_ok, self.last_error = True, ""
        log.info("ticket #%s sent: service_request_id=%s", row.ticket_id, created.service_request_id)
        return True

    def _failed(self, outbox_id: int, e: TicketBackendError) -> None:
        err = str(e)[:500]
        self.last_ok, self.last_error = False, err
        parked_now: tuple[int, str] | None = None
        with self.store.session() as s:
            row = s.get(TicketOutbox, outbox_id)
            if row is None or row.claimed_by != self.worker:
                return  # taken over by another process (our lease ran out): its attempt counts, not ours
            attempts = row.attempts + 1
            state = row.state
            ticket = s.get(Ticket, row.ticket_id)
            if (not e.transient or attempts >= self.max_attempts) and state != "parked":
                state = "parked"
                if ticket is not None:
                    ticket.sync = "parked"
                parked_now = (row.ticket_id, err)
            delay = self.parked_retry_seconds if state == "parked" else self.backoff(attempts)
            now = self.clock.now()
            released = release(
                s,
                TicketOutbox,
                [outbox_id],
                worker=self.worker,
                values={
                    "attempts": attempts,
                    "last_error": err,
                    "updated_at": now,
                    "state": state,
                    "next_attempt_at": now + timedelta(seconds=delay),
                },
            )
            if not released:
                s.rollback()
                return
        log.warning("ticket outbox row %s failed (%s)%s", outbox_id, err, ": parked" if parked_now else "")
        if parked_now and self.on_parked is not None:
            self.on_parked(*parked_now)

    def counts(self) -> dict[str, int]:
        with self.store.session() as s:
            rows = s.execute(select(TicketOutbox.state, func.count()).group_by(TicketOutbox.state)).all()
        return {str(state): int(n) for state, n in rows}
