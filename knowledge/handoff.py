"""One writer per embedded index, also while `doorstep serve` runs (docs/knowledge.md, "Ingesting while
serving"; CONTRACT.md, "Knowledge while serving").

Embedded Chroma keeps part of the index in the memory of the process that opened it, so a second process
writing the same directory leaves the first answering from a state that no longer matches the files
(`chromadb.errors.InternalError: Error finding id`, issue 10 item 7). Hence:

- `doorstep serve` claims its index for as long as it runs: an exclusive `flock` on `<index>/writer.lock`, with
  its pid, its address and a token for this run written into that file (mode 0600, so only a process that could
  write the index itself can read the token).
- `kb ingest` and `kb remove` take the same lock for their run when nobody holds it. When a `serve` holds it
  they hand the work to it: each file goes to its admin API (`POST /admin/knowledge/documents`, removal by
  `DELETE`), authenticated with that token, so the running server stays the one writer and answers from the
  new knowledge as soon as each file is in. When another `kb` run holds it, they wait for it.
- `serve` started while a `kb` run holds the lock waits for it, then opens the index.

The lock is the kernel's: a process that dies (even by SIGKILL) releases it, so a crash never leaves the index
claimed. With a Chroma server (`index.chroma_url`) every process writes through the server, which is built for
several clients, so nothing here applies (docs/knowledge.md, "Several processes").
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

if TYPE_CHECKING:  # the ingest module pulls in the index; the admin API imports this module at start
    from knowledge.ingest import FileResult

LOCK_NAME = "writer.lock"
READY_TIMEOUT = 900.0  # how long `kb` waits for a starting server (a first start ingests the sample first)
_serving_token: str | None = None  # the token of the claim this process holds as `serve`


class HandoffError(Exception):
    """The running server could not take the work; the message is one line for the command."""


@dataclass(frozen=True)
class Holder:
    """Who holds an index's writer lock."""

    pid: int
    role: str  # "serve" | "kb"
    url: str = ""  # serve: where its HTTP side listens (loopback)
    token: str = ""  # serve: accepted by its admin API for this run


def serving_token() -> str | None:
    """The hand-off token of the index this process serves, for the admin API to accept."""
    return _serving_token


def local_url(host: str, port: int) -> str:
    """Where a process on this machine reaches a server listening on host:port."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WriterLock:
    """The exclusive lock on `<index>/writer.lock`, and what its holder wrote into the file."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def try_acquire(self, holder: Holder) -> bool:
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._took(fd, holder)
        return True

    def acquire(self, holder: Holder) -> None:
        """Wait for the lock (Ctrl-C interrupts the wait)."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._took(fd, holder)

    def _took(self, fd: int, holder: Holder) -> None:
        self._fd = fd
        os.fchmod(fd, 0o600)  # it may hold a token: a copied index may have brought the file with other modes
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(holder)).encode(), 0)
        os.fsync(fd)

    def holder(self, wait: float = 2.0) -> Holder | None:
        """The live holder, as it wrote itself into the file. A holder that has just taken the lock may not
        have written yet (the file still names the previous, dead one): read again for up to `wait` s."""
        deadline = time.monotonic() + wait
        while True:
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8") or "{}")
                h = Holder(**{k: raw[k] for k in ("pid", "role", "url", "token") if k in raw})
            except (OSError, ValueError, TypeError, KeyError):
                h = None
            if h is not None and _alive(h.pid):
                return h
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _say(text: str) -> None:
    print(f"doorstep: {text}", file=sys.stderr, flush=True)


@contextmanager
def serve_claim(index_dir: Path, url: str, *, shared: bool = False) -> Iterator[None]:
    """`doorstep serve`'s claim on its index for as long as it runs (a no-op on a Chroma server)."""
    global _serving_token
    if shared:
        yield
        return
    from core.errors import UserError

    lock = WriterLock(index_dir)
    me = Holder(os.getpid(), "serve", url, secrets.token_urlsafe(32))
    if not lock.try_acquire(me):
        other = lock.holder()
        if other is not None and other.role == "serve":
            raise UserError(
                f"the index in {index_dir} is in use by another doorstep serve (pid {other.pid}, {other.url}); "
                "give this one its own DOORSTEP_DATA or DOORSTEP_INDEX"
            )
        who = f"`doorstep kb` (pid {other.pid})" if other else "another process"
        _say(f"waiting for {who} to finish writing the index in {index_dir} ...")
        lock.acquire(me)
    _serving_token = me.token
    try:
        yield
    finally:
        _serving_token = None
        lock.release()


@dataclass
class Writer:
    """What `kb ingest/remove` write through: this process (holding the lock), or a running server."""

    server: Holder | None = None


@contextmanager
def index_writer(index_dir: Path, *, shared: bool = False) -> Iterator[Writer]:
    """For `kb ingest/remove`: the lock for this run, or the running server to hand the work to."""
    if shared:
        yield Writer()
        return
    lock = WriterLock(index_dir)
    me = Holder(os.getpid(), "kb")
    if not lock.try_acquire(me):
        other = lock.holder()
        if other is not None and other.role == "serve" and other.url:
            yield Writer(server=other)
            return
        who = f"`doorstep kb` (pid {other.pid})" if other else "another process"
        _say(f"waiting for {who} to finish writing the index in {index_dir} ...")
        lock.acquire(me)
    try:
        yield Writer()
    finally:
        lock.release()


# --- the hand-off: the running server's admin API ------------------------------------------------------------


class ServerClient:
    """The running server's knowledge endpoints, authenticated with its hand-off token. While the server is
    starting (a first start ingests the sample before it answers) requests wait for it, as long as its process
    lives."""

    def __init__(self, holder: Holder, *, ready_timeout: float = READY_TIMEOUT) -> None:
        self.holder = holder
        self.ready_timeout = ready_timeout
        self.http = httpx.Client(
            base_url=holder.url,
            headers={"Authorization": f"Bearer {holder.token}"},
            timeout=httpx.Timeout(10.0, read=None),  # an upload returns when the file is ingested
            trust_env=False,  # loopback: never through a configured proxy
        )
        self._waited = False

    def __enter__(self) -> ServerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    @property
    def name(self) -> str:
        return f"doorstep serve (pid {self.holder.pid}, {self.holder.url})"

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            try:
                r = self.http.request(method, path, **kw)
                if r.status_code == 401:
                    raise HandoffError(
                        f"{self.name} refused the hand-off (was it restarted?); run the command again"
                    )
                if r.status_code != 503:
                    return r
                why = "its knowledge is still loading"
            except httpx.TransportError as e:
                why = f"it does not answer yet ({type(e).__name__})"
            if not _alive(self.holder.pid):
                raise HandoffError(f"{self.name} stopped before it took the work")
            if time.monotonic() > deadline:
                raise HandoffError(f"{self.name} holds the index but {why}; try again later")
            if not self._waited:
                _say(f"waiting for {self.name}: {why} ...")
                self._waited = True
            time.sleep(0.5)

    @staticmethod
    def _problem(r: httpx.Response) -> str:
        try:
            body = r.json()
        except ValueError:
            return f"HTTP {r.status_code}"
        return str(body.get("reason") or body.get("detail") or body.get("error") or f"HTTP {r.status_code}")

    def upload(self, path: Path, community: str) -> FileResult:
        """One file through `POST /admin/knowledge/documents`: its result as a local ingest reports it."""
        from knowledge.ingest import FileResult

        with path.open("rb") as f:
            r = self._request(
                "POST",
                "/admin/knowledge/documents",
                data={"community": community},
                files={"file": (path.name, f, "application/octet-stream")},
            )
        if r.status_code != 201:
            return FileResult(path, "failed", community, reason=self._problem(r))
        d = r.json()
        return FileResult(
            path, d["status"], d["community"], int(d["chunks"]), warnings=list(d.get("warnings") or [])
        )

    def documents(self) -> list[dict[str, Any]]:
        r = self._request("GET", "/admin/knowledge/documents")
        if r.status_code != 200:
            raise HandoffError(f"{self.name} could not list its documents: {self._problem(r)}")
        return list(r.json())

    def remove(self, source: str, community: str | None = None) -> list[str]:
        """Remove by file name (in one community when given); the keys removed, [] when there was none."""
        params = {"community": community} if community is not None else None
        r = self._request("DELETE", f"/admin/knowledge/documents/{quote(source, safe='')}", params=params)
        if r.status_code == 404:
            return []
        if r.status_code != 200:
            raise HandoffError(f"{self.name} could not remove {source}: {self._problem(r)}")
        return list(r.json()["removed"])
