"""found or not: does the best passage answer the question?

e5-small's cosine scores are compressed: the best passage of an unanswerable question ("about the same
topic") and of an answerable one ("answers it") both score 0.85-0.89, so a threshold on the cosine alone sits
on a knife edge. The decision combines signals that fail differently:

- `dense`: the e5 cosine between the question and the best passage;
- `margin`: how far the best passage's cosine stands above the next candidates' (an answer usually stands out;
  an off-topic question meets a flat field of half-related passages);
- `coverage`: the share of the question's content words that the best passage contains, a word counting as
  contained when the passage has it, its standard term from the lexicon (电瓶车 -> 电动自行车), or its
  characters' bigrams (楼道 in 楼道里; 充电 in 充电站);
- `agree`: the dense and the BM25 rankings agree on the best passage;
- `novelty`: the share of the question's content words that occur nowhere in the whole index (none of the
  word's or its standard term's character bigrams is missing from the corpus): a question about a 游泳池 or a
  健康证 asks about something the knowledge never mentions, however close its nearest passage scores.

They are combined by a logistic regression fitted on the dev set (`python -m knowledge.calibrate`, which also
reports cross-validated figures); the fitted weights are the constants below, so answering needs no
scikit-learn. docs/knowledge.md has the figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence, Set
from dataclasses import dataclass

import jieba

from knowledge.index import Hit
from knowledge.text import STOPWORDS, Lexicon, bigrams

FEATURES = (
    "dense",
    "margin",
    "coverage",
    "novelty",
)  # `agree` is computed too; it added nothing under cross-validation


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


def features(
    question: str, hits: Sequence[Hit], lexicon: Lexicon, vocabulary: Set[str] = frozenset()
) -> dict[str, float]:
    top = hits[0]
    others = [h.dense for h in hits[1:]]
    margin = top.dense - max(others) if others else 0.05
    agree = float(top.bm25_rank == 0 and top.dense_rank == 0)
    return {
        "dense": top.dense,
        "margin": margin,
        "coverage": coverage(question, top.chunk.index_text, lexicon),
        "agree": agree,
        "novelty": novelty(question, vocabulary, lexicon),
    }


@dataclass(frozen=True, slots=True)
class Decision:
    """A logistic model over standardised `FEATURES`; found when its probability reaches `cutoff`."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    cutoff: float = 0.5

    def probability(self, f: dict[str, float]) -> float:
        z = self.intercept + sum(
            c * (f[name] - m) / s
            for name, m, s, c in zip(FEATURES, self.mean, self.scale, self.coef, strict=True)
        )
        return 1.0 / (1.0 + math.exp(-z))

    def found(self, f: dict[str, float]) -> bool:
        return self.probability(f) >= self.cutoff


# Fitted on tests/data/knowledge_dev.jsonl by `python -m knowledge.calibrate` (see docs/knowledge.md).
DEFAULT_DECISION = Decision(
    mean=(0.898151, 0.006920, 0.486585, 0.375169),
    scale=(0.023509, 0.014809, 0.262365, 0.299108),
    coef=(2.640351, -0.409801, -0.019234, -0.598790),
    intercept=1.568388,
)
