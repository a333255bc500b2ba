"""Several bot processes on one store (issue 7).

Units: two outboxes racing on one database send each row once; a dead worker's outbox claims are taken over
after the lease; crash recovery run by two desks files each report once; a process ignores groups it does not own.

The end-to-end test: two real bot processes (one WeChat account each, 25 groups each) on one database, the
built-in backend as an in-thread server; 200 reports arrive through both, process A is killed (SIGKILL) in the
middle and started again. Exactly one ticket per report on the backend, every reporter acknowledged once, by the
process that owns the group; then a notice to all 50 groups is delivered once per group.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.clock import ManualClock
from core.ports import Created
from store import Store
from store.models import InboundMessage, Notice, Ticket, TicketNotice, TicketOutbox, TicketReport
from tests.scaleout_support import OPEN311_KEY, BotProcess, acked, env_for, wait_for
from tickets.open311 import GeoReportClient
from tickets.outbox import Outbox

PROBLEMS = [
    "井盖松了",
    "路灯不亮了",
    "垃圾好几天没人清运",
    "楼道灯坏了",
    "下水道堵了",
    "电梯坏了",
    "装修噪音太大",
]


# --- units -------------------------------------------------------------------------------------------------


class SlowBackend(GeoReportClient):
    """Counts creations per idempotency key; yields to the loop so concurrent rounds interleave."""

    def __init__(self) -> None:
        super().__init__("http://backend.invalid/open311/v2", "key", "")
        self.keys: Counter[str] = Counter()

    async def create(self, **kw: Any) -> Created:  # type: ignore[override]
        await asyncio.sleep(0.01)
        self.keys[kw["idempotency_key"]] += 1
        return Created(service_request_id=str(len(self.keys)), token=None)


def _tickets(store: Store, n: int, now: datetime) -> None:
    with store.session() as s:
        for i in range(n):
            t = Ticket(
                service_code="other",
                service_name="其他",
                title=f"t{i}",
                description=f"d{i}",
                status="open",
                sync="pending",
                created_at=now,
                updated_at=now,
            )
            s.add(t)
            s.flush()
            s.add(
                TicketOutbox(
                    ticket_id=t.id,
                    idempotency_key=f"k-{i}",
                    next_attempt_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )


async def test_two_outboxes_send_each_row_once(db_url: str) -> None:
    clock = ManualClock()
    stores = [Store(db_url), Store(db_url)]
    stores[0].migrate()
    _tickets(stores[0], 60, clock.now())
    backend = SlowBackend()
    boxes = [Outbox(s, backend, clock, batch=7, concurrency=3) for s in stores]
    try:
        for _ in range(20):
            await asyncio.gather(*(b.run_due() for b in boxes))
        assert len(backend.keys) == 60 and set(backend.keys.values()) == {1}
        with stores[0].session() as s:
            rows = s.scalars(select(TicketOutbox)).all()
            assert {r.state for r in rows} == {"done"} and {r.claim_expires_at for r in rows} == {None}
            assert {r.claimed_by for r in rows} == {b.worker for b in boxes}, "both processes did part of it"
    finally:
        for st in stores:
            st.close()


async def test_a_dead_workers_outbox_claims_are_taken_over_after_the_lease(store: Store) -> None:
    from store.claims import claim

    clock = ManualClock()
    _tickets(store, 3, clock.now())
    with store.session() as s:  # a process claims everything and dies
        assert (
            len(
                claim(
                    s,
                    TicketOutbox,
                    worker="dead",
                    limit=10,
                    lease=timedelta(seconds=60),
                    now=clock.now(),
                    where=[TicketOutbox.state == "pending"],
                )
            )
            == 3
        )
    backend = SlowBackend()
    box = Outbox(store, backend, clock, lease_seconds=60)
    assert await box.run_due() == 0  # its lease runs: nobody else sends those rows
    clock.advance(61)
    assert await box.run_due() == 3
    assert set(backend.keys) == {"k-0", "k-1", "k-2"}


async def test_recovery_in_two_processes_files_each_report_once(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.app import App
    from bot.config import load_config
    from tests.support import RecordingChannel

    monkeypatch.setenv("DOORSTEP_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DOORSTEP_STORAGE__URL", db_url)
    root = Path(__file__).resolve().parent.parent
    clock = ManualClock()
    apps = [
        App(load_config(root / "config" / "doorstep.yaml"), clock=clock, channels={"rec": RecordingChannel()})
        for _ in range(2)
    ]
    try:
        with apps[0].store.session() as s:  # messages recorded by a process that died before handling them
            for i in range(10):
                s.add(
                    InboundMessage(
                        channel="rec",
                        message_id=f"m{i}",
                        group_id="g",
                        sender=f"u{i}",
                        text=f"{i + 1}号楼门口{PROBLEMS[i % len(PROBLEMS)]}",
                        received_at=clock.now(),
                    )
                )
        clock.advance(3600)
        counts = [a.services.tickets.recover_inflight() for a in apps] + [
            a.services.tickets.recover_inflight() for a in apps
        ]
        assert sum(counts) == 10
        with apps[0].store.session() as s:
            reports = s.scalars(select(TicketReport)).all()
            assert len(reports) == 10 and {r.state for r in reports} == {"filed"}
            assert len(s.scalars(select(Ticket)).all()) == 10
            assert {m.status for m in s.scalars(select(InboundMessage))} == {"handled"}
    finally:
        for a in apps:
            a.store.close()


async def test_a_process_serves_only_its_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.app import App
    from bot.config import load_config
    from core.message import Message
    from tests.support import RecordingChannel

    monkeypatch.setenv("DOORSTEP_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DOORSTEP_PROCESS__NAME", "bot-a")
    monkeypatch.setenv("DOORSTEP_PROCESS__GROUPS", '["群A"]')
    root = Path(__file__).resolve().parent.parent
    ch = RecordingChannel()
    app = App(load_config(root / "config" / "doorstep.yaml"), clock=ManualClock(), channels={"rec": ch})
    await app.start(background=False)
    try:
        for group in ("群A", "群B"):
            await app.inbox(
                Message(
                    id=f"x-{group}",
                    channel="rec",
                    group=group,
                    sender="u1",
                    sender_name="张三",
                    text="3号楼门口井盖松了",
                    mentions_bot=True,
                )
            )
        await app.settle()
        with app.store.session() as s:
            assert [r.group_id for r in s.scalars(select(InboundMessage))] == ["群A"]
            from tickets.notify import owe

            owe(s, key="other", kind="ack", group="群B", text="not ours")
        app.services.tickets.notifier.flush()
        await app.settle()
        assert "not ours" not in str(ch.sent)
        health = app.health()["parts"]["process"]
        assert health == {"name": "bot-a", "groups": ["群A"], "ignored_messages": 1}
    finally:
        await app.stop()


# --- two real processes --------------------------------------------------------------------------------------

GROUPS = [f"扩容测试群{g:02d}" for g in range(50)]
NOTICE = "【停水通知】明天9点到12点停水，请提前储水。"


def _reports() -> list[dict[str, Any]]:
    return [
        {
            "id": f"scale-{n:03d}",
            "group": GROUPS[n % 50],
            "sender": f"u_{n:03d}",
            "sender_name": f"居民{n}",
            "text": f"{n + 1}号楼{n % 4 + 1}单元门口{PROBLEMS[n % len(PROBLEMS)]}",
        }
        for n in range(200)
    ]


def test_two_processes_one_database_one_killed(db_url: str, tmp_path: Path, data_dir: Path) -> None:
    from backend import Backend
    from backend.models import ServiceRequest
    from backend.testing import free_port, running_backend
    from bot.builtin_backend import backend_settings
    from bot.config import load_config

    root = Path(__file__).resolve().parent.parent
    port = free_port()
    be = Backend(
        backend_settings(
            load_config(root / "config" / "doorstep.yaml"),
            f"sqlite:///{tmp_path / 'open311.db'}",
            api_keys=[OPEN311_KEY],
        )
    )
    owned = {"a": GROUPS[0::2], "b": GROUPS[1::2]}
    bots = {
        name: BotProcess(
            tmp_path / name,
            env_for(
                f"bot-{name}",
                groups,
                db_url=db_url,
                backend_url=f"http://127.0.0.1:{port}/open311/v2",
                data=tmp_path / name,
            ),
        )
        for name, groups in owned.items()
    }
    owner = {g: name for name, gs in owned.items() for g in gs}
    msgs = _reports()

    def acks() -> Counter[str]:
        return acked(m for b in bots.values() for m in b.sent())

    def requests() -> list[ServiceRequest]:
        with be.sessions() as s:
            return list(s.scalars(select(ServiceRequest)).all())

    with running_backend(be, port=port):
        try:
            bots["a"].start()  # one at a time: the first one migrates the schema
            bots["b"].start()
            for name, bot in bots.items():
                bot.feed(m for m in msgs[:100] if owner[m["group"]] == name)
            wait_for("some acknowledgements from A", lambda: len(acked(bots["a"].sent())) >= 10)
            bots["a"].kill()  # in the middle, holding claims
            at_kill = len(acked(bots["a"].sent()))
            a_first = sum(owner[m["group"]] == "a" for m in msgs[:100])  # what A had to acknowledge by then
            for name, bot in bots.items():  # B carries on; A's groups' messages wait for A
                bot.feed(m for m in msgs[100:] if owner[m["group"]] == name)
            bots["a"].start()
            wait_for("every reporter acknowledged", lambda: len(acks()) == 200)
            wait_for("200 tickets on the backend", lambda: len(requests()) >= 200)

            store = Store(db_url)  # staff send a notice to all 50 groups (as the admin API writes it)
            try:
                with store.session() as s:
                    s.add(
                        Notice(
                            text=NOTICE,
                            targets=["全部"],
                            group_ids=GROUPS,
                            created_by="admin",
                            created_by_name="街道办",
                            source="api",
                            schedule_label="立即",
                            next_run_at=datetime.now().astimezone(),
                            status="scheduled",
                        )
                    )
            finally:
                store.close()

            def notified() -> Counter[str]:
                return Counter(m["group"] for b in bots.values() for m in b.sent() if NOTICE in m["text"])

            wait_for("the notice in every group", lambda: len(notified()) == 50)
            final_requests = requests()

            def settled() -> bool:  # every owed message sent, the notice done: nothing more to say
                with store.session() as s:
                    owed = s.scalars(select(TicketNotice).where(TicketNotice.state != "sent")).first()
                    return owed is None and s.scalars(select(Notice.status)).one() == "done"

            store = Store(db_url)
            try:
                wait_for("both processes settled", settled)
            finally:
                store.close()
        finally:
            for b in bots.values():
                b.kill()
            be.engine.dispose()

    assert at_kill < a_first, "the kill came in the middle of A's first batch: A had reports left to take"
    assert len(final_requests) == 200 and len(requests()) == 200
    assert len({r.idempotency_key for r in final_requests}) == 200
    assert len({r.description for r in final_requests}) == 200
    senders = {m["sender"] for m in msgs}
    a = acks()
    assert set(a) == senders and set(a.values()) == {1}, "every reporter acknowledged exactly once"
    for name, bot in bots.items():  # and by the process whose account owns the group
        assert {m["group"] for m in bot.sent() if m["text"].startswith("已收到")} <= set(owned[name])
    assert set(notified().values()) == {1} and set(notified()) == set(GROUPS)
    for name, bot in bots.items():
        assert {m["group"] for m in bot.sent() if NOTICE in m["text"]} == set(owned[name])
