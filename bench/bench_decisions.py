"""The found decision in use (`ASK_DECISION`) and the earlier one (`PART3_DECISION`) on one question set, same index, one run.

    PYTHONPATH=. .venv/bin/python bench/bench_decisions.py tests/data/knowledge_sample_residents3.jsonl

Used once for the held-out residents' set of issue 12 part 4 (bench/results/knowledge-residents3-once-20261201.txt)
and once for the fourth (part 5).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from knowledge.decide import ASK_DECISION, PART3_DECISION  # noqa: E402
from knowledge.evaluate import evaluate, load_qa  # noqa: E402
from tests.knowledge_support import close_shared, shared_sample  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("questions", type=Path)
    args = ap.parse_args()
    kb = shared_sample()[1]
    items = load_qa(args.questions)
    try:
        for name, decision in (
            ("part 3 (in use until part 5)", PART3_DECISION),
            ("ASK_DECISION (in use since part 5)", ASK_DECISION),
        ):
            kb.decision = decision
            report = evaluate(kb, items, k=5)
            print(
                name,
                json.dumps({k: v for k, v in report.items() if not isinstance(v, list)}, ensure_ascii=False),
            )
    finally:
        close_shared()


if __name__ == "__main__":
    main()
