"""The staff-curated FAQ, matched before the index: question variants -> one answer.

A question matches a variant when their character bigrams mostly agree (typos and particles aside) or
their e5 question vectors are nearly the same (a paraphrase)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

BIGRAM_MATCH = 0.6
DENSE_MATCH = 0.965  # paraphrases of a variant score >= 0.985, other questions about the same topic <= 0.95
_STRIP = re.compile(r"[\s\W_]+|请问|问一下|问下|小门|吗|呢|呀|啊|吧|哈|啥|么", re.UNICODE)


@dataclass(frozen=True, slots=True)
class FAQItem:
    questions: tuple[str, ...]
    answer: str
    source: str
    community: str = ""


@dataclass(frozen=True, slots=True)
class FAQMatch:
    item: FAQItem
    variant: str
    score: float


def _norm(text: str) -> str:
    return _STRIP.sub("", unicodedata.normalize("NFKC", text).lower())


def _bigrams(text: str) -> set[str]:
    t = _norm(text)
    return {t[i : i + 2] for i in range(len(t) - 1)} or ({t} if t else set())


def dice(a: str, b: str) -> float:
    x, y = _bigrams(a), _bigrams(b)
    return 2 * len(x & y) / (len(x) + len(y)) if x and y else 0.0


class FAQMatcher:
    def __init__(
        self, items: Sequence[FAQItem] = (), encode: Callable[[str], np.ndarray] | None = None
    ) -> None:
        self.items: list[FAQItem] = []
        self._encode = encode
        self._variants: list[tuple[FAQItem, str]] = []
        self._vectors: np.ndarray | None = None
        for it in items:
            self.add(it)

    def add(self, item: FAQItem) -> None:
        self.items.append(item)
        self._variants.extend((item, q) for q in item.questions)
        self._vectors = None  # re-encoded on the next match

    def match(
        self, question: str, community: str | None = None, qvec: np.ndarray | None = None
    ) -> FAQMatch | None:
        if not self._variants:
            return None
        best: FAQMatch | None = None
        for item, variant in self._variants:
            if community and item.community and item.community != community:
                continue
            score = dice(question, variant)
            if score >= BIGRAM_MATCH and (best is None or score > best.score):
                best = FAQMatch(item, variant, score)
        if best is not None:
            return best
        if self._encode is None:
            return None
        vecs = self._variant_vectors()
        q = qvec if qvec is not None else self._encode(question)
        sims = vecs @ q
        for i in np.argsort(-sims):
            item, variant = self._variants[int(i)]
            if sims[i] < DENSE_MATCH:
                break
            if community and item.community and item.community != community:
                continue
            return FAQMatch(item, variant, float(sims[i]))
        return None

    def _variant_vectors(self) -> np.ndarray:
        if self._vectors is None:
            assert self._encode is not None
            self._vectors = np.stack([self._encode(v) for _, v in self._variants])
        return self._vectors
