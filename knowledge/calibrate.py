"""Fit the reranker and the found/not-found decision on the tuning sets, with cross-validated figures.

    python -m knowledge.calibrate rerank   tests/data/knowledge_dev.jsonl [--index DIR]
    python -m knowledge.calibrate decision tests/data/knowledge_dev.jsonl \
        tests/data/knowledge_sample_residents.jsonl tests/data/knowledge_sample_residents2.jsonl [--index DIR] [--repeats 10] [--all] [--show]

`rerank`: for every answerable question, the fused candidates (`knowledge.rerank.CANDIDATES`) with the
reranker's features; hit@1/hit@5/MRR on a grid of the answer-type and guide weights against the fused order.

`decision`: for every question of every given file, the features of its best passage after reranking (as
`KnowledgeService.answer` sees them) and whether the question is answerable. A logistic regression
(scikit-learn, standardised features, balanced class weights) is cross-validated (stratified by file and
class, 5-fold repeated, and leave-one-out) for the share of answerable questions answered and of unanswerable
ones refused, overall and per file, for the compared feature sets (`COMPARED`, or every subset of up to three
with --all); a question the answer-type veto refuses counts as refused. Then the used set is fitted on all
questions and printed as constants: `PART3_DECISION` (four features) and `ASK_DECISION` (six; the decision in
use since issue 12 part 5, `DEFAULT_DECISION`). The features are relative to the index they are
computed on, so the fit carries to other documents; the held-out sets check that it does. Questions the FAQ
answers are left out. Only ever run this on the tuning sets: knowledge_dev.jsonl,
knowledge_sample_residents.jsonl and, since issue 12 part 4, knowledge_sample_residents2.jsonl (it was held out
and run twice in part 3, so it joined the tuning data). The untouched set (tests/data/untouched/) and the newer
held-out residents' set are for reporting only.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.evaluate import QAItem, is_hit, load_qa
from knowledge.types import Citation

CANDIDATE_FEATURES = (
    "lift",
    "novelty",
    "margin",
    "coverage",
    "focus",
    "type",
    "agree",
    "lead",
    "peak",
    "soft_focus",
    "ask_size",
    "subject_match",
    "ask_coverage",
)
# feature sets compared by `decision` (every subset of up to three with --all)
COMPARED = (
    ("lift", "novelty"),
    ("lift", "agree"),
    ("lift", "lead"),
    ("lift", "peak"),
    ("lift", "soft_focus"),
    ("lift", "type"),
    ("lift", "lead", "peak"),
    ("lift", "agree", "lead", "peak"),
    ("lift", "lead", "peak", "soft_focus"),
    ("lift", "agree", "lead", "peak", "soft_focus", "novelty"),
    ("lift", "lead", "peak", "soft_focus", "ask_coverage"),
    ("lift", "lead", "peak", "soft_focus", "ask_size"),
    ("lift", "lead", "peak", "soft_focus", "subject_match"),
    ("lift", "lead", "peak", "soft_focus", "ask_size", "subject_match", "ask_coverage"),
)


def _open(index: str | None) -> Any:
    from bot.config import (
        load_config,
    )  # a script run by hand on a deployment: it reads the deployment's config
    from knowledge.cli import open_for_command

    return open_for_command(load_config(), index, ingest_sample_if_empty=True)[1]


def _cite(h: Any) -> Citation:
    return Citation(h.chunk.source, h.chunk.title, h.chunk.locator, "", 0.0)


# --- decision ------------------------------------------------------------------------------------------------


def collect(
    qa: list[Path], index: str | None
) -> tuple[list[str], list[dict[str, float]], np.ndarray, np.ndarray]:
    """Every question's decision features, whether it is answerable, and which of the files it came from."""
    from knowledge.decide import features, type_missing

    items = [(n, it) for n, path in enumerate(qa) for it in load_qa(path)]
    service = _open(index)
    qs, fs, ys, sets = [], [], [], []
    try:
        for n, it in items:
            if service.faq.match(it.question, it.community) is not None:
                continue
            hits = service.retrieve(it.question, it.community, k=5)
            if not hits:
                continue
            ix = service.index
            fs.append(features(it.question, hits, ix.lexicon, ix.vocabulary(), ix.background()))
            if type_missing(it.question, hits[0].chunk):
                fs[-1]["veto"] = 1.0  # refused before the model, as `KnowledgeService.answerable` does
            qs.append(it.question)
            ys.append(int(it.answerable))
            sets.append(n)
    finally:
        service.close()
    return qs, fs, np.asarray(ys, dtype=int), np.asarray(sets, dtype=int)


def model(c: float = 1.0):  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced"))


def rates(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(answered share of answerable, refused share of unanswerable)"""
    return float(pred[y == 1].mean()), float(1 - pred[y == 0].mean())


def cross_validated(
    x: np.ndarray,
    y: np.ndarray,
    repeats: int,
    c: float = 1.0,
    sets: np.ndarray | None = None,
    veto: np.ndarray | None = None,
) -> dict[str, float]:
    """Answered share of answerable and refused share of unanswerable questions, predicted by models that did
    not see them (stratified 5-fold, repeated, and leave-one-out), over all questions and per file. A vetoed
    question is refused whatever the model says."""
    from sklearn.model_selection import LeaveOneOut, RepeatedStratifiedKFold, cross_val_predict

    sets = np.zeros(len(y), dtype=int) if sets is None else sets
    veto = np.zeros(len(y), dtype=bool) if veto is None else veto
    strata = y * (sets.max() + 1) + sets
    share = np.zeros(len(y))
    for train, test in RepeatedStratifiedKFold(n_splits=5, n_repeats=repeats, random_state=0).split(
        x, strata
    ):
        share[test] += model(c).fit(x[train], y[train]).predict(x[test]) / repeats
    share[veto] = 0.0
    loo = cross_val_predict(model(c), x, y, cv=LeaveOneOut(), n_jobs=1).astype(float)
    loo[veto] = 0.0
    out = {}
    for name, mask in [("all", np.ones(len(y), dtype=bool))] + [
        (f"set{s}", sets == s) for s in np.unique(sets) if len(np.unique(sets)) > 1
    ]:
        out[f"answered_5fold_{name}"] = float(share[mask & (y == 1)].mean())
        out[f"refused_5fold_{name}"] = float(1 - share[mask & (y == 0)].mean())
        out[f"answered_loo_{name}"] = float(loo[mask & (y == 1)].mean())
        out[f"refused_loo_{name}"] = float(1 - loo[mask & (y == 0)].mean())
    return out


def _line(name: str, cv: dict[str, float], sets: int) -> str:
    parts = [f"{name:44s}"]
    for s in ["all"] + [f"set{i}" for i in range(sets if sets > 1 else 0)]:
        parts.append(
            f"{s}: 5-fold {cv[f'answered_5fold_{s}']:.3f}/{cv[f'refused_5fold_{s}']:.3f} "
            f"LOO {cv[f'answered_loo_{s}']:.3f}/{cv[f'refused_loo_{s}']:.3f}"
        )
    return " | ".join(parts)


def fit_decision(args: argparse.Namespace) -> int:
    from knowledge.decide import ASK_FEATURES, DEFAULT_DECISION, FEATURES

    qs, fs, y, sets = collect(args.qa, args.index)
    veto = np.asarray([f.get("veto", 0.0) > 0 for f in fs])
    for n, path in enumerate(args.qa):
        m = sets == n
        print(f"set{n} {path}: {int(y[m].sum())} answerable, {int((1 - y[m]).sum())} unanswerable")
    print("answered share of answerable / refused share of unanswerable, cross-validated:")
    names = list(CANDIDATE_FEATURES)
    compared = (
        [c for k in range(1, 4) for c in itertools.combinations(names, k)] if args.all else list(COMPARED)
    )
    for cols in compared:
        x_c = np.asarray([[f[n] for n in cols] for f in fs], dtype=float)
        cv = cross_validated(x_c, y, args.repeats, sets=sets, veto=veto)
        print(_line("+".join(cols), cv, len(args.qa)))
    for used, const in ((FEATURES, "PART3_DECISION"), (ASK_FEATURES, "ASK_DECISION")):
        x = np.asarray([[f[n] for n in used] for f in fs], dtype=float)
        cv = cross_validated(x, y, args.repeats, sets=sets, veto=veto)
        print(f"\n{const}: " + _line("+".join(used), cv, len(args.qa)))
        final = model().fit(x, y)
        scaler, lr = final[0], final[1]
        print("fitted on all questions:")
        print(f"{const} = Decision(")
        print(f"    mean=({', '.join(f'{v:.6f}' for v in scaler.mean_)}),")
        print(f"    scale=({', '.join(f'{v:.6f}' for v in scaler.scale_)}),")
        print(f"    coef=({', '.join(f'{v:.6f}' for v in lr.coef_[0])}),")
        print(f"    intercept={lr.intercept_[0]:.6f},")
        if used != FEATURES:
            print(f"    names={used!r},")
        print(")")
        if (
            args.show and used == DEFAULT_DECISION.names
        ):  # each question's probability under the decision in use
            p = final.predict_proba(x)[:, 1]
            for q, row, yy, pp in sorted(zip(qs, x, y, p, strict=True), key=lambda t: t[3]):
                print(f"{pp:.3f} {'A' if yy else 'U'} " + " ".join(f"{v:.3f}" for v in row) + f"  {q}")
    return 0


# --- reranker ------------------------------------------------------------------------------------------------


def rerank_data(items: list[QAItem], service: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (question, candidate): the reranker's features, whether it is a hit, and the question's index."""
    from knowledge.rerank import CANDIDATES, DEFAULT_RERANKER, FEATURES

    xs, ys, gs = [], [], []
    for qi, it in enumerate(items):
        if not it.answerable:
            continue
        hits = service.index.candidates(it.question, it.community, CANDIDATES)
        for h, f in zip(hits, DEFAULT_RERANKER.features(it.question, hits), strict=True):
            xs.append([f[n] for n in FEATURES])
            ys.append(int(is_hit(it, _cite(h))))
            gs.append(qi)
    return np.asarray(xs), np.asarray(ys), np.asarray(gs)


def ranking(score: np.ndarray, y: np.ndarray, g: np.ndarray) -> tuple[float, float, float]:
    h1 = h5 = 0
    rr = 0.0
    groups = np.unique(g)
    for q in groups:
        m = g == q
        order = np.argsort(-score[m], kind="stable")
        hits = np.nonzero(y[m][order])[0]
        if len(hits):
            r = int(hits[0]) + 1
            h1 += r == 1
            h5 += r <= 5
            rr += 1 / r
    n = len(groups)
    return h1 / n, h5 / n, rr / n


def fit_rerank(args: argparse.Namespace) -> int:
    """A grid over the answer-type and guide weights (the fused score keeps weight 1): hit@1/hit@5/MRR of
    each cell on the dev set, to pick a weight from the region where they cost nothing."""
    service = _open(args.index)
    try:
        x, y, g = rerank_data([it for path in args.qa for it in load_qa(path)], service)
    finally:
        service.close()
    print(f"{len(np.unique(g))} answerable questions, {len(y)} candidates, {int(y.sum())} right ones")
    h1, h5, mrr = ranking(x[:, 0], y, g)
    print(f"fused order (first stage): hit@1 {h1:.3f} hit@5 {h5:.3f} MRR {mrr:.3f}")
    for wt in (0.0, 0.05, 0.1, 0.2, 0.3):
        for wg in (0.0, 0.05, 0.1, 0.2):
            score = x[:, 0] + wt * x[:, 1] + wg * x[:, 2]
            print(f"type {wt:.2f} guide {wg:.2f}: hit@1 %.3f hit@5 %.3f MRR %.3f" % ranking(score, y, g))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m knowledge.calibrate")
    ap.add_argument("what", choices=("decision", "rerank"))
    ap.add_argument("qa", type=Path, nargs="+")
    ap.add_argument("--index", default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--all", action="store_true", help="compare every subset of up to three features")
    ap.add_argument("--show", action="store_true", help="print every question's features and probability")
    args = ap.parse_args(argv)
    return fit_decision(args) if args.what == "decision" else fit_rerank(args)


if __name__ == "__main__":
    raise SystemExit(main())
