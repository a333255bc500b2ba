"""The fault test: the backend is down while 100 reports arrive from 20 groups; the bot process is killed
(SIGKILL, a real subprocess) in the middle and started again; then the backend comes back.

Expected: exactly 100 tickets on the backend (the reports are all different problems, so no merges), no
duplicates, every reporter acknowledged once, and every reporter told once when staff close the ticket.

Run as a script (`python tests/test_tickets_fault.py child DIR`) this file is the bot process: the App with a
spool channel whose platform is two files (messages in, messages sent), so the parent can see everything.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GROUPS = [f"故障测试群{g:02d}" for g in range(20)]


def reports() -> list[dict[str, Any]]:
    from tests.reports import (
        PROBLEMS,
    )  # here: this file also runs as the child script, without tests/ importable

    out = []
    for g, group in enumerate(GROUPS):
        for i in range(5):
            n = g * 5 + i
            out.append(
                {
                    "id": f"fault-{n:03d}",
                    "group": group,
                    "sender": f"u_{n:03d}",
                    "sender_name": f"居民{n}",
                    "text": f"{n + 1}号楼{i + 1}单元门口{PROBLEMS[n % len(PROBLEMS)]}",
                }
            )
    return out


# --- the child: one bot process ---------------------------------------------------------------------------


def child(workdir: Path) -> None:
    from bot.app import App
    from bot.config import load_config
    from tests.spool import SpoolChannel
    from tickets.desk import ReportDesk

    async def main() -> None:
        app = App(load_config(ROOT / "config" / "doorstep.yaml"), channels={"spool": SpoolChannel(workdir)})
        desk = app.services.tickets
        assert isinstance(desk, ReportDesk)
        desk.outbox.base_delay, desk.outbox.max_delay = 0.05, 0.4
        desk.outbox.max_attempts, desk.outbox.parked_retry_seconds = 6, 0.5
        desk.poll_interval_seconds, desk.inflight_grace_seconds = 0.3, 1.0
        desk.notifier.claim_lease_seconds = 1.0
        await app.start(background=False)
        print("ready", flush=True)
        while True:
            await app.tick()
            await asyncio.sleep(0.1)

    asyncio.run(main())


# --- the parent: the test ---------------------------------------------------------------------------------


def _wait(what: str, cond: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _sent(workdir: Path) -> list[dict[str, Any]]:
    from tests.spool import read_sent

    return read_sent(workdir)


def _acked(workdir: Path) -> Counter[str]:
    return Counter(m for s in _sent(workdir) if s["text"].startswith("已收到，工单号") for m in s["mentions"])


def _closed(workdir: Path) -> Counter[str]:
    return Counter(m for s in _sent(workdir) if "已处理完毕" in s["text"] for m in s["mentions"])


def _settled(db: Path) -> bool:
    from sqlalchemy import create_engine, select
    from sqlalchemy.pool import NullPool

    from store.models import Ticket, TicketNotice

    engine = create_engine(f"sqlite:///{db}", poolclass=NullPool)
    try:
        with engine.connect() as c:
            owed = c.execute(select(TicketNotice.id).where(TicketNotice.state != "sent").limit(1)).first()
            still_open = c.execute(select(Ticket.id).where(Ticket.status != "closed").limit(1)).first()
            return owed is None and still_open is None
    finally:
        engine.dispose()


def test_backend_down_bot_killed_backend_back(tmp_path: Path, data_dir: Path) -> None:
    from sqlalchemy import select

    from backend import Backend
    from backend.models import ServiceRequest
    from backend.testing import free_port, running_backend
    from bot.builtin_backend import backend_settings
    from bot.config import load_config

    workdir = tmp_path / "bot"
    workdir.mkdir()
    port = free_port()  # nothing listens here yet: the backend is down
    env = {
        **os.environ,
        "DOORSTEP_DATA": str(data_dir),  # the backend below reads the same generated key
        "DOORSTEP_OPEN311_URL": f"http://127.0.0.1:{port}/open311/v2",
        "DOORSTEP_SEND_LIMITS__ACCOUNT_INTERVAL_SECONDS": "0.02",
        "DOORSTEP_SEND_LIMITS__JITTER_SECONDS": "0",
        "DOORSTEP_SEND_LIMITS__GROUP_PER_MINUTE": "1000",
        "DOORSTEP_POLICY__USER_PER_MINUTE": "100",
        "DOORSTEP_POLICY__GROUP_PER_MINUTE": "1000",
        "PYTHONPATH": str(ROOT),
        "DOORSTEP_LOG": "WARNING",
    }
    env.pop("DOORSTEP_CONFIG", None)

    def start_bot(n: int) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"bot{n}.log").open("wb")
        return subprocess.Popen(
            [sys.executable, __file__, "child", str(workdir)],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    msgs = reports()
    inbox = workdir / "inbox.jsonl"
    bot = start_bot(1)
    try:

        def feed(batch: list[dict[str, Any]]) -> None:
            with inbox.open("a", encoding="utf-8") as f:
                for m in batch:
                    f.write(json.dumps(m, ensure_ascii=False) + "\n")

        feed(msgs[:60])
        _wait("some acknowledgements", lambda: len(_acked(workdir)) >= 10, timeout=60)
        bot.send_signal(signal.SIGKILL)  # in the middle of the stream, no goodbye
        bot.wait(timeout=30)
        at_kill = len(_acked(workdir))
        bot = start_bot(2)
        feed(msgs[60:])  # the rest arrive while the restarted bot catches up
        _wait("every reporter acknowledged", lambda: len(_acked(workdir)) == 100)

        be = Backend(
            backend_settings(
                load_config(ROOT / "config" / "doorstep.yaml"), f"sqlite:///{tmp_path / 'open311.db'}"
            )
        )
        with running_backend(be, port=port):

            def requests() -> list[ServiceRequest]:
                with be.sessions() as s:
                    return list(s.scalars(select(ServiceRequest)).all())

            _wait("100 tickets on the backend", lambda: len(requests()) >= 100)
            for r in requests():  # staff close every ticket
                be.update_status(r.id, "closed", "已处理", "街道")
            _wait("every reporter told of the closure", lambda: len(_closed(workdir)) == 100)
            # the barrier for "nothing more is said": every ticket closed in the bot's store (no more polling)
            # and every owed message sent (none pending or in flight); anything more would need a new event
            _wait("the bot settled", lambda: _settled(data_dir / "doorstep.db"))
            final = requests()
        be.engine.dispose()
    finally:
        bot.send_signal(signal.SIGKILL)
        bot.wait(timeout=30)

    assert at_kill < 60, "the kill came in the middle of the first batch"
    assert len(final) == 100
    assert len({r.idempotency_key for r in final}) == 100
    assert len({r.description for r in final}) == 100
    acked, closed = _acked(workdir), _closed(workdir)
    senders = {m["sender"] for m in msgs}
    assert set(acked) == senders and set(acked.values()) == {1}, "every reporter acknowledged exactly once"
    assert set(closed) == senders and set(closed.values()) == {1}, "every reporter told exactly once"
    assert not [s for s in _sent(workdir) if "已合并" in s["text"]]


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "child":
    sys.path.insert(0, str(ROOT))
    child(Path(sys.argv[2]))
