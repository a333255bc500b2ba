"""What the `kb`, `ask` and `eval` commands share: opening the knowledge for `--index`, showing ingest
progress (a rich progress bar on a terminal, plain lines otherwise, e.g. in CI), and `kb ingest/remove` handed
to a running `serve` (knowledge/handoff.py)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from core.errors import UserError
from core.ports import KnowledgeConfig as Config  # the config as the knowledge reads it
from knowledge.handoff import ServerClient, index_writer
from knowledge.ingest import FileResult, IngestReport, community_of, discover
from knowledge.loaders import MAX_BYTES
from knowledge.service import KnowledgeService, open_knowledge
from knowledge.store import doc_key


def index_dir_for(config: Config, index: str | None) -> Path:
    return Path(index).resolve() if index else config.index_dir


def open_for_command(
    config: Config, index: str | None, *, ingest_sample_if_empty: bool
) -> tuple[Config, KnowledgeService]:
    """The knowledge for a command. `ask` and `eval` on an empty index ingest the configured sample first
    (as `serve` does), saying so on stderr, so a fresh checkout answers at once."""
    directory = index_dir_for(config, index)
    if directory.exists() and not directory.is_dir():
        raise UserError(f"--index {directory}: not a directory")
    try:
        service = open_knowledge(config, index_dir=directory, ingest_sample_if_empty=False)
    except OSError as e:
        raise UserError(f"cannot open the index in {directory}: {e}") from None
    if ingest_sample_if_empty and service.is_empty():
        # writing: as the index's one writer (knowledge/handoff.py), never beside a serve that is building it
        with index_writer(directory, shared=bool(config.main.index.chroma_url)) as writer:
            if writer.server is not None:
                service.close()
                raise UserError(
                    f"the index in {directory} is empty and doorstep serve (pid {writer.server.pid}) is "
                    "building it; try again when it has finished"
                )
            if service.is_empty():
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


# --- `kb ingest/remove` while `serve` runs: the work handed to it (knowledge/handoff.py) ----------------------


def ingest_via_server(
    client: ServerClient, paths: Sequence[str], *, community: str = "", replace: bool = False
) -> IngestReport:
    """Each file to the running server, one upload at a time, with the same per-file checks and lines as a
    local ingest (printed as each file is in); `replace` then removes the server's other documents."""
    t0 = time.perf_counter()
    report = IngestReport()

    def done(r: FileResult) -> None:
        report.files.append(r)
        print(r.line(), flush=True)

    files, problems = discover(paths)
    for r in problems:
        done(r)
    seen: dict[str, Path] = {}
    for path in files:
        comm = community or community_of(path)
        key = doc_key(comm, path.name)
        try:
            size = path.stat().st_size
        except OSError as e:
            done(FileResult(path, "failed", comm, reason=f"cannot read the file ({e.strerror or e})"))
            continue
        if size > MAX_BYTES:
            reason = f"file too large ({size / 1048576:.1f} MB, the limit is {MAX_BYTES / 1048576:.0f} MB)"
            done(FileResult(path, "failed", comm, reason=reason))
            continue
        if key in seen:
            reason = f"another file with the same name was ingested: {seen[key]}"
            done(FileResult(path, "failed", comm, reason=reason))
            continue
        seen[key] = path
        done(client.upload(path, comm))
    if replace:
        kept = {doc_key(r.community, r.source) for r in report.files if r.status != "failed"} | set(seen)
        for d in client.documents():
            key = doc_key(d["community"], d["source"])
            if key not in kept:
                for _ in client.remove(d["source"], d["community"]):
                    done(FileResult(Path(d["source"]), "removed", d["community"], int(d["chunks"])))
    report.seconds = time.perf_counter() - t0
    return report


def summary_via_server(report: IngestReport, client: ServerClient) -> str:
    parts = [
        f"{report.count(s)} {s}"
        for s in ("added", "updated", "unchanged", "removed", "failed")
        if report.count(s)
    ]
    chunks = sum(f.chunks for f in report.files if f.status in ("added", "updated"))
    return (
        f"{len(report.files)} files: {', '.join(parts) or 'nothing to do'}; {chunks} chunks written "
        f"in {report.seconds:.1f}s by {client.name}, which answers from them now"
    )


def remove_via_server(client: ServerClient, sources: Sequence[str]) -> list[str]:
    """`kb remove NAME|COMMUNITY/NAME ...` through the running server; the keys removed."""
    removed: list[str] = []
    for s in sources:
        community, _, name = s.rpartition("/") if "/" in s else (None, "", s)
        removed += client.remove(Path(name).name, community)
    return removed
