"""Several real bot processes on one store, for the scale-out test and bench (issue 7).

Each process is `python tests/scaleout_support.py DIR`: the App with a spool channel whose platform is two files
in DIR (inbox.jsonl: messages in; sent.jsonl: messages sent, with the time), so the parent sees everything a
process said even after it was killed. Settings come from the environment (`env_for`), as in production:
the store URL, the backend, and `DOORSTEP_PROCESS__NAME` / `DOORSTEP_PROCESS__GROUPS` for the groups it owns.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script for the child process: make `tests` importable
    sys.path.insert(0, str(ROOT))

from tests.spool import read_sent  # noqa: E402

ACK = "已收到，工单号"
OPEN311_KEY = "scaleout-open311-key"  # the bots' key on the test's backend (nothing secret ships in config)


def env_for(name: str, groups: Sequence[str], *, db_url: str, backend_url: str, data: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DOORSTEP_DATA": str(data),
        "DOORSTEP_STORAGE__URL": db_url,
        "DOORSTEP_OPEN311_URL": backend_url,
        "DOORSTEP_OPEN311_API_KEY": OPEN311_KEY,
        "DOORSTEP_PROCESS__NAME": name,
        "DOORSTEP_PROCESS__GROUPS": json.dumps(list(groups), ensure_ascii=False),
        "DOORSTEP_SEND_LIMITS__ACCOUNT_INTERVAL_SECONDS": "0.01",
        "DOORSTEP_SEND_LIMITS__JITTER_SECONDS": "0",
        "DOORSTEP_SEND_LIMITS__GROUP_PER_MINUTE": "1000",
        "DOORSTEP_POLICY__USER_PER_MINUTE": "100",
        "DOORSTEP_POLICY__GROUP_PER_MINUTE": "1000",
        "PYTHONPATH": str(ROOT),
        "DOORSTEP_LOG": "WARNING",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("DOORSTEP_CONFIG", None)
    return env


class BotProcess:
    """One bot process (a subprocess) with its spool directory; `kill()` is SIGKILL, no goodbye."""

    def __init__(self, workdir: Path, env: dict[str, str], *, knowledge: bool = False) -> None:
        self.workdir = workdir
        self.env = env
        self.knowledge = knowledge
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"bot{self.starts}.log"

    def start(self, timeout: float = 120.0) -> None:
        self.starts += 1
        args = [sys.executable, __file__, str(self.workdir)] + (["--knowledge"] if self.knowledge else [])
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(args, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"bot process exited: {self.log_path.read_text(errors='replace')[-3000:]}"
                )
            return "ready" in self.log_path.read_text(errors="replace")

        wait_for(f"{self.workdir.name} ready", ready, timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def feed(self, messages: Iterable[dict[str, Any]]) -> None:
        with (self.workdir / "inbox.jsonl").open("a", encoding="utf-8") as f:
            for m in messages:
                f.write(json.dumps({**m, "t": time.time()}, ensure_ascii=False) + "\n")

    def sent(self) -> list[dict[str, Any]]:
        return read_sent(self.workdir)


def wait_for(what: str, cond: Callable[[], bool], timeout: float = 120.0, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def acked(sent: Iterable[dict[str, Any]]) -> Counter[str]:
    return Counter(m for s in sent if s["text"].startswith(ACK) for m in s["mentions"])


# --- the child: one bot process ---------------------------------------------------------------------------


def child(workdir: Path, with_knowledge: bool) -> None:
    from bot.app import App
    from bot.config import load_config
    from bot.runtime import open_knowledge_for
    from tests.spool import SpoolChannel
    from tickets.desk import ReportDesk

    async def main() -> None:
        config = load_config(ROOT / "config" / "doorstep.yaml")
        knowledge = open_knowledge_for(config) if with_knowledge else None
        channel = SpoolChannel(workdir, f"doorstep-{config.process_name}", poll_seconds=0.01)
        app = App(config, channels={"spool": channel}, knowledge=knowledge)
        desk = app.services.tickets
        assert isinstance(desk, ReportDesk)
        desk.outbox.base_delay, desk.outbox.max_delay = 0.05, 0.4
        desk.outbox.lease_seconds = 2.0  # a killed process's outbox claims are taken over quickly
        desk.poll_interval_seconds, desk.inflight_grace_seconds = 0.5, 2.0
        desk.notifier.claim_lease_seconds = 1.0
        await app.start(background=False)
        print("ready", flush=True)
        while True:
            await app.tick()
            await asyncio.sleep(0.05)

    asyncio.run(main())


if __name__ == "__main__" and len(sys.argv) >= 2:
    sys.path.insert(0, str(ROOT))
    child(Path(sys.argv[1]), "--knowledge" in sys.argv[2:])
