"""The found decision in use (`ASK_DECISION`) and the earlier one (`PART3_DECISION`) on one question set, same index, one run.

    PYTHONPATH=. .venv/bin/python bench/bench_decisions.py tests/data/knowledge_sample_residents3.jsonl
    PYTHONPATH=. .venv/bin/python bench/bench_decisions.py tests/data/untouched2/questions.jsonl --docs tests/data/untouched2/docs

With --docs the questions run on a fresh index of that folder alone (an untouched set), else on the bundled sample.

Used once for the held-out residents' set of issue 12 part 4 (bench/results/knowledge-residents3-once-20261201.txt)
and once for the fourth (part 5).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from knowledge.decide import ASK_DECISION, PART3_DECISION  # noqa: E402
from knowledge.evaluate import evaluate, load_qa  # noqa: E402
from tests.knowledge_support import close_shared, own_index, shared_sample  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("questions", type=Path)
    ap.add_argument("--docs", type=Path, help="index this folder alone instead of the bundled sample")
    args = ap.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="doorstep-decisions-"))
    kb = own_index(args.docs, directory) if args.docs else shared_sample()[1]
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
        if args.docs:
            kb.close()
        close_shared()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
