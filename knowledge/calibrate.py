"""Fit the found/not-found decision (knowledge.decide) on a question set and report cross-validated figures.

    python -m knowledge.calibrate tests/data/knowledge_dev.jsonl [--index DIR] [--repeats 20]

For every question: the features of its best passage (as `KnowledgeService.answer` sees them) and whether the
question is answerable. A logistic regression (scikit-learn, standardised features, balanced class weights)
is cross-validated (stratified 5-fold, repeated; and leave-one-out) for the share of answerable questions
answered and of unanswerable ones refused, for each feature subset; then fitted
on all questions and printed as the `DEFAULT_DECISION` constant. Questions the FAQ answers are left out.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from knowledge.decide import FEATURES, features
from knowledge.evaluate import load_qa


def collect(qa: Path, index: str | None) -> tuple[list[str], np.ndarray, np.ndarray]:
    from knowledge.cli import open_for_command

    items = load_qa(qa)
    _, service = open_for_command(index, ingest_sample_if_empty=True)
    qs, xs, ys = [], [], []
    try:
        for it in items:
            if service.faq.match(it.question, it.community) is not None:
                continue
            hits = service.retrieve(it.question, it.community, k=5)
            if not hits:
                continue
            f = features(it.question, hits, service.index.lexicon, service.index.vocabulary())
            qs.append(it.question)
            xs.append([f[n] for n in FEATURES])
            ys.append(int(it.answerable))
    finally:
        service.close()
    return qs, np.asarray(xs, dtype=float), np.asarray(ys, dtype=int)


def model(c: float = 1.0):  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced"))


def rates(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(answered share of answerable, refused share of unanswerable)"""
    return float(pred[y == 1].mean()), float(1 - pred[y == 0].mean())


def cross_validated(
    x: np.ndarray, y: np.ndarray, cols: list[int], repeats: int, c: float = 1.0
) -> dict[str, float]:
    from sklearn.model_selection import LeaveOneOut, RepeatedStratifiedKFold, cross_val_predict

    xs = x[:, cols]
    answered, refused = [], []
    for train, test in RepeatedStratifiedKFold(n_splits=5, n_repeats=repeats, random_state=0).split(xs, y):
        pred = model(c).fit(xs[train], y[train]).predict(xs[test])
        answered.append(pred[y[test] == 1].sum())
        refused.append((pred[y[test] == 0] == 0).sum())
    loo = cross_val_predict(model(c), xs, y, cv=LeaveOneOut())
    a_loo, r_loo = rates(y, loo)
    n1, n0 = int((y == 1).sum()), int((y == 0).sum())
    return {
        "answered_5fold": float(np.sum(answered)) / (n1 * repeats),
        "refused_5fold": float(np.sum(refused)) / (n0 * repeats),
        "answered_loo": a_loo,
        "refused_loo": r_loo,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m knowledge.calibrate")
    ap.add_argument("qa", type=Path)
    ap.add_argument("--index", default=None)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--show", action="store_true", help="print every question's features and probability")
    args = ap.parse_args(argv)
    qs, x, y = collect(args.qa, args.index)
    print(f"{len(y)} questions: {int(y.sum())} answerable, {int((1 - y).sum())} unanswerable")
    for n in range(1, len(FEATURES) + 1):
        for cols in itertools.combinations(range(len(FEATURES)), n):
            cv = cross_validated(x, y, list(cols), args.repeats)
            name = "+".join(FEATURES[i] for i in cols)
            print(
                f"{name:40s} 5-fold x{args.repeats}: answered {cv['answered_5fold']:.3f} refused {cv['refused_5fold']:.3f}"
                f" | LOO: answered {cv['answered_loo']:.3f} refused {cv['refused_loo']:.3f}"
            )
    final = model().fit(x, y)
    scaler, lr = final[0], final[1]
    print("\nfitted on all questions:")
    print("DEFAULT_DECISION = Decision(")
    print(f"    mean=({', '.join(f'{v:.6f}' for v in scaler.mean_)}),")
    print(f"    scale=({', '.join(f'{v:.6f}' for v in scaler.scale_)}),")
    print(f"    coef=({', '.join(f'{v:.6f}' for v in lr.coef_[0])}),")
    print(f"    intercept={lr.intercept_[0]:.6f},")
    print(")")
    if args.show:
        p = final.predict_proba(x)[:, 1]
        for q, row, yy, pp in sorted(zip(qs, x, y, p, strict=True), key=lambda t: t[3]):
            print(f"{pp:.3f} {'A' if yy else 'U'} " + " ".join(f"{v:.3f}" for v in row) + f"  {q}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
