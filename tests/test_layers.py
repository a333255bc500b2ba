"""The layers contract (pyproject.toml `[tool.importlinter]`, docs/architecture.md): the packages' imports point
one way. It holds on the tree, and it fails on a deliberate wrong import in a copy of the tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "pii", "store", "nlp", "channels", "handlers", "tickets", "knowledge", "backend", "bot")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the project's contracts on the packages found in `tree` (first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's packages (Python files only) and pyproject.toml, copied."""
    dest = tmp_path_factory.mktemp("layers")
    for pkg in PACKAGES:
        shutil.copytree(
            ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("*.pyc", "__pycache__", "*.jsonl", "*.npz")
        )
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_tree_keeps_every_contract() -> None:
    out = lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize(
    ("module", "wrong_import", "contract"),
    [
        ("core/wrong.py", "from bot.app import App\n", "Layers"),  # the core reaching up to the wiring
        ("handlers/wrong.py", "from tickets.desk import ReportDesk\n", "Layers"),  # a handler past the port
        ("handlers/wrong.py", "from nlp.extract import normalise\n", "Handlers use the core only"),
        ("backend/wrong.py", "from store.db import make_engine\n", "The built-in backend"),
        ("channels/wrong.py", "from store.models import Delivery\n", "Channels use the core only"),
    ],
)
def test_a_wrong_import_breaks_the_contract(
    tree_copy: Path, module: str, wrong_import: str, contract: str
) -> None:
    wrong = tree_copy / module
    wrong.write_text(f'"""A deliberate wrong import."""\n\n{wrong_import}', encoding="utf-8")
    try:
        out = lint_imports(tree_copy)
    finally:
        wrong.unlink()
    assert out.returncode != 0, out.stdout
    broken = [line for line in out.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), out.stdout
    assert module.replace("/", ".").removesuffix(".py") in out.stdout  # the report names the wrong import
