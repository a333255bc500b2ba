"""Hub chunks in the first stage: does subtracting a chunk's "hubness" from its fused score put the right passage first?

    PYTHONPATH=. .venv/bin/python bench/bench_hubness.py tests/data/knowledge_dev.jsonl tests/data/knowledge_sample_residents{,2,3,4,5,6}.jsonl

A few short sections of the bundled sample (办事指南 失物招领, 居住证明开具, 门禁卡补办) rank first for questions about
other entries. Two hub penalties are measured over the 20 fused candidates of each answerable question: the chunk's mean
cosine with the index's background questions, and CSLS (its mean cosine with its 10 nearest chunks). Only for tuning
sets: never residents7 or a later held-out set (those are run by bench_decisions once); results in docs/knowledge.md (issue 12, part 7).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from knowledge.evaluate import is_hit, load_qa  # noqa: E402
from knowledge.index import BACKGROUND_QUESTIONS  # noqa: E402
from knowledge.rerank import CANDIDATES  # noqa: E402
from knowledge.service import _citation  # noqa: E402
from tests.knowledge_support import close_shared, shared_sample  # noqa: E402

Cand = dict[str, Any]


def collect(files: list[Path]) -> tuple[list[tuple[str, list[Cand]]], dict[str, float], dict[str, float]]:
    idx = shared_sample()[1].index
    got = idx.vectors._collection.get(include=["embeddings"])
    ids, vecs = got["ids"], np.asarray(got["embeddings"], dtype=np.float32)
    background = np.stack([idx.embeddings.query(q) for q in BACKGROUND_QUESTIONS])
    to_background = dict(zip(ids, (vecs @ background.T).mean(1).tolist(), strict=True))
    sims = vecs @ vecs.T
    np.fill_diagonal(sims, -1.0)
    csls = dict(zip(ids, np.sort(sims, 1)[:, -10:].mean(1).tolist(), strict=True))
    rows = []
    for f in files:
        for it in load_qa(f):
            if not it.answerable:
                continue
            hits = idx.candidates(it.question, it.community, CANDIDATES)
            cands = [
                {
                    "id": h.chunk.id,
                    "fused": h.score,
                    "right": is_hit(it, c),
                    "name": f"{c.source} {c.locator}",
                }
                for h, c in ((h, _citation(h)) for h in hits)
            ]
            if any(c["right"] for c in cands):
                rows.append((f.name, cands))
    return rows, to_background, csls


def main() -> None:
    files = [Path(a) for a in sys.argv[1:]]
    try:
        rows, to_background, csls = collect(files)
    finally:
        close_shared()

    def hit1(score: Callable[[Cand], float], subset: list[tuple[str, list[Cand]]]) -> float:
        return float(np.mean([max(c, key=score)["right"] for _, c in subset])) if subset else 0.0

    firsts = [max(c, key=lambda x: x["fused"]) for _, c in rows]
    wrong = Counter(f["name"] for f in firsts if not f["right"])
    print("wrong passages ranked first most often:", wrong.most_common(6))

    def penalised(hub: dict[str, float], b: float) -> Callable[[Cand], float]:
        return lambda c: float(c["fused"]) - b * hub[c["id"]]

    variants: list[tuple[str, Callable[[Cand], float]]] = [("fused", lambda c: c["fused"])]
    for b in (0.5, 1.0, 2.0, 3.0):
        variants.append((f"- {b} x background", penalised(to_background, b)))
        variants.append((f"- {b} x csls", penalised(csls, b)))
    names = sorted({n for n, _ in rows})
    print("variant | all |", " | ".join(names))
    for label, score in variants:
        per = [hit1(score, [r for r in rows if r[0] == n]) for n in names]
        print(label, "|", f"{hit1(score, rows):.3f}", "|", " | ".join(f"{p:.3f}" for p in per))


if __name__ == "__main__":
    main()
