"""The index's own records: which documents are in it (with their content hash) and their chunks (with
their jieba tokens, so BM25 can be rebuilt without re-tokenising), and a generation that changes with every
write. With embedded Chroma: one SQLite file in the index directory (`MetaStore`). With a Chroma server: in the
server itself (`ChromaMetaStore`), so every process sharing the index sees the same records and generation."""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast

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


class Records(Protocol):
    """What the index needs from its records, on either back end."""

    @property
    def generation(self) -> int | str: ...
    def get_meta(self, k: str, default: str = "") -> str: ...
    def set_meta(self, k: str, v: str) -> None: ...
    def bump(self) -> int | str: ...
    def doc(self, key: str) -> DocRecord | None: ...
    def docs(self) -> list[DocRecord]: ...
    def docs_by_source(self, source: str) -> list[DocRecord]: ...
    def chunk_ids(self, key: str) -> list[str]: ...
    def chunk_extras(
        self, key: str, chunks: Sequence[Chunk], tokens: Sequence[list[str]]
    ) -> list[dict[str, str | int]] | None: ...
    def replace_doc(self, rec: DocRecord, chunks: Sequence[Chunk], tokens: Sequence[list[str]]) -> None: ...
    def touch_doc(self, key: str, path: str) -> None: ...
    def delete_doc(self, key: str) -> None: ...
    def count_chunks(self) -> int: ...
    def corpus(self) -> list[tuple[str, str, list[str], str]]: ...
    def iter_texts(self) -> Iterator[tuple[str, str]]: ...
    def set_tokens(self, items: Sequence[tuple[str, list[str]]]) -> None: ...
    def chunks(self, ids: Sequence[str]) -> dict[str, Chunk]: ...
    def names(self) -> list[str]: ...
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


def _stats(docs: Sequence[DocRecord]) -> dict[str, Any]:
    out: dict[str, dict[str, int]] = {}
    for d in docs:
        c = out.setdefault(d.community, {"documents": 0, "chunks": 0})
        c["documents"] += 1
        c["chunks"] += d.chunks
    return out


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

    def chunk_extras(
        self, key: str, chunks: Sequence[Chunk], tokens: Sequence[list[str]]
    ) -> list[dict[str, str | int]] | None:
        return None  # the chunk rows live here; the vector records stay as they were

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

    def corpus(self) -> list[tuple[str, str, list[str], str]]:
        """(id, community, tokens, text for the bigram view) of every chunk, in a stable order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, community, tokens, title || ' ' || context || ' ' || locator || '\n' || text "
                "FROM chunks ORDER BY rowid"
            ).fetchall()
        return [(cid, community, json.loads(toks), text) for cid, community, toks, text in rows]

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


STATE_ID = "__state__"
PAGE = 2000  # records per request when reading a whole collection from the server


class ChromaMetaStore:
    """The records kept in the Chroma server next to the vectors, so that every process sharing the index sees
    them and nothing lives in one machine's files (docs/knowledge.md, "Several processes").

    - Chunks are the vector records themselves: their metadata carry the document key, title, context, ordinal
      and the jieba tokens (JSON), next to the text (the record's document). A chunk's vector, text and tokens
      are therefore written in one request and can never disagree.
    - Documents (with their SHA-256) and the index state (generation, lexicon signature) are records of a
      small side collection `<collection>-docs` (1-dimensional placeholder vectors, never queried).
    - The generation is a fresh random token on every write (not a counter: two writers bumping at once
      must never leave the same value), written after the data, and read before the data when BM25 is
      rebuilt, so a process holding token T has at least the data of T.
    """

    def __init__(self, client: Any, chunks: Any, name: str) -> None:
        self._chunks = chunks
        self._docs = client.get_or_create_collection(name=f"{name}-docs", embedding_function=None)

    # --- state
    def _state(self) -> dict[str, Any]:
        got = self._docs.get(ids=[STATE_ID], include=["metadatas"])
        return dict(got["metadatas"][0] or {}) if got["ids"] else {}

    def get_meta(self, k: str, default: str = "") -> str:
        v = self._state().get(k)
        return default if v is None else str(v)

    def set_meta(self, k: str, v: str) -> None:
        if self._docs.get(ids=[STATE_ID], include=[])["ids"]:
            self._docs.update(ids=[STATE_ID], metadatas=[{k: v}])  # merges with the other keys
        else:
            self._docs.upsert(ids=[STATE_ID], embeddings=[[1.0]], metadatas=[{"record": "state", k: v}])

    @property
    def generation(self) -> str:
        return self.get_meta("generation", "0")

    def bump(self) -> str:
        g = uuid.uuid4().hex
        self.set_meta("generation", g)
        return g

    # --- documents
    @staticmethod
    def _doc(m: Any) -> DocRecord:
        return DocRecord(
            key=str(m["key"]),
            source=str(m["source"]),
            community=str(m["community"]),
            title=str(m["title"]),
            kind=str(m["kind"]),
            path=str(m["path"]),
            sha256=str(m["sha256"]),
            bytes=int(m["bytes"]),
            chunks=int(m["chunks"]),
            ingested_at=str(m["ingested_at"]),
        )

    def _find_docs(self, where: dict[str, Any]) -> list[DocRecord]:
        got = self._docs.get(where=where, include=["metadatas"])
        return [self._doc(m) for m in got["metadatas"] or []]

    def doc(self, key: str) -> DocRecord | None:
        got = self._docs.get(ids=[f"doc:{key}"], include=["metadatas"])
        return self._doc(got["metadatas"][0]) if got["ids"] else None

    def docs(self) -> list[DocRecord]:
        return sorted(self._find_docs({"record": "doc"}), key=lambda d: (d.community, d.source))

    def docs_by_source(self, source: str) -> list[DocRecord]:
        return self._find_docs({"$or": [{"source": source}, {"key": source}]})

    def chunk_ids(self, key: str) -> list[str]:
        return list(self._chunks.get(where={"doc_key": key}, include=[])["ids"])

    def chunk_extras(
        self, key: str, chunks: Sequence[Chunk], tokens: Sequence[list[str]]
    ) -> list[dict[str, str | int]] | None:
        return [
            {
                "doc_key": key,
                "title": c.title,
                "context": c.context,
                "ordinal": c.ordinal,
                "tokens": json.dumps(t, ensure_ascii=False),
            }
            for c, t in zip(chunks, tokens, strict=True)
        ]

    def replace_doc(self, rec: DocRecord, chunks: Sequence[Chunk], tokens: Sequence[list[str]]) -> None:
        """The document's record; its chunks were written by the index with `chunk_extras`."""
        meta: dict[str, str | int] = {"record": "doc", **{k: getattr(rec, k) for k in DocRecord.__slots__}}
        self._docs.upsert(ids=[f"doc:{rec.key}"], embeddings=[[1.0]], metadatas=[meta])

    def touch_doc(self, key: str, path: str) -> None:
        old = self.doc(key)
        if old is not None and old.path != path:
            self._docs.update(ids=[f"doc:{key}"], metadatas=[{"path": path}])

    def delete_doc(self, key: str) -> None:
        ids = self.chunk_ids(key)
        if ids:
            self._chunks.delete(ids=ids)
        self._docs.delete(ids=[f"doc:{key}"])

    # --- chunks
    def count_chunks(self) -> int:
        return int(self._chunks.count())

    def _all_chunks(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(id, text, metadata) of every chunk, sorted by id: the BM25 row order must not depend on the
        server's order of return."""
        rows: list[tuple[str, str, dict[str, Any]]] = []
        offset = 0
        while True:
            got = self._chunks.get(include=["documents", "metadatas"], limit=PAGE, offset=offset)
            ids = got["ids"]
            for cid, text, m in zip(ids, got["documents"] or [], got["metadatas"] or [], strict=True):
                rows.append((cid, text or "", dict(m or {})))
            if len(ids) < PAGE:
                break
            offset += PAGE
        rows.sort(key=lambda r: r[0])
        return rows

    @staticmethod
    def _bigram_text(text: str, m: dict[str, Any]) -> str:
        return f"{m.get('title', '')} {m.get('context', '')} {m.get('locator', '')}\n{text}"

    def corpus(self) -> list[tuple[str, str, list[str], str]]:
        return [
            (
                cid,
                str(m.get("community", "")),
                json.loads(str(m.get("tokens", "[]"))),
                self._bigram_text(text, m),
            )
            for cid, text, m in self._all_chunks()
        ]

    def iter_texts(self) -> Iterator[tuple[str, str]]:
        for cid, text, m in self._all_chunks():
            yield cid, self._bigram_text(text, m)

    def set_tokens(self, items: Sequence[tuple[str, list[str]]]) -> None:
        for s in range(0, len(items), PAGE):
            part = items[s : s + PAGE]
            self._chunks.update(
                ids=[cid for cid, _ in part],
                metadatas=[{"tokens": json.dumps(t, ensure_ascii=False)} for _, t in part],
            )

    def chunks(self, ids: Sequence[str]) -> dict[str, Chunk]:
        if not ids:
            return {}
        got = self._chunks.get(ids=list(ids), include=["documents", "metadatas"])
        return {
            cid: Chunk(
                text=text or "",
                source=str(m.get("source", "")),
                title=str(m.get("title", "")),
                locator=str(m.get("locator", "")),
                kind=cast(ChunkKind, m.get("kind", "prose")),
                context=str(m.get("context", "")),
                community=str(m.get("community", "")),
                ordinal=int(m.get("ordinal", 0)),
            )
            for cid, text, m in zip(got["ids"], got["documents"] or [], got["metadatas"] or [], strict=True)
            if m
        }

    def names(self) -> list[str]:
        got = self._chunks.get(where={"kind": {"$in": ["entry", "section"]}}, include=["metadatas"])
        return sorted({str(m["locator"]) for m in got["metadatas"] or [] if m and m.get("locator")})

    def stats(self) -> dict[str, Any]:
        return _stats(self.docs())

    def close(self) -> None:
        pass


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
