"""The knowledge service: FAQ first, then the hybrid index; an extractive answer (or an LLM's, when one is
configured) with its source, or an honest "not found". What the bot, the CLI and the evaluator use."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.ports import KnowledgeConfig as Config  # the config as the knowledge reads it
from knowledge.decide import DEFAULT_DECISION, Decision, content_words, features, type_missing
from knowledge.embeddings import CachedEmbeddings, EmbeddingCache, Encoder, load_encoder
from knowledge.extractive import extract_passage, source_line
from knowledge.faq import FAQItem, FAQMatcher
from knowledge.index import POOL, Hit, HybridIndex
from knowledge.ingest import FileResult, IngestReport, ingest
from knowledge.llm import LLMWriter
from knowledge.rerank import CANDIDATES, HOW, QUESTION_TYPES, passage_types, question_types
from knowledge.terms import DEFAULT_TERMS
from knowledge.text import Lexicon
from knowledge.types import Answer, Citation

log = logging.getLogger(__name__)

COMPANION_GAP = (
    0.02  # a nearby second passage joins the answer when its cosine is this close to the best one's
)
# words that say how or where, not what about: they do not make an entry "about the question's topic"
GENERIC_WORDS = frozenset(
    {"申请", "办理", "登记", "手续", "材料", "社区", "地方", "需要", "可以", "部门", "窗口"}
    | {c for cues in QUESTION_TYPES.values() for c in cues}
)
NOT_FOUND = "抱歉，这个问题我在社区的政策和服务资料里没有找到答案。需要的话请回复“转人工”，我请网格员或社区工作人员来解答。"
EMPTY_QUESTION = "请把您的问题说得具体一点，比如“助老食堂几点开饭”。"


@dataclass(frozen=True, slots=True)
class Threshold:
    """The older found rule, kept for comparison (`KnowledgeService(threshold=Threshold())`); the default is
    the fitted `knowledge.decide.Decision`. When the best passage counts as an answer, on the e5 cosine similarity between the question and that
    passage. Calibrated on the dev set (docs/knowledge.md): the unanswerable questions' best passages score
    0.84-0.885, answerable ones mostly 0.87-0.94. A passage BM25 also ranks high (they share real words)
    needs a little less."""

    dense_alone: float = 0.89  # accepted on dense similarity alone
    dense_agreed: float = 0.875  # accepted when BM25 also ranks the passage in its top `agreed_rank`
    agreed_rank: int = 3


def _citation(h: Hit) -> Citation:
    return Citation(
        source=h.chunk.source,
        title=h.chunk.title,
        locator=h.chunk.locator,
        text=h.chunk.text,
        score=round(h.dense, 4),
    )


class KnowledgeService:
    """Implements knowledge.types.Answerer."""

    def __init__(
        self,
        index: HybridIndex,
        faq: FAQMatcher | None = None,
        *,
        llm: LLMWriter | None = None,
        threshold: Threshold | None = None,
        decision: Decision | None = None,
        sample_paths: Sequence[Path] = (),
        store: Any = None,
        database_url: str = "",
    ) -> None:
        self.index = index
        self.faq = faq or FAQMatcher(encode=index.embeddings.query)
        self.llm = llm
        self.threshold = threshold
        self.decision = decision or DEFAULT_DECISION
        self.sample_paths = list(sample_paths)
        self.store = store  # store.Store holding the knowledge gaps; opened from database_url when needed
        self.database_url = database_url
        self.stopping = threading.Event()  # set by `interrupt()`: a running ingest stops at the next batch

    # --- answering -------------------------------------------------------------------------------

    def retrieve(self, question: str, community: str | None = None, k: int = 5) -> list[Hit]:
        return self.index.search(question, community or None, k=k)

    def answer(self, question: str, community: str | None = None) -> Answer:
        t0 = time.perf_counter()
        q = question.strip()
        if not q:
            return Answer(question=question, found=False, answer=EMPTY_QUESTION, via="none")
        faq = self.faq.match(q, community or None)
        if faq is not None:
            it = faq.item
            cite = Citation(
                source="faq.yaml",
                title=it.source,
                locator="常见问题",
                text=it.answer,
                score=round(faq.score, 4),
            )
            text = f"{it.answer}\n{cite.line()}"
            return Answer(q, True, text, [cite], (time.perf_counter() - t0) * 1000, via="faq")
        candidates = self.retrieve(q, community, k=CANDIDATES)  # ranked; the first 5 are cited
        hits = candidates[:5]
        citations = [_citation(h) for h in hits]
        if not hits or not self.answerable(q, hits):
            return Answer(q, False, NOT_FOUND, citations, (time.perf_counter() - t0) * 1000, via="none")
        text, via, used, pool = self._compose(q, candidates, community)
        if used:  # the passages the answer uses (an LLM's citations, a rule and its place) lead the list
            lead = [_citation(pool[i]) for i in used]
            citations = (lead + [c for c in citations if c not in lead])[:5]
        return Answer(q, True, text, citations, (time.perf_counter() - t0) * 1000, via=via)

    def answerable(self, question: str, hits: Sequence[Hit]) -> bool:
        """The fitted decision (knowledge.decide) over the best passage's cosine, its margin over the next
        candidates and the question's word coverage; `threshold`, when given, is the older cosine rule."""
        if self.threshold is not None:
            top, th = hits[0], self.threshold
            if top.dense >= th.dense_alone:
                return True
            return (
                top.bm25_rank is not None and top.bm25_rank < th.agreed_rank and top.dense >= th.dense_agreed
            )
        ix = self.index
        if type_missing(question, hits[0].chunk):
            return False
        f = features(
            question, hits, ix.lexicon, ix.vocabulary(), ix.background(), ask=self.decision.reads_ask_split
        )
        return self.decision.found(f)

    def _compose(
        self, question: str, hits: Sequence[Hit], community: str | None
    ) -> tuple[str, str, list[int], Sequence[Hit]]:
        """The answer's text, how it was written, the indices (into the returned hits) of the passages it uses."""
        if self.llm is not None:
            written = self.llm.write(question, [h.chunk for h in hits[:3]])
            if written is not None:
                text, cited = written
                lines = "\n".join(dict.fromkeys(source_line(hits[i].chunk) for i in cited))
                return f"{text}\n{lines}", "llm", cited, hits
        best = hits[0].chunk
        where = where_to_go(question, hits)
        if where is None and question_types(question) & HOW and best.kind == "article":
            # the place may rank lower than the rule's neighbours: look through the whole fused pool
            wider = [
                hits[0],
                *(h for h in self.index.candidates(question, community, POOL) if h.chunk.id != best.id),
            ]
            where = where_to_go(question, wider)
            if where is not None:
                hits = wider
        if where is None:
            return f"{extract_passage(question, best)}\n{source_line(best)}", "extractive", [], hits
        other = hits[where].chunk
        text = (
            f"{extract_passage(question, best)}\n{extract_passage(question, other)}\n"
            f"{source_line(best)}\n{source_line(other)}"
        )
        return text, "extractive", [0, where], hits

    def warm_up(self) -> None:
        """Load what the first question would otherwise wait for (jieba, BM25, FAQ vectors, the model)."""
        self.answer("社区服务")

    # --- managing --------------------------------------------------------------------------------

    def replace_faq(self, items: Sequence[FAQItem]) -> None:
        """Answer from these FAQ entries from now on (faq.yaml's and those staff wrote in the workbench,
        knowledge/staff_faq.py). One assignment: a question answered meanwhile on another thread reads the old
        matcher or the new one, never half of one."""
        self.faq = FAQMatcher(items, encode=self.index.embeddings.query)

    def ingest(
        self,
        paths: Iterable[str | Path],
        *,
        community: str = "",
        replace: bool = False,
        on_file: Callable[[FileResult], None] | None = None,
        on_embed: Callable[[int, int], None] | None = None,
    ) -> IngestReport:
        return ingest(
            self.index,
            paths,
            community=community,
            replace=replace,
            on_file=on_file,
            on_embed=on_embed,
            cancel=self.stopping,
        )

    def interrupt(self) -> None:
        """The process is stopping: a running ingest ends at its next file or embedding batch (shutdown never
        waits for minutes of embedding); later ingests fail at once as interrupted."""
        self.stopping.set()

    def ingest_sample(self) -> IngestReport:
        return self.ingest([p for p in self.sample_paths if p.exists()])

    def remove(self, sources: Sequence[str]) -> list[str]:
        """Remove documents by file name (or community/file name); the keys removed."""
        removed: list[str] = []
        for s in sources:
            for d in self.index.meta.docs_by_source(Path(s).name if "/" not in s else s):
                self.index.remove(d.key)
                removed.append(d.key)
        return removed

    def is_empty(self) -> bool:
        return self.index.count() == 0

    def stats(self) -> dict[str, Any]:
        docs = self.index.meta.docs()
        return {
            "documents": len(docs),
            "chunks": self.index.count(),
            "index_bytes": self.index.size_bytes(),
            "index_dir": str(self.index.directory),
            "embedding": self.index.embeddings.encoder.name,
            "communities": self.index.meta.stats(),
            "faq_entries": len(self.faq.items),
            "files": [
                {
                    "source": d.source,
                    "community": d.community,
                    "title": d.title,
                    "kind": d.kind,
                    "chunks": d.chunks,
                    "ingested_at": d.ingested_at,
                }
                for d in docs
            ],
        }

    def gaps(
        self, *, community: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        from knowledge.gaps import list_gaps

        if self.store is None:
            if not self.database_url:
                return []
            from store import Store

            self.store = Store(self.database_url)
            self.store.migrate()

        return list_gaps(self.store, community=community, status=status, limit=limit)

    def close(self) -> None:
        self.index.close()


def where_to_go(question: str, hits: Sequence[Hit]) -> int | None:
    """For a how/where question answered by a rule (an article), the service entry or guide section among the
    candidates that says where to go: one that carries a place and either stands about as close to the
    question as the rule (next two candidates, cosine within COMPANION_GAP) or names the question's own topic
    and offers a service for it (低保 in "低保去哪申请" and the entry "党群服务中心 … 低保申请受理"). The two passages together answer
    (the rule, then the place), each with its own citation."""
    if not hits or not question_types(question) & HOW or hits[0].chunk.kind != "article":
        return None
    topic = [w for w in content_words(question) if len(w) >= 2 and w not in GENERIC_WORDS]
    for i, h in enumerate(hits[1:], 1):
        c = h.chunk
        if c.kind not in ("entry", "section") or "place" not in passage_types(c.text, c.kind):
            continue
        close = i <= 2 and h.dense >= hits[0].dense - COMPANION_GAP
        if close or any(_serves(w, c.text) for w in topic):
            return i
    return None


_SERVICE = "申请|办理|受理|登记|报名|补办|备案"


def _serves(word: str, text: str) -> bool:
    """The text offers a service for the word ("低保申请受理", "办理养犬登记"), not merely mentions it
    ("低保家庭免费")."""
    w = re.escape(word)
    return bool(re.search(rf"{w}[^，。；\n]{{0,6}}(?:{_SERVICE})|(?:{_SERVICE})[^，。；\n]{{0,6}}{w}", text))


def faq_items(config: Config) -> list[FAQItem]:
    return [FAQItem(tuple(e.questions), e.answer, e.source, e.community) for e in config.faq.faq]


def open_knowledge(
    config: Config,
    *,
    ingest_sample_if_empty: bool = True,
    index_dir: Path | None = None,
    encoder: Encoder | None = None,
    store: Any = None,
) -> KnowledgeService:
    """The knowledge service for a config: the index in `index_dir` (default: the configured one), the
    configured embedding model, lexicon and FAQ, and an LLM writer when one is configured. With an empty index,
    the configured knowledge paths (the bundled sample by default) are ingested first."""
    directory = index_dir or config.index_dir
    enc = encoder or load_encoder(config.main.index.embedding)
    embeddings = CachedEmbeddings(enc, EmbeddingCache(directory / "embeddings.sqlite"))
    lexicon = Lexicon({**DEFAULT_TERMS, **config.lexicon.terms})
    index = HybridIndex(
        directory,
        embeddings,
        lexicon,
        chroma_url=config.main.index.chroma_url,
        collection=config.main.index.collection,
    )
    llm_cfg = config.main.llm
    llm = None
    if llm_cfg.base_url and llm_cfg.model:
        llm = LLMWriter(llm_cfg.base_url, llm_cfg.api_key, llm_cfg.model, llm_cfg.timeout_seconds)
    service = KnowledgeService(
        index,
        FAQMatcher(faq_items(config), encode=embeddings.query),
        llm=llm,
        sample_paths=config.knowledge_paths,
        store=store,
        database_url=config.database_url,
    )
    if ingest_sample_if_empty and service.is_empty():
        report = service.ingest_sample()
        log.info("empty index: ingested the configured knowledge: %s", report.summary())
    return service
