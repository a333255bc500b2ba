"""What the `kb`, `ask` and `eval` commands share: opening the knowledge for `--index`, and showing ingest
progress (a rich progress bar on a terminal, plain lines otherwise, e.g. in CI)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from bot.config import Config, load_config
from knowledge.ingest import FileResult
from knowledge.service import KnowledgeService, open_knowledge


def index_dir_for(config: Config, index: str | None) -> Path:
    return Path(index).resolve() if index else config.index_dir


def open_for_command(index: str | None, *, ingest_sample_if_empty: bool) -> tuple[Config, KnowledgeService]:
    """The knowledge for a command. `ask` and `eval` on an empty index ingest the configured sample first
    (as `serve` does), saying so on stderr, so a fresh checkout answers at once."""
    from bot.cli import UserError

    config = load_config()
    directory = index_dir_for(config, index)
    if directory.exists() and not directory.is_dir():
        raise UserError(f"--index {directory}: not a directory")
    try:
        service = open_knowledge(config, index_dir=directory, ingest_sample_if_empty=False)
    except OSError as e:
        raise UserError(f"cannot open the index in {directory}: {e}") from None
    if ingest_sample_if_empty and service.is_empty():
        print(
            f"doorstep: the index in {directory} is empty; ingesting the bundled knowledge first ...",
            file=sys.stderr,
        )
        with IngestProgress() as progress:
            report = service.ingest(
                [p for p in service.sample_paths if p.exists()], on_embed=progress.embedded
            )
        print(f"doorstep: {report.summary()}", file=sys.stderr)
    return config, service


class IngestProgress:
    """`on_embed(done, total)` for `ingest`: a progress bar on a TTY, a line every 10% elsewhere."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._progress: Any = None
        self._task: Any = None
        self._next_pct = 0
        self._t0 = time.perf_counter()

    def __enter__(self) -> IngestProgress:
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("embedding"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("chunks"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def embedded(self, done: int, total: int) -> None:
        if self._progress is not None:
            if self._task is None:
                self._task = self._progress.add_task("embed", total=total)
            self._progress.update(self._task, completed=done)
            return
        pct = int(100 * done / total) if total else 100
        if pct >= self._next_pct or done == total:
            rate = done / max(1e-6, time.perf_counter() - self._t0)
            print(f"embedding: {done}/{total} chunks ({pct}%, {rate:.1f}/s)", file=self.stream, flush=True)
            self._next_pct = (pct // 10 + 1) * 10

    def file(self, result: FileResult) -> None:
        line = result.line()
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self.stream, flush=True)
