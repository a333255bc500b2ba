"""The hybrid index: dense vectors in Chroma (through LangChain's Chroma integration) fused with BM25 over
jieba tokens (bm25s), queries expanded by the term lexicon, results limited to global knowledge plus the
asking group's community.

Chroma is embedded (PersistentClient in the index directory) unless a Chroma server URL is configured.
Vectors always come from our embedding model: Chroma's default embedding function is never called.

The records BM25 is built from (chunks with their tokens, documents, a generation) live next to Chroma: in a
SQLite file of the index directory when Chroma is embedded, in the Chroma server itself when one is configured
(several processes share it). Every search first reads the generation (one small read) and rebuilds the BM25
views when another process, or this one, has changed the index since.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

import bm25s
import numpy as np

from knowledge.chunks import Chunk
from knowledge.embeddings import CachedEmbeddings
from knowledge.rerank import CANDIDATES, DEFAULT_RERANKER, Reranker
from knowledge.store import ChromaMetaStore, DocRecord, MetaStore, Records
from knowledge.text import Lexicon, add_words, bigrams, tokenize
from knowledge.types import IndexUnavailable

log = logging.getLogger(__name__)
logging.getLogger("bm25s").setLevel(logging.WARNING)

# fused = 0.75 dense + 0.125 BM25 over jieba words + 0.125 BM25 over character bigrams, each normalised
WEIGHTS = {"dense": 0.75, "words": 0.125, "bigrams": 0.125}
POOL = 60  # candidates taken from each retriever before fusion
DENSE_FLOOR = 0.80  # e5 cosine between unrelated Chinese texts rarely falls below this: the 0 of the scale
UPSERT_BATCH = 1000

# Everyday questions that no community's knowledge answers. Their best cosine against this index is the
# "background" the found decision measures a real question against: e5's cosines drift with the corpus (the
# bundled sample: 0.849, the untouched regulations: 0.840), so an absolute cut-off fitted on one corpus does
# not carry to another. Recomputed whenever the index changes.
BACKGROUND_QUESTIONS = (
    "明天天气怎么样",
    "今晚吃什么好",
    "推荐一部好看的电影",
    "红烧肉怎么做才好吃",
    "今天股市涨了吗",
    "世界杯冠军是哪个国家",
    "学英语有什么好方法",
    "手机屏幕摔碎了怎么办",
    "怎么减肥最快",
    "周末去哪里旅游好玩",
    "高铁票怎么改签",
    "孩子不爱吃饭怎么办",
    "多肉植物怎么养",
    "电脑开不了机怎么办",
    "月亮为什么有阴晴圆缺",
    "咖啡喝多了会失眠吗",
    "饺子怎么包好看",
    "微信怎么给别人转账",
    "汽车保养多久做一次",
    "中秋节是几月几号",
)


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Hit:
    chunk: Chunk
    score: float  # fused score, 0..1
    dense: float  # cosine similarity to the question, 0 when outside the dense candidates
    bm25: float  # BM25 score, 0 when no query term matched
    dense_rank: int | None = None
    bm25_rank: int | None = None
    bigram_rank: int | None = None  # rank in the character-bigram BM25 view
    # how far the chunk's cosine stands out of the question's own dense pool (z-score over the `POOL` best):
    # relative to what this question reaches in this index, not to an absolute cosine level
    peak: float = 0.0
    rerank: float = 0.0  # the reranker's score, when it ran


def chroma_client(directory: Path, url: str = "") -> object:
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if url:
        u = urlparse(url)
        return chromadb.HttpClient(
            host=u.hostname or "localhost",
            port=u.port or (443 if u.scheme == "https" else 8000),
            ssl=u.scheme == "https",
            settings=settings,
        )
    directory.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(directory), settings=settings)


class HybridIndex:
    def __init__(
        self,
        directory: Path,
        embeddings: CachedEmbeddings,
        lexicon: Lexicon | None = None,
        *,
        chroma_url: str = "",
        collection: str = "doorstep",
        reranker: Reranker | None = DEFAULT_RERANKER,
    ) -> None:
        self.directory = directory
        self.embeddings = embeddings
        self.lexicon = lexicon or Lexicon()
        self.chroma_url = chroma_url
        self.reranker = reranker
        self.collection_name = (
            f"{collection}-{embeddings.encoder.name}"  # a model change never mixes dimensions
        )
        self._open_vectors()
        # shared: the records live in the Chroma server, so BM25 is never saved to (nor loaded from) local files
        self.shared = bool(chroma_url)
        self.meta: Records = (
            ChromaMetaStore(self._client, self.vectors._collection, self.collection_name)
            if self.shared
            else MetaStore(directory / "meta.sqlite")
        )
        self._lock = threading.RLock()
        self._lexical: dict[str, bm25s.BM25] = {}
        self._vocabulary: frozenset[str] = frozenset()
        self._vocabulary_gen: int | str | None = None
        self._lexical_gen: int | str = -1
        self._ids: list[str] = []
        self._community_of: np.ndarray = np.zeros(0, dtype=np.int32)
        self._community_codes: dict[str, int] = {}
        self._background: dict[str, float] = {}
        self._background_gen: int | str | None = None
        add_words(self.meta.names())
        self._retokenise_if_lexicon_changed()
        self._vectors_gen = self.meta.generation  # the generation this process's Chroma client matches
        self._reopens = 0

    def _open_vectors(self) -> None:
        from langchain_chroma import Chroma

        self._client = chroma_client(self.directory / "chroma", self.chroma_url)
        self.vectors = Chroma(
            client=self._client,  # type: ignore[arg-type]
            collection_name=self.collection_name,
            embedding_function=self.embeddings,
            collection_configuration={"hnsw": {"space": "cosine"}},
        )

    def _reopen_vectors(self) -> None:
        """Embedded Chroma holds part of the index in this process's memory; after another process wrote the
        directory that memory no longer matches the files ("Error finding id"). Open it afresh from disk."""
        with self._lock:
            # closed first: Chroma shares one in-memory state per directory between the clients of a process,
            # so a new client opened while the old one lives would get the same stale state
            close = getattr(self._client, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as e:  # the old client is being dropped anyway
                    log.debug("closing the old Chroma client: %s", e)
            self._open_vectors()
            self._reopens += 1

    def _follow_other_writers(self) -> None:
        """When the generation moved without this process writing, another process wrote (a `kb` run while
        nothing served, an older version): read the index afresh before answering from it."""
        if self.shared:
            return  # a Chroma server is one state for every client
        gen = self.meta.generation
        if gen != self._vectors_gen:
            with self._lock:
                if gen != self._vectors_gen:
                    log.info("the index changed in another process: reopening it")
                    self._reopen_vectors()
                    self._vectors_gen = gen

    # --- writing ---------------------------------------------------------------------------------

    def upsert(
        self, docs: Sequence[tuple[DocRecord, list[Chunk]]], progress: Callable[[int], None] | None = None
    ) -> None:
        """Replace each document's chunks (vectors, tokens, records). Embedding runs once for the whole
        batch so the model works on full batches; unchanged chunk texts come from the embedding cache."""
        chunks = [c for _, cs in docs for c in cs]
        vectors = self.embeddings.passages([c.embed_text for c in chunks], progress=progress)
        self._follow_other_writers()  # never write from a stale view
        with self._lock:
            i = 0
            for rec, cs in docs:
                old = self.meta.chunk_ids(rec.key)
                if old:
                    self.vectors.delete(ids=old)
                vecs = vectors[i : i + len(cs)]
                i += len(cs)
                tokens = [tokenize(c.index_text) for c in cs]
                self._add_vectors(cs, vecs, self.meta.chunk_extras(rec.key, cs, tokens))
                self.meta.replace_doc(rec, cs, tokens)
            self._vectors_gen = self.meta.bump()  # after the data: who sees the new generation sees the data

    def _add_vectors(
        self, chunks: Sequence[Chunk], vectors: np.ndarray, extras: list[dict[str, str | int]] | None = None
    ) -> None:
        # Straight to the collection: the vectors are computed already (LangChain's add_texts would embed
        # again), and batches stay under Chroma's maximum.
        coll = self.vectors._collection
        for s in range(0, len(chunks), UPSERT_BATCH):
            part = chunks[s : s + UPSERT_BATCH]
            coll.upsert(
                ids=[c.id for c in part],
                embeddings=vectors[s : s + UPSERT_BATCH],  # type: ignore[arg-type]
                documents=[c.text for c in part],
                metadatas=[
                    {
                        "source": c.source,
                        "community": c.community,
                        "locator": c.locator,
                        "kind": c.kind,
                        **(extras[s + j] if extras else {}),
                    }
                    for j, c in enumerate(part)
                ],
            )

    def remove(self, key: str) -> int:
        self._follow_other_writers()
        with self._lock:
            ids = self.meta.chunk_ids(key)
            if ids:
                self.vectors.delete(ids=ids)
            self.meta.delete_doc(key)
            self._vectors_gen = self.meta.bump()
            return len(ids)

    def clear(self) -> None:
        with self._lock:
            for d in self.meta.docs():
                self.remove(d.key)

    # --- BM25 ------------------------------------------------------------------------------------

    def _retokenise_if_lexicon_changed(self) -> None:
        sig = self.lexicon.signature
        if self.meta.get_meta("lexicon") == sig:
            return
        items = [(cid, tokenize(text)) for cid, text in self.meta.iter_texts()]
        if items:
            self.meta.set_tokens(items)
            self.meta.bump()
        self.meta.set_meta("lexicon", sig)

    def _lexical_ready(self) -> dict[str, bm25s.BM25]:
        """The two BM25 indexes (jieba words, character bigrams), rebuilt when the index has changed: from
        the stored tokens, or loaded as saved when the saved generation is the current one."""
        gen = self.meta.generation
        if self._lexical_gen == gen:
            return self._lexical
        with self._lock:
            if self._lexical_gen == gen:
                return self._lexical
            rows = self.meta.corpus()
            ids = [r[0] for r in rows]
            comms = [r[1] for r in rows]
            words = [r[2] or [""] for r in rows]
            codes: dict[str, int] = {}
            self._community_of = np.array([codes.setdefault(c, len(codes)) for c in comms], dtype=np.int32)
            self._community_codes = codes
            self._ids = ids
            self._lexical = {}
            if ids:
                corpora = {
                    "words": lambda: words,
                    "bigrams": lambda: [bigrams(r[3]) or [""] for r in rows],
                }
                for name, corpus in corpora.items():
                    self._lexical[name] = self._load_or_build(name, gen, corpus)
            self._lexical_gen = gen
            return self._lexical

    def vocabulary(self) -> Set[str]:
        """Every character bigram the index contains (the bigram BM25's vocabulary), for the found decision.
        With a Chroma server, once BM25 is built, the vocabulary of the last search's snapshot: the hits being
        judged came from it, and it saves a second generation read per answer."""
        lexical = self._lexical if self.shared and self._lexical_gen != -1 else self._lexical_ready()
        retriever = lexical.get("bigrams")
        if retriever is None:
            return frozenset()
        if self._vocabulary_gen != self._lexical_gen:
            self._vocabulary = frozenset(retriever.vocab_dict)
            self._vocabulary_gen = self._lexical_gen
        return self._vocabulary

    def background(self) -> dict[str, float]:
        """{"all": the mean best cosine that an everyday question no knowledge answers reaches in this index}.
        Computed from the documents actually ingested (one dense query per background question) and kept
        until the index changes. (Per kind of chunk was measured too: a kind with few chunks gets a lower
        maximum by count alone, which misled the decision on the dev set.)"""
        gen = self._lexical_gen if self._lexical_gen != -1 else self.meta.generation
        if self._background_gen == gen:
            return self._background
        with self._lock:
            if self._background_gen == gen:
                return self._background
            vecs = [self.embeddings.query(q) for q in BACKGROUND_QUESTIONS]
            got = self.vectors._collection.query(
                query_embeddings=[v.tolist() for v in vecs], n_results=1, include=["distances"]
            )
            dists = [d[0] for d in got["distances"] or [] if d]
            out = {"all": float(np.mean([1.0 - float(d) for d in dists]))} if dists else {}
            self._background, self._background_gen = out, gen
            return out

    def _load_or_build(self, name: str, gen: int | str, corpus: Callable[[], list[list[str]]]) -> bm25s.BM25:
        if self.shared:  # rebuilt from the server's records; a local save could not be trusted to match them
            retriever = bm25s.BM25()
            retriever.index(corpus(), show_progress=False)
            return retriever
        saved = self.directory / f"bm25-{name}"
        marker = saved / "generation.json"
        if marker.exists() and json.loads(marker.read_text()).get("generation") == gen:
            try:
                return bm25s.BM25.load(str(saved))
            except Exception:  # a half-written save: rebuild
                log.info("rebuilding the %s BM25 index", name)
        retriever = bm25s.BM25()
        retriever.index(corpus(), show_progress=False)
        try:
            shutil.rmtree(saved, ignore_errors=True)
            retriever.save(str(saved), show_progress=False)
            marker.write_text(json.dumps({"generation": gen}))
        except OSError as e:
            log.warning("could not save the BM25 index: %s", e)
        return retriever

    def _mask(self, community: str | None) -> np.ndarray | None:
        if not community:
            return None
        allowed = [self._community_codes[c] for c in ("", community) if c in self._community_codes]
        return np.isin(self._community_of, allowed)

    # --- searching -------------------------------------------------------------------------------

    def query_tokens(self, question: str) -> list[str]:
        return tokenize(self.lexicon.expand(question))

    def search(
        self,
        question: str,
        community: str | None = None,
        k: int = 5,
        pool: int = POOL,
        rerank: bool | None = None,
    ) -> list[Hit]:
        """The k best chunks for a question: the fused candidates, re-scored by the reranker (unless `rerank`
        is False or the index has none)."""
        use = self.reranker is not None and rerank is not False
        hits = self.candidates(question, community, CANDIDATES if use else k, pool)
        if use and self.reranker is not None:
            hits = self.reranker.rerank(question, hits)
        return hits[:k]

    def candidates(
        self, question: str, community: str | None = None, n: int = CANDIDATES, pool: int = POOL
    ) -> list[Hit]:
        """The n best chunks by fused score. The dense side embeds the question as asked (e5 understands
        colloquial words; appending lexicon terms measured worse), the BM25 side gets the lexicon's standard
        terms added. Scores are fused linearly after normalisation over each candidate pool, which
        measured better than reciprocal-rank fusion on the dev set (see docs/knowledge.md)."""
        expanded = self.lexicon.expand(question)
        self._follow_other_writers()
        lexical = self._lexical_ready()  # one generation check per search
        dense = self._vector_read(lambda: self._dense(question, community, pool))
        sparse = self._sparse(lexical, "words", tokenize(expanded), community, pool)
        chars = self._sparse(lexical, "bigrams", bigrams(expanded), community, pool)
        fused: dict[str, float] = {}
        for ranking, weight in (
            (dense, WEIGHTS["dense"]),
            (sparse, WEIGHTS["words"]),
            (chars, WEIGHTS["bigrams"]),
        ):
            if not ranking:
                continue
            hi = ranking[0][1]
            lo = min(DENSE_FLOOR, ranking[-1][1]) if ranking is dense else 0.0
            span = (hi - lo) or 1.0
            for cid, s in ranking:
                fused[cid] = fused.get(cid, 0.0) + weight * (s - lo) / span
        dense_of = {cid: (r, s) for r, (cid, s) in enumerate(dense)}
        bm25_of = {cid: (r, s) for r, (cid, s) in enumerate(sparse)}
        bigram_of = {cid: r for r, (cid, _) in enumerate(chars)}
        pool_scores = np.asarray([s for _, s in dense], dtype=float)
        pool_mean = float(pool_scores.mean()) if len(pool_scores) else 0.0
        pool_std = float(pool_scores.std()) if len(pool_scores) > 1 else 0.0
        order = sorted(fused, key=lambda c: fused[c], reverse=True)[:n]
        chunks = self.meta.chunks(order)
        # a chunk only BM25 found still gets its true dense similarity: the reranker and the decision need it
        missing = [c for c in order if c not in dense_of]
        if missing and dense:
            qvec = self.embeddings.query(question)
            got = self._vector_read(lambda: self.vectors._collection.get(ids=missing, include=["embeddings"]))
            for cid, vec in zip(
                got["ids"], got["embeddings"] if got["embeddings"] is not None else [], strict=False
            ):
                dense_of[cid] = (len(dense), float(np.dot(np.asarray(vec, dtype=np.float32), qvec)))
        return [
            Hit(
                chunk=chunks[c],
                score=fused[c],
                dense=dense_of.get(c, (0, 0.0))[1],
                bm25=bm25_of.get(c, (0, 0.0))[1],
                dense_rank=dense_of[c][0] if c in dense_of and dense_of[c][0] < len(dense) else None,
                bm25_rank=bm25_of[c][0] if c in bm25_of else None,
                bigram_rank=bigram_of.get(c),
                peak=(dense_of[c][1] - pool_mean) / pool_std if c in dense_of and pool_std > 0 else 0.0,
            )
            for c in order
            if c in chunks
        ]

    def _vector_read(self, read: Callable[[], T]) -> T:
        """A read from Chroma; when it fails (a view gone stale, a file replaced under it) the index is
        reopened from disk and the read tried once more. Still failing: IndexUnavailable, which the bot
        answers with a clear "try again later" while the next question tries afresh."""
        from chromadb.errors import ChromaError

        reopens = self._reopens
        try:
            return read()
        except (ChromaError, RuntimeError) as e:
            log.warning("reading the index failed (%s: %s); reopening it", type(e).__name__, e)
            if self.shared:
                raise IndexUnavailable(str(e)) from e
            with self._lock:
                if self._reopens == reopens:  # not reopened by another thread meanwhile
                    self._reopen_vectors()
        try:
            return read()
        except (ChromaError, RuntimeError) as e:
            log.error("the index cannot be read even after reopening it: %s: %s", type(e).__name__, e)
            raise IndexUnavailable(str(e)) from e

    def _dense(self, text: str, community: str | None, n: int) -> list[tuple[str, float]]:
        vec = self.embeddings.query(text)
        where = {"community": {"$in": ["", community]}} if community else None
        found = self.vectors.similarity_search_by_vector_with_relevance_scores(
            vec.tolist(),
            k=n,
            filter=where,  # type: ignore[arg-type]
        )
        return [(doc.id, 1.0 - float(dist)) for doc, dist in found if doc.id]  # cosine distance -> similarity

    def _sparse(
        self, lexical: dict[str, bm25s.BM25], view: str, tokens: list[str], community: str | None, n: int
    ) -> list[tuple[str, float]]:
        retriever = lexical.get(view)
        if retriever is None or not tokens:
            return []
        scores = retriever.get_scores(tokens)
        mask = self._mask(community)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top])]
        return [(self._ids[i], float(scores[i])) for i in top if scores[i] > 0]

    # --- facts -----------------------------------------------------------------------------------

    def count(self) -> int:
        return self.meta.count_chunks()

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.directory.rglob("*") if p.is_file())

    def close(self) -> None:
        self.meta.close()
