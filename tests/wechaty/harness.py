"""The Python side of the WeChat end-to-end tests: runs `peer.mjs` (the official Wechaty puppet server with the
official mock puppet) and talks to it in JSON lines. See tests/test_wechaty.py."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEER_JS = HERE / "peer.mjs"
NODE_MODULES = HERE / "node_modules"
INSTALL_HINT = "npm ci --prefix tests/wechaty"


def missing_reason() -> str | None:
    """Why the peer cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed (the WeChat end-to-end tests need Node.js 18+)"
    for pkg in ("wechaty-puppet-service", "wechaty-puppet-mock", "wechaty-puppet", "file-box"):
        if not (NODE_MODULES / pkg / "package.json").exists():
            return f"tests/wechaty/node_modules lacks {pkg}: run `{INSTALL_HINT}`"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Event = dict[str, Any]


class Peer:
    """One run of peer.mjs: a puppet server on a loopback port, its world, and what the bot said there."""

    def __init__(
        self,
        world: dict[str, Any],
        workdir: Path,
        *,
        port: int | None = None,
        token: str = "doorstep-e2e",
        scan: bool = False,
    ) -> None:
        self.world = world
        self.workdir = workdir
        self.port = port or free_port()
        self.token = token
        self.scan = scan
        self.events: list[Event] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self._ids = itertools.count(1)
        self._cursor: dict[str, int] = {}
        self.stderr_path = workdir / f"peer-{self.port}.log"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, timeout: float = 60.0) -> None:
        world_path = self.workdir / "world.json"
        world_path.write_text(json.dumps(self.world, ensure_ascii=False), encoding="utf-8")
        args = [str(PEER_JS), "--port", str(self.port), "--token", self.token, "--world", str(world_path)]
        if self.scan:
            args.append("--scan")
        self._stderr = open(self.stderr_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = await asyncio.create_subprocess_exec(
            "node",
            *args,
            cwd=str(HERE),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
            env={**os.environ, "WECHATY_LOG": os.environ.get("WECHATY_LOG", "warn")},
            start_new_session=True,
        )
        self._reader = asyncio.create_task(self._read())
        await self.wait_for(lambda e: e.get("event") == "listening", timeout, "the peer to listen")

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while True:
            line = await self._proc.stdout.readline()
            if not line:
                break
            try:
                event = json.loads(line)
            except ValueError:
                continue
            async with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        async with self._changed:
            self.events.append({"event": "exit"})
            self._changed.notify_all()

    async def wait_until(self, cond: Callable[[], Any], timeout: float, what: str) -> Any:
        """Wait until `cond()` is truthy (checked whenever the peer reports something); return its value."""

        async def check() -> Any:
            async with self._changed:
                while True:
                    value = cond()
                    if value:
                        return value
                    if self.events and self.events[-1].get("event") == "exit":
                        raise AssertionError(
                            f"the peer exited while waiting for {what}; see {self.stderr_path}"
                        )
                    # woken by the peer's next event, or after a moment for conditions on the bot's side
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), 0.05)

        try:
            return await asyncio.wait_for(check(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last events: {self.events[-8:]}"
            ) from None

    async def wait_for(
        self, pred: Callable[[Event], bool], timeout: float, what: str, start: int = 0
    ) -> Event:
        """The first event from index `start` on that satisfies `pred`."""
        return await self.wait_until(
            lambda: next((e for e in self.events[start:] if pred(e)), None), timeout, what
        )

    async def do(self, op: str, timeout: float = 20.0, **kw: Any) -> Event:
        """Run one scenario command on the peer and wait for its acknowledgement."""
        assert self._proc is not None and self._proc.stdin is not None
        cid = f"c{next(self._ids)}"
        start = len(self.events)
        self._proc.stdin.write((json.dumps({"op": op, "id": cid, **kw}, ensure_ascii=False) + "\n").encode())
        await self._proc.stdin.drain()
        e = await self.wait_for(
            lambda e: e.get("id") == cid and e.get("event") in ("done", "error"),
            timeout,
            f"command {op}",
            start,
        )
        if e["event"] == "error":
            raise AssertionError(f"peer command {op} failed: {e.get('message')}")
        return e

    def said(self, room: str | None = None, to: str | None = None) -> list[Event]:
        return [
            e
            for e in self.events
            if e.get("event") == "said"
            and (room is None or e.get("room") == room)
            and (to is None or e.get("to") == to)
        ]

    async def next_said(
        self, room: str | None = None, *, to: str | None = None, timeout: float = 30.0
    ) -> Event:
        """The next thing the bot said in `room` (or to contact `to`) that no earlier call returned."""
        key = f"{room}|{to}"
        n = self._cursor.get(key, 0)
        said = await self.wait_until(
            lambda: len(self.said(room, to)) > n and self.said(room, to),
            timeout,
            f"the bot to say something in {room or to}",
        )
        self._cursor[key] = n + 1
        return said[n]  # type: ignore[no-any-return]

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)
        if getattr(self, "_stderr", None):
            self._stderr.close()
