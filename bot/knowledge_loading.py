"""Opening the knowledge base in the background, so `serve` answers HTTP and files reports at once.

On a first start with an empty index the bundled sample is ingested (35-100 s on a small machine); meanwhile
/health shows the progress, the console a progress line, and a question gets "知识库正在准备中（已完成 40%）".
An ingestion that was interrupted (a crash, a kill) is finished on the next start: a marker file in the index
directory says the sample was begun and not completed, and unchanged files are no-ops when ingested again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bot.config import Config
from core.ports import JSON, KnowledgeAnswer
from knowledge.gaps import mark_forwarded, record_gap
from knowledge.types import Answer, Answerer, IndexUnavailable
from store import Store

if TYPE_CHECKING:
    from knowledge.service import KnowledgeService

log = logging.getLogger(__name__)

PREPARING = "知识库正在准备中（已完成 {percent}%），请稍后再问。"
PENDING_MARKER = "sample-ingest.pending"
# Answering runs off the event loop on its own bounded pool: up to ASK_WORKERS questions are answered at once
# (their question embeddings are batched into one model call, knowledge.embeddings.QueryBatcher); more wait
# for a worker. The default executor (cpu + 4 threads) would make the 7th of 20 residents queue.
ASK_WORKERS = 24
_ASK_POOL = ThreadPoolExecutor(max_workers=ASK_WORKERS, thread_name_prefix="doorstep-ask")


async def answer_off_loop(knowledge: Answerer, question: str, community: str | None) -> Answer:
    """The answer, computed on the bounded answer pool so the event loop (and the other residents) never wait
    for the model."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_ASK_POOL, knowledge.answer, question, community)


class KnowledgeSlot:
    """The `Knowledge` port: the knowledge service once it is open (at once for commands and tests; when the
    background load is done for `serve`), and the load's progress meanwhile."""

    def __init__(self, service: Answerer | None = None) -> None:
        self.service = service
        self.loading: KnowledgeLoading | None = None

    def preparing(self) -> str | None:
        if self.service is None and self.loading is not None and self.loading.active:
            return self.loading.reply_text()
        return None

    async def ask(self, question: str, community: str | None) -> KnowledgeAnswer | None:
        service = self.service
        if service is None:
            return None
        try:
            answer = await answer_off_loop(service, question, community)
        except IndexUnavailable as e:  # logged by the index; the next question reopens it
            log.warning("question not answered, the index is unavailable: %s", e)
            return None
        return KnowledgeAnswer(answer.found, answer.answer)

    def full(self) -> KnowledgeService | None:
        """The knowledge service itself, for the admin API (documents, uploads); None for a plain answerer."""
        from knowledge.service import KnowledgeService  # loaded already when a service is open

        return self.service if isinstance(self.service, KnowledgeService) else None

    def interrupt(self) -> None:
        """An upload still ingesting ends now rather than hold up the shutdown."""
        full = self.full()
        if full is not None:
            full.interrupt()

    def stop(self) -> None:
        if self.loading is not None:
            self.loading.stop()

    def health(self) -> JSON:
        if self.service is None:
            return self.loading.health() if self.loading is not None else {"status": "not loaded"}
        full = self.full()
        if full is None:
            return {"status": "up"}
        try:
            st = full.stats()
        except Exception as e:  # health reports a broken index, never raises
            log.warning("index health check failed: %s", e)
            return {"status": "down", "error": str(e)}
        return {"status": "up", "documents": st.get("documents"), "chunks": st.get("chunks")}


class GapRecords:
    """The `GapLog` port on the store (knowledge/gaps.py)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(
        self, *, group: str, community: str, sender: str, sender_name: str, question: str, now: datetime
    ) -> int:
        return record_gap(
            self.store,
            group=group,
            community=community,
            sender=sender,
            sender_name=sender_name,
            question=question,
            now=now,
        )

    def forwarded(self, gap_id: int, to: str, now: datetime) -> None:
        mark_forwarded(self.store, gap_id, to, now)


class _Stopped(Exception):
    """Raised inside the ingestion's progress callback to end it early when the process stops."""


class KnowledgeLoading:
    """One background load: `start(on_ready)` returns at once; `on_ready(service)` runs in the loading thread
    when the service is ready (the caller hands it over to its event loop)."""

    def __init__(
        self,
        config: Config,
        *,
        open_service: Callable[[], Any] | None = None,
        console: TextIO | None = None,
    ) -> None:
        self.config = config
        self._open = open_service or self._open_default
        self.console = console
        self.state = "starting"  # starting | ingesting | ready | failed | stopped
        self.error = ""
        self.files_total = 0
        self.files_done = 0
        self.chunks_total = 0
        self.chunks_done = 0
        self.started_at = time.monotonic()
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_line = 0.0

    # --- state, for /health and the ask handler --------------------------------------------------------

    @property
    def active(self) -> bool:
        return self.state in ("starting", "ingesting")

    def percent(self) -> int:
        if self.state == "ready":
            return 100
        if self.chunks_total:  # embedding is the slow part: it measures the progress
            return min(99, int(100 * self.chunks_done / self.chunks_total))
        if self.files_total:
            return min(99, int(100 * self.files_done / self.files_total))
        return 0

    def reply_text(self) -> str:
        return PREPARING.format(percent=self.percent())

    def health(self) -> dict[str, Any]:
        h: dict[str, Any] = {"status": "loading" if self.active else self.state}
        if self.state == "ingesting":
            h["ingesting"] = {
                "progress": self.percent(),
                "files": self.files_total,
                "chunks_done": self.chunks_done,
                "chunks_total": self.chunks_total,
            }
        if self.error:
            h["error"] = self.error
        return h

    # --- running -------------------------------------------------------------------------------------

    def start(self, on_ready: Callable[[Any], None]) -> None:
        # a daemon thread: a process stopped in the middle of an ingestion exits at once (the marker file
        # makes the next start finish it)
        self._thread = threading.Thread(
            target=self._run, args=(on_ready,), name="knowledge-loading", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.active

    def _open_default(self) -> Any:
        from knowledge.service import open_knowledge  # loading it pulls in the embedding model

        return open_knowledge(self.config, ingest_sample_if_empty=False)

    def _run(self, on_ready: Callable[[Any], None]) -> None:
        try:
            service = self._open()
            marker = Path(self.config.index_dir) / PENDING_MARKER
            if service.is_empty() or marker.exists():
                self._ingest_sample(service, marker)
            if self._stop.is_set():
                raise _Stopped
            service.warm_up()
        except _Stopped:
            self.state = "stopped"
            log.info("knowledge loading stopped with the process")
            return
        except Exception as e:  # the bot runs on without answers; /health says why
            self.state, self.error = "failed", f"{type(e).__name__}: {e}"
            log.exception("loading the knowledge base failed")
            self._say(f"knowledge base failed to load: {self.error}")
            return
        self.seconds = time.monotonic() - self.started_at
        self.state = "ready"
        log.info("knowledge base ready after %.1f s", self.seconds)
        on_ready(service)

    def _ingest_sample(self, service: Any, marker: Path) -> None:
        from knowledge.ingest import discover

        paths = [p for p in service.sample_paths if p.exists()]
        self.files_total = len(discover(paths)[0])
        self.state = "ingesting"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("the bundled sample is being ingested; removed when done\n", encoding="utf-8")
        self._say(f"first start: ingesting the bundled knowledge ({self.files_total} files)")

        def on_file(_: Any) -> None:
            self.files_done += 1
            if self._stop.is_set():
                raise _Stopped

        def on_embed(done: int, total: int) -> None:
            self.chunks_done, self.chunks_total = done, total
            if self._stop.is_set():
                raise _Stopped
            self._progress_line()

        report = service.ingest(paths, on_file=on_file, on_embed=on_embed)
        marker.unlink(missing_ok=True)
        self._say(f"knowledge base ready: {report.summary()}", end=True)
        log.info("empty index: ingested the configured knowledge: %s", report.summary())

    # --- the console ---------------------------------------------------------------------------------

    def _progress_line(self) -> None:
        out = self.console
        if out is None:
            return
        tty = getattr(out, "isatty", lambda: False)()
        now = time.monotonic()
        if not tty and now - self._last_line < 5 and self.chunks_done < self.chunks_total:
            return  # a log file gets a line every few seconds, a terminal a live bar
        self._last_line = now
        width = 30
        filled = int(width * self.percent() / 100)
        bar = "#" * filled + "-" * (width - filled)
        line = (
            f"knowledge base: [{bar}] {self.percent():3d}% "
            f"({self.chunks_done}/{self.chunks_total} passages embedded)"
        )
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=out, flush=True)

    def _say(self, text: str, *, end: bool = False) -> None:
        out = self.console
        if out is None:
            return
        tty = getattr(out, "isatty", lambda: False)()
        print(("\n" if tty and end else "") + text, file=out, flush=True)
