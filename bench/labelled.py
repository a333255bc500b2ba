"""Where a labelled message set lives: the real training rows ship with the classifier (nlp/data/real/), the sets
that are never trained on stay with the tests (tests/data/). Checked in that order, so an older tree (whose real
files were under tests/data) is read the same way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def data_file(root: Path, name: str) -> Path:
    shipped = root / "nlp" / "data" / "real" / name
    return shipped if shipped.exists() else root / "tests" / "data" / name


def rows(root: Path, name: str) -> list[dict[str, Any]]:
    text = data_file(root, name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]
