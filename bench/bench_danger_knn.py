"""A semantic fallback for urgency, measured before deciding to keep it (issue 11 part 5): a kNN vote over the
labelled report rows (the bundled training files' urgent/normal rows) in the distilled word-vector space
(nlp/semantic.py), added to the danger concepts and the urgency head. Cross-validated on the real dev set
(classify_real.jsonl, classify_real_fresh.jsonl, classify_real_fresh2.jsonl: 5 folds, the other folds' rows join
the pool); the held-out set classify_real_fresh3.jsonl is not read here.

    .venv/bin/python bench/bench_danger_knn.py [--concepts PATH_TO_AN_OTHER_extract.py]

`--concepts` measures the same fallback beside another version of the concepts (e.g. `git show
main:nlp/extract.py > /tmp/extract_main.py`), to see what it would add where the concepts miss more.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import labelled  # noqa: E402
from bot.config import load_config  # noqa: E402
from nlp.classifier import GENERATED_FILES, URGENT_CUTOFF, read_examples, train  # noqa: E402
from nlp.extract import dangers  # noqa: E402
from nlp.semantic import term_vectors  # noqa: E402

DEV_FILES = ("classify_real.jsonl", "classify_real_fresh.jsonl", "classify_real_fresh2.jsonl")
GATES = [
    (1, 0.85, 1.0),
    (1, 0.7, 1.0),
    (3, 0.7, 0.66),
    (3, 0.6, 0.66),
    (5, 0.6, 0.6),
    (5, 0.5, 0.5),
    (9, 0.4, 0.4),
]


def _rows(name: str) -> list[dict[str, Any]]:
    return labelled.rows(ROOT, name)


def _report(name: str, pred: np.ndarray, truth: np.ndarray) -> str:
    hit, fa = int((pred & truth).sum()), int((pred & ~truth).sum())
    return (
        f"{name}: recall {hit / truth.sum():.3f} ({hit}/{truth.sum()}), "
        f"false alarms {fa / (~truth).sum():.3f} ({fa}/{(~truth).sum()})"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concepts", help="another extract.py whose `dangers` to measure beside this one")
    args = ap.parse_args()
    dev = [r for f in DEV_FILES for r in _rows(f) if r["needs_ticket"]]
    config = load_config(ROOT / "config" / "doorstep.yaml")
    examples = [
        e for f in GENERATED_FILES for e in read_examples(f)
    ]  # its pools are real rows: never trained on
    model = train(examples, config)
    vectors = term_vectors()
    assert vectors is not None, "the word table (nlp/data/term_vectors.npz) is needed"
    pool = [e for e in examples if e.intent in ("complaint", "hazard") and e.urgency in ("urgent", "normal")]
    pool_x = np.stack([vectors(e.text) for e in pool])
    pool_y = np.array([e.urgency == "urgent" for e in pool])
    dev_x = np.stack([vectors(r["text"]) for r in dev])
    truth = np.array([r["urgency"] == "urgent" for r in dev])
    head = np.array([model.urgent_probability(r["text"]) >= URGENT_CUTOFF for r in dev])
    systems = {"concepts (this branch) + head": np.array([bool(dangers(r["text"])) for r in dev]) | head}
    if args.concepts:
        spec = importlib.util.spec_from_file_location("other_extract", args.concepts)
        assert spec is not None and spec.loader is not None
        other = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(other)
        systems[f"concepts ({args.concepts}) + head"] = (
            np.array([bool(other.dangers(r["text"])) for r in dev]) | head
        )
    folds = np.arange(len(dev)) % 5
    print(
        f"pool {len(pool)} rows ({int(pool_y.sum())} urgent); dev reports {len(dev)} ({int(truth.sum())} urgent)"
    )
    for name, pred in systems.items():
        print(_report(name, pred, truth))
    for k, sim, share in GATES:
        vote = np.zeros(len(dev), dtype=bool)
        for f in range(5):
            train_idx, test_idx = folds != f, folds == f
            x = np.vstack([pool_x, dev_x[train_idx]])
            y = np.concatenate([pool_y, truth[train_idx]])
            sims = dev_x[test_idx] @ x.T
            near = np.argsort(-sims, axis=1)[:, :k]
            top = np.take_along_axis(sims, near, 1)
            urgent_share = (y[near] * top).sum(1) / np.maximum(top.sum(1), 1e-9)
            vote[test_idx] = (urgent_share >= share) & (top[:, 0] >= sim)
        print(f"kNN k={k}, nearest similarity >= {sim}, urgent share >= {share}:")
        for name, pred in systems.items():
            print("   ", _report(f"{name} + kNN", pred | vote, truth))


if __name__ == "__main__":
    main()
