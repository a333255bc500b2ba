"""A harness of real processes: `doorstep serve` and `doorstep backend` as a user starts them (the console
script's module, `python -m bot.cli`), each on a free loopback port with its own data directory and
environment. A process can be waited for (/health), SIGKILLed and started again on the same port; its output
goes to a log file per start, printed when a test fails.

The processes run on a test copy of config/ (`proc_config`) that pins what must not depend on the hour or on
the machine: no quiet hours (the wall clock of a real process would silence trigger-word messages between 22:00
and 07:00), no repeated-question pointer, fast sending and recovery timing, configured keys, and a two-paragraph knowledge
folder instead of the bundled sample, so a first start ingests in a second or two in the background (the start-up
test names the sample; tests that need the sample answered seed a copy of an index built once per session).
`doorstep(...)` runs any other sub-command as its own process, with a process's environment.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
import yaml

from backend.testing import free_port

ROOT = Path(__file__).resolve().parent.parent
SMALL_KNOWLEDGE = ROOT / "tests" / "data" / "procs_knowledge"
SAMPLE = ROOT / "knowledge" / "sample"
KEY = "test-procs-open311-key"  # configured for every process the harness starts, so they agree
ADMIN_TOKEN = "test-procs-admin-token"
ACK = "已收到，工单号"


def wait_for(what: str, cond: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    """Poll `cond` until it returns something truthy (returned); a real process is being waited on."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def doorstep(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Another `doorstep` sub-command as its own process (e.g. `kb ingest` beside a running serve)."""
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def build_sample_index(directory: Path, env: dict[str, str]) -> Path:
    """The bundled sample ingested by `doorstep kb ingest` in its own process (closed cleanly when it exits)."""
    r = doorstep("kb", "ingest", str(SAMPLE), "--index", str(directory), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return directory


def write_test_config(src: Path, dst: Path) -> Path:
    """config/ copied with the settings a test of real processes pins; returns the doorstep.yaml path."""
    shutil.copytree(src, dst)
    main_path = dst / "doorstep.yaml"
    main = yaml.safe_load(main_path.read_text(encoding="utf-8"))
    main["policy"].update(
        quiet_hours=None, user_per_minute=1000, group_per_minute=1000, repeat_window_minutes=0
    )
    main["send_limits"] = {"group_per_minute": 1000, "account_interval_seconds": 0.01, "jitter_seconds": 0}
    main["tickets"].update(
        retry_base_seconds=0.2, retry_max_seconds=1.0, lease_seconds=2.0, recovery_grace_seconds=2.0
    )
    main["tickets"]["api_keys"] = [KEY]
    main.setdefault("http", {})["admin_token"] = ADMIN_TOKEN
    main["knowledge_paths"] = [str(SMALL_KNOWLEDGE)]
    main_path.write_text(yaml.safe_dump(main, allow_unicode=True, sort_keys=False), encoding="utf-8")
    groups_path = dst / main.get("files", {}).get("groups", "groups.yaml")
    groups = yaml.safe_load(groups_path.read_text(encoding="utf-8"))
    for g in groups.get("groups", []):
        (g.get("policy") or {}).pop("quiet_hours", None)  # a group's own quiet hours too
    groups_path.write_text(yaml.safe_dump(groups, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return main_path


class Proc:
    """One real process. `start()` waits until it answers `ready_path`; `kill()` is SIGKILL, no goodbye."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], workdir: Path, port: int, ready_path: str
    ) -> None:
        self.name, self.args, self.env, self.workdir = name, args, env, workdir
        self.port, self.ready_path = port, ready_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.seconds_to_ready = 0.0
        workdir.mkdir(parents=True, exist_ok=True)
        self.http = httpx.Client(base_url=self.url, timeout=10.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data(self) -> Path:
        return Path(self.env["DOORSTEP_DATA"])

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}-{self.starts}.log"

    def start(self, timeout: float = 60.0, *, wait: bool = True) -> Self:
        self.starts += 1
        t0 = time.monotonic()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", *self.args],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait:
            self.wait_ready(timeout)
            self.seconds_to_ready = time.monotonic() - t0
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_for(f"{self.name} to answer {self.ready_path}", self._ready, timeout)

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log(self) -> str:
        """What the current (latest) start has printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _ready(self) -> bool:
        if self.exited() is not None:
            raise AssertionError(f"{self.name} exited with {self.exited()}:\n{self.log()}")
        try:
            r = httpx.get(self.url + self.ready_path, timeout=2.0)
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and self._ready_body(r)

    def _ready_body(self, r: httpx.Response) -> bool:
        return True

    def move_to(self, port: int) -> None:
        """Listen on another port from the next start (the same data directory)."""
        self.port = port
        self.env["DOORSTEP_PORT"] = str(port)
        self.http.close()
        self.http = httpx.Client(base_url=self.url, timeout=10.0)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as a supervisor stops it; the exit code. Fails the test if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not stop within {timeout:.0f} s of SIGTERM") from None

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-6000:]}"
            for p in sorted(self.workdir.glob(f"{self.name}-*.log"))
        )


class Serve(Proc):
    """`doorstep serve` with the simulator channel (and the built-in backend unless one is named)."""

    wait_for_index = False  # ready only when the index is up too (HTTP answers while it opens)

    def _ready_body(self, r: httpx.Response) -> bool:
        return not self.wait_for_index or r.json()["parts"]["index"].get("status") == "up"

    def reply_to(self, group: str, sender: str, timeout: float = 60.0) -> str:
        """The bot's reply mentioning `sender` (each question is asked by a sender of its own)."""

        def found() -> str:
            for m in self.messages(group):
                if m["from_bot"] and sender in m["mentions"]:
                    return str(m["text"])
            if self.exited() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.log()[-3000:]}")
            return ""

        return str(wait_for(f"the reply to {sender}", found, timeout))

    def ask(self, group: str, sender: str, question: str, timeout: float = 60.0) -> str:
        """An @-question (quiet hours answer those too) and the answer to it."""
        self.post(group, sender, question, mentions_bot=True)
        return self.reply_to(group, sender, timeout)

    def post(self, group: str, sender: str, text: str, **extra: Any) -> str:
        r = self.http.post(
            "/sim/messages",
            json={
                "group": group,
                "sender": sender,
                "sender_name": extra.pop("sender_name", sender),
                "text": text,
            }
            | extra,
        )
        assert r.status_code == 202, r.text
        return str(r.json()["message_id"])

    def messages(self, group: str) -> list[dict[str, Any]]:
        r = self.http.get(f"/sim/groups/{group}/messages")
        return list(r.json()) if r.status_code == 200 else []

    def health(self) -> dict[str, Any]:
        return dict(self.http.get("/health").json())

    def acks(self, groups: list[str]) -> Counter[str]:
        """How many acknowledgements each reporter got, in the groups' histories."""
        return Counter(
            m
            for g in groups
            for e in self.messages(g)
            if e["from_bot"] and ACK in e["text"]
            for m in e["mentions"]
        )

    def settled(self) -> bool:
        """Nothing left to send or to file: every owed message said, every ticket sent."""
        parts = self.health()["parts"]
        tb = parts["ticket_backend"]
        return bool(
            parts["sender"]["pending"] == 0
            and tb.get("owed_messages", 0) == 0
            and tb["outbox"]["pending"] == 0
            and tb["outbox"]["parked"] == 0
        )


class Procs:
    """Starts processes for one test and ends them all afterwards."""

    def __init__(self, tmp: Path, config_path: Path) -> None:
        self.tmp = tmp
        self.config_path = config_path
        self.all: list[Proc] = []

    def env(self, data: Path, port: int, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DOORSTEP_", "WECHATY_")) and k != "PYTEST_CURRENT_TEST"
        }
        env.update(
            DOORSTEP_CONFIG=str(self.config_path),
            DOORSTEP_DATA=str(data),
            DOORSTEP_PORT=str(port),
            PYTHONPATH=str(ROOT),
            HF_HUB_OFFLINE="1",
            DOORSTEP_LOG="INFO",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def serve(
        self,
        name: str = "serve",
        *,
        port: int | None = None,
        index_seed: Path | None = None,
        data: Path | None = None,
        **env: str,
    ) -> Serve:
        """A serve process; `index_seed`: start on a copy of this index (and be ready only when it is up);
        `data`: another process's data directory (the default: its own)."""
        port = port or free_port()
        workdir = self.tmp / name
        data = data or workdir / "data"
        p = Serve(name, ["serve"], self.env(data, port, **env), workdir, port, "/health")
        if index_seed is not None:
            shutil.copytree(index_seed, data / "index")
            p.wait_for_index = True
        self.all.append(p)
        return p

    def backend(self, name: str = "backend", *, port: int | None = None, **env: str) -> Proc:
        port = port or free_port()
        workdir = self.tmp / name
        db = f"sqlite:///{workdir / 'open311.db'}"
        args = ["backend", "--port", str(port), "--db", db]
        p = Proc(
            name, args, self.env(workdir / "data", port, **env), workdir, port, "/open311/v2/services.json"
        )
        self.all.append(p)
        return p

    def close(self) -> None:
        for p in self.all:
            p.kill()
            p.http.close()

    def logs(self) -> str:
        return "\n".join(p.logs() for p in self.all)


@pytest.fixture(scope="session")
def proc_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_config(ROOT / "config", tmp_path_factory.mktemp("proc-config") / "config")


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory: pytest.TempPathFactory, proc_config: Path) -> Path:
    """The bundled sample ingested once per session (35-100 s); serve processes start on copies of it."""
    where = tmp_path_factory.mktemp("sample")
    env = Procs(where, proc_config).env(where / "data", free_port())
    return build_sample_index(where / "index", env)


@pytest.fixture
def procs(tmp_path: Path, proc_config: Path) -> Iterator[Procs]:
    ps = Procs(tmp_path, proc_config)
    try:
        yield ps
    finally:
        ps.close()
        print(ps.logs())  # pytest shows it when the test failed
