"""`doorstep eval QA.jsonl [--index DIR] [--k 5] [--json]`: retrieval quality on a question set
(hit@1, hit@k, MRR, refusals of unanswerable questions, latency); the format is in CONTRACT.md."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bot.cli import UserError
from bot.config import load_config
from knowledge.cli import open_for_command
from knowledge.evaluate import QAFormatError, evaluate, load_qa


def run(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise UserError("--k must be at least 1")
    try:
        items = load_qa(Path(args.qa))
    except QAFormatError as e:
        raise UserError(str(e)) from None
    _, service = open_for_command(load_config(), args.index, ingest_sample_if_empty=True)
    try:
        service.warm_up()
        report = evaluate(service, items, k=args.k)
    finally:
        service.close()
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return 0
    k = args.k
    print(
        f"questions:   {report['questions']} ({report['answerable']} answerable, {report['unanswerable']} unanswerable)"
    )
    if report["answerable"]:
        print(f"hit@1:       {report['hit@1']:.3f}")
        print(f"hit@{k}:       {report[f'hit@{k}']:.3f}")
        print(f"MRR:         {report['mrr']:.3f}")
        print(f"answered:    {report['answered_rate']:.3f} of answerable questions got found=true")
    if report["unanswerable"]:
        print(f"refused:     {report['refusal_rate']:.3f} of unanswerable questions got found=false")
    lat = report["latency_ms"]
    print(f"latency:     p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms")
    wrong = [
        d
        for d in report["details"]
        if (d["expected"] and d["rank"] != 1) or (not d["expected"] and d["found"])
    ]
    if wrong:
        print("not at rank 1 / wrongly answered:")
        for d in wrong:
            print(
                f"  {d['question']}  expected {d['expected'] or '(refusal)'}, got {d['top']} (rank {d['rank']}, found {d['found']})"
            )
    return 0
