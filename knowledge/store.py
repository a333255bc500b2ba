"""The index's own records: which documents are in it (with their content hash) and their chunks (with
their jieba tokens, so BM25 can be rebuilt without re-tokenising). One SQLite file in the index directory."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from knowledge.chunks import Chunk, ChunkKind

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    key TEXT PRIMARY KEY, source TEXT NOT NULL, community TEXT NOT NULL, title TEXT NOT NULL,
    kind TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL, bytes INTEGER NOT NULL,
    chunks INTEGER NOT NULL, ingested_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    id TEXT PRIMARY KEY, doc_key TEXT NOT NULL, ordinal INTEGER NOT NULL, source TEXT NOT NULL,
    title TEXT NOT NULL, locator TEXT NOT NULL, kind TEXT NOT NULL, context TEXT NOT NULL,
    community TEXT NOT NULL, text TEXT NOT NULL, tokens TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ix_chunks_doc ON chunks(doc_key);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


def doc_key(community: str, source: str) -> str:
    return f"{community}/{source}"


@dataclass(frozen=True, slots=True)
class DocRecord:
    key: str
    source: str
    community: str
    title: str
    kind: str
    path: str
    sha256: str
    bytes: int
    chunks: int
    ingested_at: str


class MetaStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()

    # --- meta
    def get_meta(self, k: str, default: str = "") -> str:
        with self._lock:
            row = self._db.execute("SELECT v FROM meta WHERE k = ?", (k,)).fetchone()
        return str(row[0]) if row else default

    def set_meta(self, k: str, v: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (k, v))

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation", "0"))

    def bump(self) -> int:
        g = self.generation + 1
        self.set_meta("generation", str(g))
        return g

    # --- documents
    def doc(self, key: str) -> DocRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM docs WHERE key = ?", (key,)).fetchone()
        return DocRecord(*row) if row else None

    def docs(self) -> list[DocRecord]:
        with self._lock:
            return [DocRecord(*r) for r in self._db.execute("SELECT * FROM docs ORDER BY community, source")]

    def docs_by_source(self, source: str) -> list[DocRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM docs WHERE source = ? OR key = ?", (source, source)
            ).fetchall()
        return [DocRecord(*r) for r in rows]

    def chunk_ids(self, key: str) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT id FROM chunks WHERE doc_key = ?", (key,))]

    def replace_doc(self, rec: DocRecord, chunks: Sequence[Chunk], tokens: Sequence[list[str]]) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM chunks WHERE doc_key = ?", (rec.key,))
            self._db.execute(
                "INSERT OR REPLACE INTO docs VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    rec.key,
                    rec.source,
                    rec.community,
                    rec.title,
                    rec.kind,
                    rec.path,
                    rec.sha256,
                    rec.bytes,
                    rec.chunks,
                    rec.ingested_at,
                ),
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO chunks VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        c.id,
                        rec.key,
                        c.ordinal,
                        c.source,
                        c.title,
                        c.locator,
                        c.kind,
                        c.context,
                        c.community,
                        c.text,
                        json.dumps(t, ensure_ascii=False),
                    )
                    for c, t in zip(chunks, tokens, strict=True)
                ],
            )

    def touch_doc(self, key: str, path: str) -> None:
        with self._lock, self._db:
            self._db.execute("UPDATE docs SET path = ? WHERE key = ?", (path, key))

    def delete_doc(self, key: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM chunks WHERE doc_key = ?", (key,))
            self._db.execute("DELETE FROM docs WHERE key = ?", (key,))

    # --- chunks
    def count_chunks(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    def iter_tokens(self) -> Iterator[tuple[str, str, list[str]]]:
        """(id, community, tokens) of every chunk, in a stable order."""
        with self._lock:
            rows = self._db.execute("SELECT id, community, tokens FROM chunks ORDER BY rowid").fetchall()
        for cid, community, toks in rows:
            yield cid, community, json.loads(toks)

    def iter_texts(self) -> Iterator[tuple[str, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, title || ' ' || context || ' ' || locator || '\n' || text FROM chunks ORDER BY rowid"
            ).fetchall()
        yield from rows

    def set_tokens(self, items: Sequence[tuple[str, list[str]]]) -> None:
        with self._lock, self._db:
            self._db.executemany(
                "UPDATE chunks SET tokens = ? WHERE id = ?",
                [(json.dumps(t, ensure_ascii=False), cid) for cid, t in items],
            )

    def chunks(self, ids: Sequence[str]) -> dict[str, Chunk]:
        out: dict[str, Chunk] = {}
        with self._lock:
            for i in range(0, len(ids), 500):
                part = list(ids[i : i + 500])
                marks = ",".join("?" * len(part))
                for row in self._db.execute(
                    "SELECT id, text, source, title, locator, kind, context, community, ordinal FROM chunks "
                    f"WHERE id IN ({marks})",
                    part,
                ):
                    out[row[0]] = Chunk(
                        text=row[1],
                        source=row[2],
                        title=row[3],
                        locator=row[4],
                        kind=cast(ChunkKind, row[5]),
                        context=row[6],
                        community=row[7],
                        ordinal=row[8],
                    )
        return out

    def names(self) -> list[str]:
        """Catalog entry names and section headings: words jieba should keep whole."""
        with self._lock:
            return [
                r[0]
                for r in self._db.execute(
                    "SELECT DISTINCT locator FROM chunks WHERE kind IN ('entry', 'section')"
                )
            ]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            docs = self._db.execute(
                "SELECT community, COUNT(*), SUM(chunks) FROM docs GROUP BY community"
            ).fetchall()
        return {c or "": {"documents": int(n), "chunks": int(k or 0)} for c, n, k in docs}

    def close(self) -> None:
        self._db.close()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
