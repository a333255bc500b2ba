"""Ingestion: files and folders in, the index updated, one result per file out.

A file's SHA-256 decides: unchanged -> nothing to do; changed -> its old chunks are replaced; a file that
fails is named with the reason and the rest of the batch goes on. A document belongs to the community given
at ingest, else to the folder it sits in under communities/<社区名>/, else it is global.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from knowledge.chunks import Chunk
from knowledge.index import HybridIndex
from knowledge.loaders import MAX_BYTES, SUPPORTED, LoadError, load
from knowledge.splitter import split_document
from knowledge.store import DocRecord, doc_key, now_iso

Status = Literal["added", "updated", "unchanged", "failed", "removed"]
SKIPPED_NAMES = ("readme", "license", "licence")  # attribution notes beside the knowledge, not knowledge
INTERRUPTED = "interrupted: the process is stopping (nothing of this file was written; ingest it again)"


class _Interrupted(Exception):
    pass


@dataclass
class FileResult:
    path: Path
    status: Status
    community: str = ""
    chunks: int = 0
    reason: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        return self.path.name

    def line(self) -> str:
        where = f" [{self.community}]" if self.community else ""
        if self.status == "failed":
            return f"FAILED     {self.path}{where}: {self.reason}"
        note = f" ({'; '.join(self.warnings)})" if self.warnings else ""
        return f"{self.status:<10} {self.path}{where}: {self.chunks} chunks{note}"


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    encoded: int = 0  # chunks the model embedded
    cached: int = 0  # chunks whose vectors came from the cache
    encode_seconds: float = 0.0

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    def count(self, status: Status) -> int:
        return sum(1 for f in self.files if f.status == status)

    def summary(self) -> str:
        parts = [
            f"{self.count(s)} {s}"
            for s in ("added", "updated", "unchanged", "removed", "failed")
            if self.count(s)
        ]
        chunks = sum(f.chunks for f in self.files if f.status in ("added", "updated"))
        rate = (
            f", {self.encoded / self.encode_seconds:.1f} chunks/s embedding"
            if self.encode_seconds > 0
            else ""
        )
        return (
            f"{len(self.files)} files: {', '.join(parts) or 'nothing to do'}; {chunks} chunks written "
            f"({self.encoded} embedded, {self.cached} from cache) in {self.seconds:.1f}s{rate}"
        )


def community_of(path: Path) -> str:
    """communities/<name>/... -> name; anything else is global."""
    parts = path.resolve().parts
    for i, p in enumerate(parts[:-1]):
        if p == "communities" and i + 1 < len(parts) - 1:
            return parts[i + 1]
    return ""


def discover(paths: Iterable[str | Path]) -> tuple[list[Path], list[FileResult]]:
    """Files to ingest, and results for paths that cannot be (missing, unsupported when named directly)."""
    files: list[Path] = []
    problems: list[FileResult] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if (
                    f.is_file()
                    and f.suffix.lower() in SUPPORTED
                    and not f.name.startswith((".", "~$"))
                    and not f.stem.lower().startswith(SKIPPED_NAMES)
                    and not any(part.startswith(".") for part in f.relative_to(p).parts)
                ):
                    files.append(f)
        elif p.is_file():
            files.append(p)
        else:
            problems.append(FileResult(p, "failed", reason="no such file or directory"))
    return files, problems


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ingest(
    index: HybridIndex,
    paths: Iterable[str | Path],
    *,
    community: str = "",
    replace: bool = False,
    max_bytes: int = MAX_BYTES,
    on_file: Callable[[FileResult], None] | None = None,
    on_embed: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> IngestReport:
    """`on_file` hears each file's result as soon as it is known; `on_embed(done, total)` follows the
    embedding of new chunks, the slow part. `cancel`, once set (a server shutting down), stops the run between
    files and between embedding batches: what was not written yet fails as interrupted, nothing is half
    written (the vectors embedded so far stay in the cache, so the next run resumes there)."""

    def stopping() -> bool:
        return cancel is not None and cancel.is_set()

    t0 = time.perf_counter()
    stats0 = dict(index.embeddings.stats)
    report = IngestReport()
    files, problems = discover(paths)
    report.files.extend(problems)
    pending: list[tuple[DocRecord, list[Chunk], FileResult]] = []
    seen: dict[str, Path] = {}

    def done(r: FileResult) -> None:
        report.files.append(r)
        if on_file is not None and r.status in ("failed", "unchanged", "removed"):
            on_file(r)

    for r in problems:
        if on_file is not None:
            on_file(r)

    for path in files:
        comm = community or community_of(path)
        if stopping():
            done(FileResult(path, "failed", comm, reason=INTERRUPTED))
            continue
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise LoadError(
                    f"file too large ({size / 1048576:.1f} MB, the limit is {max_bytes / 1048576:.0f} MB)"
                )
            sha = sha256_of(path)
        except OSError as e:
            done(FileResult(path, "failed", comm, reason=f"cannot read the file ({e.strerror or e})"))
            continue
        except LoadError as e:
            done(FileResult(path, "failed", comm, reason=str(e)))
            continue
        key = doc_key(comm, path.name)
        if key in seen:
            done(
                FileResult(
                    path, "failed", comm, reason=f"another file with the same name was ingested: {seen[key]}"
                )
            )
            continue
        seen[key] = path
        old = index.meta.doc(key)
        if old is not None and old.sha256 == sha:
            index.meta.touch_doc(key, str(path.resolve()))
            done(FileResult(path, "unchanged", comm, chunks=old.chunks))
            continue
        try:
            doc = load(path, max_bytes)
        except LoadError as e:
            done(FileResult(path, "failed", comm, reason=str(e)))
            continue
        if doc.community and not community and not comm:
            comm = doc.community  # a catalog may name its community itself
            key = doc_key(comm, path.name)
            old = index.meta.doc(key)
        chunks = split_document(doc, community=comm)
        if not chunks:
            done(FileResult(path, "failed", comm, reason="nothing to index after splitting"))
            continue
        rec = DocRecord(
            key=key,
            source=path.name,
            community=comm,
            title=doc.title,
            kind=doc.kind,
            path=str(path.resolve()),
            sha256=sha,
            bytes=size,
            chunks=len(chunks),
            ingested_at=now_iso(),
        )
        result = FileResult(
            path, "updated" if old is not None else "added", comm, len(chunks), warnings=doc.warnings
        )
        pending.append((rec, chunks, result))

    if pending:
        total = sum(len(cs) for _, cs, _ in pending)
        embedded = 0

        def advance(n: int) -> None:
            nonlocal embedded
            if stopping():
                raise _Interrupted
            embedded += n
            if on_embed is not None:
                on_embed(embedded, total)

        try:
            index.upsert([(rec, cs) for rec, cs, _ in pending], progress=advance)
        except _Interrupted:
            for _, _, r in pending:
                r.status, r.chunks, r.reason, r.warnings = "failed", 0, INTERRUPTED, []
        for _, _, r in pending:
            report.files.append(r)
            if on_file is not None:
                on_file(r)

    if replace and not stopping():  # an interrupted run never removes the documents it did not get to
        keep = set(seen)
        for d in index.meta.docs():
            if d.key not in keep:
                index.remove(d.key)
                r = FileResult(Path(d.path), "removed", d.community, d.chunks)
                report.files.append(r)
                if on_file is not None:
                    on_file(r)

    s = index.embeddings.stats
    report.encoded = int(s["encoded"] - stats0["encoded"])
    report.cached = int(s["cached"] - stats0["cached"])
    report.encode_seconds = s["encode_seconds"] - stats0["encode_seconds"]
    report.seconds = time.perf_counter() - t0
    return report
