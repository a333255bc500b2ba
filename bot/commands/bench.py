"""`doorstep bench [--quick]`: every bench/bench_*.py module's `run(quick) -> dict`, a table on stdout and a
JSON report in bench/results/ (report-<UTC time>.json and latest.json)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from bot.cli import UserError

BENCH = Path(__file__).resolve().parent.parent.parent / "bench"


def discover(directory: Path = BENCH) -> list[tuple[str, ModuleType]]:
    modules = []
    for path in sorted(directory.glob("bench_*.py")):
        spec = importlib.util.spec_from_file_location(f"bench.{path.stem}", path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # so worker processes can find its functions by name
        spec.loader.exec_module(module)
        if callable(getattr(module, "run", None)):
            modules.append((path.stem.removeprefix("bench_"), module))
    return modules


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return "-" if v is None else str(v)


def table(rows: list[dict[str, Any]]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    modules = discover()
    if not modules:
        raise UserError(f"no bench_*.py modules in {BENCH}")
    report: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "benchmarks": {},
    }
    failed = False
    for name, module in modules:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            result = module.run(args.quick)
        except Exception as e:  # one broken benchmark must not lose the others' figures
            traceback.print_exc(file=sys.stderr)
            result = {"error": f"{type(e).__name__}: {e}"}
            failed = True
        result["seconds"] = round(time.perf_counter() - t0, 1)
        report["benchmarks"][name] = result
        summary = result.get("summary") or {k: v for k, v in result.items() if not isinstance(v, dict | list)}
        print(table([{"metric": k, "value": v} for k, v in summary.items()]))
        if isinstance(result.get("table"), list) and result["table"]:
            print(table(result["table"]))
    out = BENCH / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(report, ensure_ascii=False, indent=2)
    (out / f"report-{stamp}.json").write_text(text, encoding="utf-8")
    (out / "latest.json").write_text(text, encoding="utf-8")
    print(f"report: {out / f'report-{stamp}.json'}")
    return 1 if failed else 0
