"""The three classifiers of an issue-11 part in one run, on each labelled set (docs/understanding.md):

- the previous classifier (nlp/classifier_baseline.py, the model before issue 11);
- an earlier revision of this code (`--earlier REV`, e.g. main before the branch), unpacked with `git archive`
  into a temporary folder and run there in a subprocess, on the same rows;
- this tree.

Real sets are measured with the model trained on all bundled files (none of their rows is a training row), the
synthetic set held out (`nlp.classifier.held_out`). A held-out set is named with `--held-out FILE` and read only
by this one run.

    .venv/bin/python bench/bench_three_models.py --earlier main --held-out classify_real_fresh6.jsonl
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import labelled  # noqa: E402

DEV_FILES = ("classify_real.jsonl", "classify_real_fresh.jsonl", "classify_real_fresh2.jsonl")
KEYS = ("needs_ticket", "intent", "service_code", "urgent_recall", "false_alarms")


def _rows(root: Path, name: str) -> list[dict[str, Any]]:
    return labelled.rows(root, name)


def measure(root: Path, held_out_file: str | None, misses: bool) -> dict[str, Any]:
    """This tree's model (the code under `root`) and the previous classifier on the sets."""
    from bot.config import load_config
    from nlp.classifier import BUNDLED, evaluate, held_out, read_examples, train
    from nlp.classifier_baseline import load_baseline

    config = load_config(root / "config" / "doorstep.yaml")
    sets = {"real dev (438)": [r for f in DEV_FILES for r in _rows(root, f)]}
    if held_out_file:
        sets[f"held out {held_out_file}"] = _rows(root, held_out_file)
    model = train([e for f in BUNDLED for e in read_examples(f)], config)
    out: dict[str, Any] = {"model": {}, "baseline": {}, "misses": {}}
    base = load_baseline(config)
    for name, rows in sets.items():
        out["model"][name] = evaluate(model, rows)
        out["baseline"][name] = evaluate(base, rows)
        if misses:
            out["misses"][name] = [
                f"{r['id']} {r['intent']}/{r.get('service_code')}/{r['urgency']} -> "
                f"{c.intent}/{c.service_code}/{c.urgency} :: {r['text'][:90]}"
                for r in rows
                for c in [model.classify(r["text"])]
                if c.intent != r["intent"]
                or (r["needs_ticket"] and (c.service_code != r["service_code"] or c.urgency != r["urgency"]))
            ]
    synthetic = _rows(root, "classify_dev.jsonl")
    out["model"]["synthetic (250), held out"] = held_out(config, synthetic)
    return out


def _line(label: str, m: dict[str, float]) -> str:
    return f"| {label} | " + " | ".join(f"{m[k]:.3f}" for k in KEYS) + " |"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--earlier", help="a git revision whose classifier to measure beside this tree's")
    ap.add_argument("--held-out", help="a held-out set in tests/data, read by this run only")
    ap.add_argument("--json", action="store_true", help="(internal) print this tree's figures as JSON")
    args = ap.parse_args()
    if args.json:
        print(json.dumps(measure(ROOT, args.held_out, misses=False)))
        return
    ours = measure(ROOT, args.held_out, misses=True)
    earlier: dict[str, Any] | None = None
    if args.earlier:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.earlier], capture_output=True, check=True
        )
        with tempfile.TemporaryDirectory() as tmp:
            with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
                tar.extractall(tmp, filter="data")
            here = Path(__file__).resolve()
            (Path(tmp) / "bench").mkdir(exist_ok=True)
            for script in (here, here.parent / "labelled.py"):
                (Path(tmp) / "bench" / script.name).write_text(
                    script.read_text(encoding="utf-8"), encoding="utf-8"
                )
            for f in (*DEV_FILES, *([args.held_out] if args.held_out else [])):  # the same rows for both
                target = labelled.data_file(Path(tmp), f)
                target.write_bytes(labelled.data_file(ROOT, f).read_bytes())
            cmd = [sys.executable, str(Path(tmp) / "bench" / here.name), "--json"]
            if args.held_out:
                cmd += ["--held-out", args.held_out]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tmp)
            earlier = json.loads(res.stdout.strip().splitlines()[-1])
    print("| set | model | needs_ticket | intent | service | urgent recall | false alarms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in ours["model"]:
        if name in ours["baseline"]:
            print(_line(f"{name} | previous classifier", ours["baseline"][name]))
        if earlier is not None:
            print(_line(f"{name} | {args.earlier} (earlier)", earlier["model"][name]))
        print(_line(f"{name} | this tree", ours["model"][name]))
    for name, lines in ours["misses"].items():
        print(f"\n{name}: rows this tree gets wrong (intent, or service/urgency of a report)")
        print("\n".join(f"   {x}" for x in lines))


if __name__ == "__main__":
    main()
