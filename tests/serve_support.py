"""A real `doorstep serve` process for tests: its own data directory (with a copy of an index built once per
test session), a free port, waited for on /health; and the `doorstep` command run as another process.

Every wait here is on a real process, polled with a deadline. The group policy is pinned by environment so that
nothing depends on the hour (questions are @-mentions, which quiet hours answer too)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from backend.testing import free_port

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "knowledge" / "sample"


def doorstep_env(data: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DOORSTEP_CONFIG", "DOORSTEP_INDEX", "DOORSTEP_PORT")
    }
    env = {
        **env,
        "DOORSTEP_DATA": str(data),
        "HF_HUB_OFFLINE": "1",
        "DOORSTEP_LOG": "INFO",
        "DOORSTEP_HTTP__ADMIN_TOKEN": "test-serve-admin-token",  # configured, so a test can call the admin API
        "DOORSTEP_POLICY__REPEAT_WINDOW_MINUTES": "0",
        "DOORSTEP_POLICY__USER_PER_MINUTE": "1000",
        "DOORSTEP_POLICY__GROUP_PER_MINUTE": "1000",
        "DOORSTEP_SEND_LIMITS__ACCOUNT_INTERVAL_SECONDS": "0.01",
        "DOORSTEP_SEND_LIMITS__JITTER_SECONDS": "0",
        "DOORSTEP_SEND_LIMITS__GROUP_PER_MINUTE": "1000",
        **extra,
    }
    return env


def doorstep(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The `doorstep` command as its own process."""
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def build_sample_index(directory: Path) -> Path:
    """The bundled sample ingested by `doorstep kb ingest` in its own process (closed cleanly when it exits)."""
    r = doorstep("kb", "ingest", str(SAMPLE), "--index", str(directory), env=doorstep_env(directory.parent))
    assert r.returncode == 0, r.stdout + r.stderr
    return directory


def wait_for(what: str, cond: Callable[[], Any], timeout: float = 60.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class ServeProcess:
    """`doorstep serve` on a free port with DOORSTEP_DATA=`data`; its output in `data/../serve-N.log`."""

    def __init__(self, data: Path, *, index_seed: Path | None = None, **env: str) -> None:
        self.data = data
        self.port = free_port()
        self.env = doorstep_env(data, DOORSTEP_PORT=str(self.port), **env)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        if index_seed is not None and not (data / "index").exists():
            shutil.copytree(index_seed, data / "index")

    @property
    def log_path(self) -> Path:
        return self.data.parent / f"serve-{self.starts}.log"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def start(self, *, wait: bool = True, timeout: float = 180.0) -> ServeProcess:
        self.starts += 1
        self.data.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "serve"],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if wait:
            try:
                self.wait_healthy(timeout)
            except BaseException:
                self.kill()
                raise
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def wait_healthy(self, timeout: float = 180.0) -> None:
        def up() -> bool:
            if self.exited() is not None:
                raise AssertionError(f"doorstep serve exited ({self.exited()}):\n{self.log()[-3000:]}")
            try:
                r = httpx.get(f"{self.url}/health", timeout=2)
            except httpx.HTTPError:
                return False
            # HTTP answers within seconds while the index opens in the background: wait for the index too
            return r.status_code == 200 and r.json()["parts"]["index"].get("status") == "up"

        wait_for("doorstep serve to answer /health with its index up", up, timeout)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, as a supervisor stops it; SIGKILL if it does not exit within `timeout`."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            raise AssertionError(f"doorstep serve did not stop within {timeout:.0f} s of SIGTERM") from None

    # --- the simulator channel

    def post(self, group: str, sender: str, text: str, *, mention: bool = True) -> str:
        r = httpx.post(
            f"{self.url}/sim/messages",
            json={
                "group": group,
                "sender": sender,
                "sender_name": sender,
                "text": text,
                "mentions_bot": mention,
            },
            timeout=10,
        )
        assert r.status_code == 202, r.text
        return str(r.json()["message_id"])

    def messages(self, group: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/sim/groups/{group}/messages", timeout=10)
        r.raise_for_status()
        return list(r.json())

    def reply_to(self, group: str, sender: str, timeout: float = 60.0) -> str:
        """The bot's reply addressed to `sender` (each question is asked by a sender of its own)."""

        def found() -> str:
            for m in self.messages(group):
                if m["from_bot"] and sender in m["mentions"]:
                    return str(m["text"])
            if self.exited() is not None:
                raise AssertionError(f"doorstep serve exited:\n{self.log()[-3000:]}")
            return ""

        return str(wait_for(f"the reply to {sender}", found, timeout))

    def ask(self, group: str, sender: str, question: str, timeout: float = 60.0) -> str:
        self.post(group, sender, question)
        return self.reply_to(group, sender, timeout)
