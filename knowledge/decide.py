"""found or not: does the best passage answer the question?

e5-small's cosine scores are compressed: the best passage of an unanswerable question ("about the same
topic") and of an answerable one ("answers it") both score 0.85-0.89, and the whole scale drifts with the
corpus, so a cut-off on the cosine fitted on one set of documents does not carry to another. The decision
uses signals that are relative to the index they are computed on:

- `lift`: the e5 cosine between the question and the best passage, minus the index's own background (the
  mean best cosine that everyday questions no knowledge answers reach in it: `HybridIndex.background`,
  recomputed from the documents actually ingested whenever they change);
- `lead`: the best passage's lead over the second after reranking, as a share of its score;
- `peak`: how far the best passage's cosine stands out of the question's own dense pool (a z-score);
- `soft_focus`: the question's words that the passage's head does not name, found in its text, or near one of
  its words in the static word table distilled from e5 (nlp/data/term_vectors.npz).

- `ask_size`, `subject_match` (`ask_split`): the question's content words less the general question words,
  split into those near the passage's head (its subject) and the rest (the ask). Measured in issue 12 part 4;
  in use since part 5 (`ASK_DECISION`), chosen by a rule fixed beforehand: fewer errors over the two sets neither
  decision was fitted on.

The six are combined by a logistic regression fitted on the dev set and the first two residents' sets (`python -m
knowledge.calibrate decision`, which reports cross-validated figures, overall and per set, for the measured
alternatives: `novelty`, `margin`, `coverage`, `focus`, `type`, `agree` (all three views rank it first)); the
fitted weights are the constants below, so answering needs no scikit-learn. One rule comes before the model: a
question that asks for a time limit, a schedule, an amount or a phone number is refused when the best passage
has none (`type_missing`). docs/knowledge.md has the figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass

import jieba
import numpy as np

from knowledge.chunks import Chunk
from knowledge.index import Hit
from knowledge.rerank import (
    QUESTION_TYPES,
    asks_amount,
    gives_amount,
    passage_types,
    question_types,
    type_match,
)
from knowledge.text import STOPWORDS, Lexicon, bigrams
from nlp.semantic import TermVectors, term_vectors

FEATURES = ("lift", "lead", "peak", "soft_focus")  # the part 3 decision (PART3_DECISION), in use until part 5
# issue 12 part 4; the decision in use since part 5 (ASK_DECISION = DEFAULT_DECISION)
ASK_FEATURES = (*FEATURES, "ask_size", "subject_match")
BACKGROUND_FALLBACK = 0.84  # e5-small's usual background cosine, used only for an index with no chunks


def content_words(question: str) -> list[str]:
    """The question's words that carry meaning: precise-mode jieba, without function words and punctuation."""
    words = []
    for w in jieba.lcut(question.lower()):
        w = w.strip()
        if w and w not in STOPWORDS and any("\u4e00" <= c <= "\u9fff" or c.isalnum() for c in w):
            words.append(w)
    return words


def coverage(question: str, passage: str, lexicon: Lexicon) -> float:
    """Share of the question's content words found in the passage: the word itself, its standard term, or
    (for a word of two or more characters) the share of its character bigrams that occur in the passage."""
    words = content_words(question)
    if not words:
        return 0.0
    text = passage.lower()
    got = 0.0
    for w in words:
        variants = [w, *lexicon.expansions(w)]
        if any(v in text for v in variants):
            got += 1.0
            continue
        grams = bigrams(w)
        if grams:
            got += sum(g in text for g in grams) / len(grams)
        # a one-character word not in the passage counts 0
    return got / len(words)


def novelty(question: str, vocabulary: Set[str], lexicon: Lexicon) -> float:
    """Share of the question's content words (two or more characters) that the corpus never uses: a word is
    known when all character bigrams of it, or of one of its standard terms, occur somewhere in the index."""
    words = [w for w in content_words(question) if len(w) >= 2]
    if not words or not vocabulary:
        return 0.0
    unknown = 0
    for w in words:
        grams_of = (bigrams(v) for v in (w, *lexicon.expansions(w)))
        if not any(g and all(x in vocabulary for x in g) for g in grams_of):
            unknown += 1
    return unknown / len(words)


def _contains(word: str, text: str, lexicon: Lexicon) -> float:
    """1.0 when the text has the word or one of its standard terms, else the share of its bigrams it has."""
    if any(v in text for v in (word, *lexicon.expansions(word))):
        return 1.0
    grams = bigrams(word)
    return sum(g in text for g in grams) / len(grams) if grams else 0.0


def focus(question: str, chunk: Chunk, lexicon: Lexicon) -> float:
    """Coverage of what the question asks *about the topic*: its content words that the passage's head (law
    title, chapter, article or entry name) does not already name, found in the passage's own text.
    "骑手驿站能洗澡吗" names the entry 骑手驿站 and asks about 洗澡, which the entry never mentions: a passage that
    only shares the topic. A question that only names the topic counts as covered."""
    head = " ".join((chunk.title, chunk.context, chunk.locator)).lower()
    rest = [w for w in content_words(question) if _contains(w, head, lexicon) < 1.0]
    if not rest:
        return 1.0
    body = chunk.text.lower()
    return sum(_contains(w, body, lexicon) for w in rest) / len(rest)


def _word_vector(word: str, vectors: TermVectors) -> np.ndarray | None:
    """A word's unit vector from the distilled table, its characters' mean when the table lacks the word."""
    i = vectors.index.get(word)
    if i is not None:
        v = vectors.vectors[i]
    else:
        ids = [vectors.index[c] for c in word if c in vectors.index]
        if not ids:
            return None
        v = vectors.vectors[ids].mean(axis=0)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else None


def soft_focus(question: str, chunk: Chunk, lexicon: Lexicon) -> float:
    """`focus` with near words: each question word the passage's head does not name counts 1 when the passage
    has it, else its best cosine with one of the passage's words in the static word table distilled from e5
    (nlp/data/term_vectors.npz). A word or its lexicon term the head names is left out, one the text has counts
    1, as in `focus`. A colloquial word (雨伞, 热饭) then counts for the passage's own (修伞, 微波炉热饭) without a
    lexicon entry for it, and an aspect the passage never touches (医保卡 at 助老食堂) stays low. Without the
    table it is `focus`."""
    vectors = term_vectors()
    if vectors is None:
        return focus(question, chunk, lexicon)
    head = " ".join((chunk.title, chunk.context, chunk.locator)).lower()
    rest = [w for w in content_words(question) if _contains(w, head, lexicon) < 1.0]
    if not rest:
        return 1.0
    text = chunk.text.lower()
    found = [_word_vector(w, vectors) for w in set(jieba.lcut(text)) if w.strip()]
    passage = np.asarray([v for v in found if v is not None])
    got = 0.0
    for w in rest:
        variants = (w, *lexicon.expansions(w))  # the lexicon's standard term counts as the word itself
        if any(v in text for v in variants):
            got += 1.0
            continue
        near = [v for v in (_word_vector(x, vectors) for x in variants) if v is not None]
        if near and len(passage):
            got += max(0.0, max(float((passage @ v).max()) for v in near))
    return got / len(rest)


ASK_SPLIT_FEATURES = ("ask_size", "subject_match", "ask_coverage")  # what `ask_split` computes

# general question words (几点, 多少钱, 开门 ...): what kind of answer is asked, not what it is about
_CUES = tuple(sorted({c for cues in QUESTION_TYPES.values() for c in cues}, key=len, reverse=True))


def _vectors_of(text: str, vectors: TermVectors) -> np.ndarray:
    found = [_word_vector(w, vectors) for w in set(jieba.lcut(text)) if w.strip()]
    return np.asarray([v for v in found if v is not None])


def _nearness(
    word: str, text: str, words: np.ndarray, lexicon: Lexicon, vectors: TermVectors | None
) -> float:
    """1 when the text has the word or its standard term, else its best cosine with one of the text's words in
    the distilled word table (0 without the table)."""
    variants = (word, *lexicon.expansions(word))
    if any(v in text for v in variants):
        return 1.0
    if vectors is None or not len(words):
        return 0.0
    near = [v for v in (_word_vector(x, vectors) for x in variants) if v is not None]
    return max(0.0, max((float((words @ v).max()) for v in near), default=0.0))


def ask_split(question: str, chunk: Chunk, lexicon: Lexicon) -> dict[str, float]:
    """What is asked vs what it is about. The question's content words, less the general question words,
    are split by how near each is to the passage's head (law title, chapter, article or entry name: exactly,
    through the lexicon, or by near word in the distilled table): `subject_match` is their mean nearness to
    the head, `ask_size` the weight of the rest (the sum of one minus that nearness), `ask_coverage` how well
    the passage's text covers the rest. "助老食堂吃饭能开发票吗" names its entry (high subject match) and asks
    about 发票; "想借个电钻打几个孔" names no head at all. Measured in docs/knowledge.md (issue 12 part 4)."""
    vectors = term_vectors()
    head = " ".join((chunk.title, chunk.context, chunk.locator)).lower()
    body = chunk.text.lower()
    ask = [w for w in content_words(question) if not any(w in c or c in w for c in _CUES)]
    if not ask:
        return {"ask_size": 0.0, "subject_match": 0.0, "ask_coverage": 1.0}
    empty = np.zeros((0, 1))
    hv = _vectors_of(head, vectors) if vectors is not None else empty
    bv = _vectors_of(body, vectors) if vectors is not None else empty
    subject = [_nearness(w, head, hv, lexicon, vectors) for w in ask]
    weights = [1.0 - s for s in subject]
    size = sum(weights)
    covered = sum(wt * _nearness(w, body, bv, lexicon, vectors) for w, wt in zip(ask, weights, strict=True))
    return {
        "ask_size": size,
        "subject_match": sum(subject) / len(subject),
        "ask_coverage": covered / size if size > 1e-6 else 1.0,
    }


def features(
    question: str,
    hits: Sequence[Hit],
    lexicon: Lexicon,
    vocabulary: Set[str] = frozenset(),
    background: Mapping[str, float] | None = None,
    ask: bool = True,
) -> dict[str, float]:
    """The decision's candidate features of the best passage; `ask=False` skips `ask_split` (2 ms), which only
    `ASK_DECISION` reads."""
    top = hits[0]
    others = [h.dense for h in hits[1:]]
    margin = top.dense - max(others) if others else 0.05
    # all three views (dense, BM25 words, BM25 bigrams) put the passage first
    agree = float(top.dense_rank == 0 and top.bm25_rank == 0 and top.bigram_rank == 0)
    # the best passage's lead over the second after reranking, as a share of its own score
    lead = (top.rerank - hits[1].rerank) / top.rerank if len(hits) > 1 and top.rerank > 0 else 0.0
    level = (background or {}).get("all", BACKGROUND_FALLBACK)
    return {
        "dense": top.dense,
        "lift": top.dense - level,
        "margin": margin,
        "coverage": coverage(question, top.chunk.index_text, lexicon),
        "focus": focus(question, top.chunk, lexicon),
        "type": type_match(question_types(question), passage_types(top.chunk.text, top.chunk.kind)),
        "agree": agree,
        "lead": lead,
        "peak": top.peak,
        "soft_focus": soft_focus(question, top.chunk, lexicon),
        "novelty": novelty(question, vocabulary, lexicon),
        "guide": float(top.chunk.kind in ("entry", "section")),
        **(ask_split(question, top.chunk, lexicon) if ask else {}),
    }


CONCRETE = frozenset({"duration", "schedule", "money", "phone"})


def type_missing(question: str, chunk: Chunk) -> bool:
    """The question asks for a time limit, a schedule, an amount or a phone number and the passage has none:
    it can share the topic ("垃圾分类厨余垃圾几点扔" against the article that defines 厨余垃圾) but not answer.
    On the dev set no answerable question's best passage misses its concrete type (docs/knowledge.md)."""
    wanted = question_types(question) & CONCRETE
    if wanted and not wanted & passage_types(chunk.text, chunk.kind):
        return True
    # an amount needs a figure: naming 费用 is not saying how much
    return asks_amount(question) and not gives_amount(chunk.text, chunk.kind)


@dataclass(frozen=True, slots=True)
class Decision:
    """A logistic model over standardised features (`names`); found when its probability reaches `cutoff`."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    cutoff: float = 0.5
    names: tuple[str, ...] = FEATURES

    @property
    def reads_ask_split(self) -> bool:
        """Whether `features` must run `ask_split` (2 ms a question) for this decision."""
        return not set(self.names).isdisjoint(ASK_SPLIT_FEATURES)

    def probability(self, f: dict[str, float]) -> float:
        z = self.intercept + sum(
            c * (f[name] - m) / s
            for name, m, s, c in zip(self.names, self.mean, self.scale, self.coef, strict=True)
        )
        return 1.0 / (1.0 + math.exp(-z))

    def found(self, f: dict[str, float]) -> bool:
        return self.probability(f) >= self.cutoff


# Fitted on tests/data/knowledge_dev.jsonl + tests/data/knowledge_sample_residents.jsonl by `python -m
# knowledge.calibrate decision` (docs/knowledge.md). Every feature is relative to the index it is computed on
# (the lift over its own background, the lead over the next candidate, the cosine's standing in the question's
# own pool, word coverage), so the same constants apply to whatever documents a community ingests. `peak` gets
# a negative weight next to `lift` (they correlate, 0.5): at the same lift, a question whose whole pool sits
# low (an isolated match) is less often answered by it than one on a topic with many close passages.
PART3_DECISION = Decision(
    mean=(0.047135, 0.156960, 3.501635, 0.601243),
    scale=(0.021883, 0.137108, 1.443492, 0.190027),
    coef=(1.977979, 0.715569, -0.769868, 0.644280),
    intercept=0.960804,
)

# Issue 12 part 4, in use since part 5 (docs/knowledge.md): `ASK_FEATURES`, fitted on the dev set and the first two
# residents' sets. Cross-validated on them it answers and refuses more than part 3 (0.726/0.807 -> 0.777/0.843); on
# the untouched regulations it answers fewer (0.918 -> 0.835, refused 0.650 -> 0.700), on the third residents' set
# far more (0.709 -> 0.907, refused 0.385 -> 0.346): 45 errors against 55 over the two, which the rule of part 5
# (fixed before the fourth residents' set was written) counts. `ask_size` gets a positive weight: at the same lift
# a question that asks more than it names is more often answerable.
ASK_DECISION = Decision(
    mean=(0.046391, 0.156395, 3.530697, 0.580163, 2.587669, 0.394119),
    scale=(0.021120, 0.132263, 1.415237, 0.187908, 1.280041, 0.174308),
    coef=(0.961629, 0.643812, -0.380326, 0.630928, 1.306051, 0.790039),
    intercept=0.727793,
    names=ASK_FEATURES,
)
DEFAULT_DECISION = ASK_DECISION
