"""Retrieval quality on a question set (the contract's JSON Lines format):
hit@1, hit@k, MRR over the answerable questions, the share of unanswerable ones refused, and latency.

A line is `{"question": ..., "source": "file.txt" | null, "locator": "第三十七条" | null}` with an optional
`"community"`. `source: null` marks a question the knowledge does not answer (it must get found: false).
A hit is a citation whose source matches and whose locator matches when one is given. An optional
`"also": [{"source": ..., "locator": ...}]` names other passages that answer the question just as well (two
laws often say the same thing); a citation of one of them is a hit too."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knowledge.types import Answer, Answerer, Citation


class QAFormatError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class QAItem:
    question: str
    source: str | None
    locator: str | None = None
    community: str | None = None
    also: tuple[tuple[str, str | None], ...] = ()

    @property
    def answerable(self) -> bool:
        return self.source is not None


def load_qa(path: Path) -> list[QAItem]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise QAFormatError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise QAFormatError(f"{path}: cannot read the file ({e})") from None
    items: list[QAItem] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise QAFormatError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(d, dict) or not isinstance(d.get("question"), str) or not d["question"].strip():
            raise QAFormatError(f'{path}:{n}: expected an object with a non-empty "question"')
        src = d.get("source")
        if src is not None and not isinstance(src, str):
            raise QAFormatError(f'{path}:{n}: "source" must be a file name or null')
        also = tuple(
            (str(a["source"]), a.get("locator") or None)
            for a in d.get("also") or []
            if isinstance(a, dict) and a.get("source")
        )
        items.append(
            QAItem(d["question"], src or None, d.get("locator") or None, d.get("community") or None, also)
        )
    if not items:
        raise QAFormatError(f"{path}: no questions")
    return items


def is_hit(item: QAItem, c: Citation) -> bool:
    return any(
        c.source == src and (loc is None or c.locator == loc)
        for src, loc in ((item.source, item.locator), *item.also)
    )


def rank_of(item: QAItem, citations: Sequence[Citation], k: int) -> int | None:
    for i, c in enumerate(citations[:k]):
        if is_hit(item, c):
            return i + 1
    return None


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    i = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[i]


def evaluate(answerer: Answerer, items: Sequence[QAItem], k: int = 5) -> dict[str, Any]:
    answers: list[Answer] = []
    rows: list[dict[str, Any]] = []
    hits1 = hitsk = 0
    rr = 0.0
    answered = refused = 0
    for it in items:
        a = answerer.answer(it.question, it.community)
        answers.append(a)
        rank = rank_of(it, a.citations, k) if it.answerable else None
        if it.answerable:
            hits1 += rank == 1
            hitsk += rank is not None
            rr += 1.0 / rank if rank else 0.0
            answered += a.found
        else:
            refused += not a.found
        rows.append(
            {
                "question": it.question,
                "expected": f"{it.source} {it.locator or ''}".strip() if it.source else None,
                "found": a.found,
                "rank": rank,
                "top": f"{a.citations[0].source} {a.citations[0].locator}" if a.citations else None,
                "latency_ms": round(a.latency_ms, 2),
            }
        )
    n_ans = sum(1 for it in items if it.answerable)
    n_un = len(items) - n_ans
    lat = [a.latency_ms for a in answers]
    return {
        "questions": len(items),
        "answerable": n_ans,
        "unanswerable": n_un,
        "k": k,
        "hit@1": round(hits1 / n_ans, 4) if n_ans else None,
        f"hit@{k}": round(hitsk / n_ans, 4) if n_ans else None,
        "mrr": round(rr / n_ans, 4) if n_ans else None,
        "answered_rate": round(answered / n_ans, 4) if n_ans else None,  # answerable questions not refused
        "refusal_rate": round(refused / n_un, 4) if n_un else None,  # unanswerable questions refused
        "latency_ms": {
            "p50": round(percentile(lat, 50), 2),
            "p95": round(percentile(lat, 95), 2),
            "mean": round(statistics.fmean(lat), 2) if lat else 0.0,
        },
        "details": rows,
    }
