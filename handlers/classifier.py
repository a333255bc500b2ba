"""Intent, service and urgency: one trained lightweight model, the term lexicon, and rules where rules are right.

- features: TF-IDF over character 1-3-grams of the normalised text (digits folded, colloquial terms expanded by
  config/lexicon.yaml), side by side with a semantic vector of the message (handlers/semantic.py: a word table
  distilled from the product's embedding model), so that a phrasing never seen still lands near its meaning;
- intent: logistic regression over those features; service: a second one over reports only, blended with the
  configured service keywords (config/services.yaml), so a deployment that adds a service and its keywords is
  heard; urgency: the danger concepts of handlers/extract.py, or a third model's probability of "urgent" at or
  above URGENT_CUTOFF (a missed danger is far worse than a false alarm: see docs/understanding.md);
- training rows: the template file (handlers/data/classify_train.jsonl), the hand-written varied file
  (classify_varied.jsonl), a community's own file (config/classify_extra.jsonl) and the staff's corrections
  exported by `doorstep train` (DATA_DIR/classify_corrections.jsonl, weighted CORRECTION_WEIGHT); trained at
  start-up in a few seconds, no pickled artefacts that break across scikit-learn versions;
- rules: slash commands are commands, ticket look-ups are questions (answered by handlers/status.py).

`load_classifier(config)` is the one entry point, used by the chat and by `doorstep classify` alike; it returns a
`LiveClassifier` that retrains itself when the corrections file changes, so a running bot and the next
`classify --json` both use the new model without a code change.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from bot.config import Config, Service
from handlers.extract import clean_description, dangers, extract_place, normalise
from handlers.intent import INTENTS, Classification, Intent
from handlers.semantic import TermVectors, term_vectors

DATA = Path(__file__).resolve().parent / "data"
TRAIN_FILE = DATA / "classify_train.jsonl"
VARIED_FILE = DATA / "classify_varied.jsonl"
SERVICE_TERMS = DATA / "service_terms.yaml"
CORRECTIONS_NAME = "classify_corrections.jsonl"
REPORT_INTENTS: tuple[Intent, ...] = ("complaint", "hazard")
KEYWORD_WEIGHT = 0.3  # how much a configured keyword adds to the model's service probability
SEMANTIC_WEIGHT = 1.0  # scale of the semantic vector beside the (unit-norm) n-gram vector
CORRECTION_WEIGHT = 3.0  # a staff correction counts as this many training rows
URGENT_CUTOFF = (
    0.7  # the urgency model's probability at or above which a report is urgent (docs/understanding.md)
)

_COMMAND = re.compile(r"^\s*(?:[/／]|帮助$|菜单$|help$|功能$)", re.IGNORECASE)
# A resident asking after a ticket ("我的工单", "查询工单 #12") is a question the bot answers unprompted in an
# `auto` group (handlers/status.py takes it before the knowledge base); as a "command" it went unanswered unless
# the bot was @-ed, since only slash commands are heard unaddressed.
_TICKET_QUERY = re.compile(
    r"^\s*(?:(?:查询?|查一下|查下)(?:我的)?工单|我的工单)"
    r"|工单\s*[#＃]?\s*\d+\s*(?:的)?(?:进度|怎么样|到哪|处理|状态|好了没)",
)


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    intent: Intent
    service_code: str | None = None
    # train | dev (the labelled dev set, left out fold by fold when evaluating) | service (teaches the service
    # model only: variety in what is broken and who got hurt, not in how a report is phrased)
    source: str = "train"
    urgency: str | None = None  # labelled urgency of a report (varied rows, corrections); None: not labelled
    weight: float = 1.0


def read_examples(path: Path) -> list[Example]:
    """JSON Lines with at least `text` and `intent` (and `service_code` for reports; `urgency` optional)."""
    out: list[Example] = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            d = json.loads(line)
            if d.get("intent") not in INTENTS:
                raise ValueError(f"{path}:{n}: unknown intent {d.get('intent')!r}")
            source = d.get("source", "train")
            out.append(
                Example(
                    d["text"],
                    d["intent"],
                    d.get("service_code"),
                    source,
                    d.get("urgency"),
                    CORRECTION_WEIGHT if source == "correction" else 1.0,
                )
            )
    return out


# Who was asked and did nothing ("物业不管", "向物业反映", "城管也不管") says nothing about whose thing is broken: the
# service model must not read "物业" in "物业不清理垃圾" as a complaint about the property company's service.
_INACTION = re.compile(
    r"(?:向|跟|给|找|反映给|打电话给|告诉)?(?:物业公司|物业|物管|城管|社区|居委会|有关部门|相关部门|街道|保安)"
    r"(?:的人|工作人员)?(?:也|都|却|还是|一直|根本|从来)?(?:不管|不理|不清理|不处理|不作为|不修|不装|没人管|没人来|置之不理|"
    r"推诿|扯皮|两手一摊|说不归|反映|督促|来看|处理一下|负责)"
)


class Featuriser:
    """Text -> the string the n-gram model sees: normalised, digits folded, lexicon terms appended."""

    def __init__(self, lexicon: dict[str, str], *, drop_inaction: bool = False) -> None:
        self.terms = sorted(lexicon.items(), key=lambda kv: len(kv[0]), reverse=True)
        self.drop_inaction = drop_inaction

    def __call__(self, text: str) -> str:
        t = normalise(text).lower()
        if self.drop_inaction:
            t = _INACTION.sub(" ", t)
        t = re.sub(r"[#＃]?\d+", "0", t)
        extra = [std for word, std in self.terms if word in t and std not in t]
        return t + (" " + " ".join(extra) if extra else "")


class Features:
    """Text -> one sparse row: character n-gram TF-IDF beside the semantic vector (when the table is built)."""

    def __init__(self, featurise: Featuriser, vectors: TermVectors | None) -> None:
        self.featurise = featurise
        self.vectors = vectors
        self.tfidf = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=1)

    def _semantic(self, texts: Sequence[str]) -> sparse.csr_matrix | None:
        if self.vectors is None:
            return None
        return sparse.csr_matrix(np.vstack([self.vectors(t) for t in texts]) * SEMANTIC_WEIGHT)

    def fit_transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        grams = self.tfidf.fit_transform([self.featurise(t) for t in texts])
        sem = self._semantic(texts)
        return sparse.hstack([grams, sem]).tocsr() if sem is not None else grams

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        grams = self.tfidf.transform([self.featurise(t) for t in texts])
        sem = self._semantic(texts)
        return sparse.hstack([grams, sem]).tocsr() if sem is not None else grams


class _OneVsRest:
    """One binary liblinear logistic regression per class (a fraction of a second on a few thousand messages,
    unlike multinomial lbfgs), with sample weights, which scikit-learn's OneVsRestClassifier does not pass on."""

    def __init__(self, c: float) -> None:
        self.c = c
        self.classes_: list[str] = []
        self.models: list[LogisticRegression] = []

    def fit(self, x: sparse.csr_matrix, y: Sequence[str], sample_weight: np.ndarray) -> _OneVsRest:
        self.classes_ = sorted(set(y))
        labels = np.asarray(y)
        self.models = []
        for c in self.classes_:
            m = LogisticRegression(C=self.c, class_weight="balanced", solver="liblinear")
            m.fit(x, (labels == c).astype(int), sample_weight=sample_weight)
            self.models.append(m)
        return self

    def predict_proba(self, x: sparse.csr_matrix) -> np.ndarray:
        p = np.column_stack([m.predict_proba(x)[:, 1] for m in self.models])
        return p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)


def _model(c: float) -> _OneVsRest:
    return _OneVsRest(c)


class _Head:
    """One classifier over its own fitted features."""

    def __init__(
        self, features: Features, texts: Sequence[str], labels: Sequence[str], weights: Sequence[float]
    ):
        self.features = features
        self.model = _model(c=20.0)
        self.model.fit(features.fit_transform(texts), list(labels), sample_weight=np.asarray(weights))
        self.classes: list[str] = [str(c) for c in self.model.classes_]

    def scores(self, text: str) -> dict[str, float]:
        probs = self.model.predict_proba(self.features.transform([text]))[0]
        return dict(zip(self.classes, probs.tolist(), strict=True))


class TrainedClassifier:
    """Implements handlers.intent.IntentClassifier."""

    def __init__(
        self,
        examples: Sequence[Example],
        lexicon: dict[str, str],
        services: Sequence[Service],
        *,
        semantic: bool = True,
    ) -> None:
        self.featurise = Featuriser(lexicon)
        vectors = term_vectors() if semantic else None
        self.services = list(services)
        codes = {s.service_code for s in self.services}
        hints = _service_terms()
        self.keywords: dict[str, list[str]] = {
            s.service_code: sorted({k.lower() for k in [*s.keywords, *hints.get(s.service_code, [])] if k})
            for s in self.services
        }
        for_intent = [e for e in examples if e.source != "service"]
        # the words' meaning helps to name the owner of a problem; whether a message is a report at all is carried
        # by its form (questions, thanks, notices), which the n-grams read better (measured: docs/understanding.md)
        self.intent_head = _Head(
            Features(self.featurise, None),
            [e.text for e in for_intent],
            [e.intent for e in for_intent],
            [e.weight for e in for_intent],
        )
        reports = [e for e in examples if e.intent in REPORT_INTENTS and e.service_code in codes]
        # every configured service is learnable from its name, description and keywords alone
        seeds = [
            Example(f"{s.service_name} {s.description} {' '.join(s.keywords)}", "complaint", s.service_code)
            for s in self.services
        ]
        rows = [*reports, *seeds]
        self.service_head = _Head(
            Features(Featuriser(lexicon, drop_inaction=True), vectors),
            [e.text for e in rows],
            [str(e.service_code) for e in rows],
            [e.weight for e in rows],
        )
        self.service_classes = self.service_head.classes
        labelled = [e for e in reports if e.urgency in ("urgent", "normal")]
        self.urgency_head = (
            _Head(
                Features(self.featurise, vectors),
                [e.text for e in labelled],
                [str(e.urgency) for e in labelled],
                [e.weight for e in labelled],
            )
            if len({e.urgency for e in labelled}) == 2
            else None
        )
        self.fallback_service = "other" if "other" in codes else (self.service_classes[0] if codes else None)

    # --- the parts, also used by the evaluation ---------------------------------------------------------

    def intent_scores(self, text: str) -> dict[str, float]:
        return self.intent_head.scores(text)

    def service_of(self, text: str) -> tuple[str | None, float]:
        if not self.service_classes:
            return self.fallback_service, 0.0
        scores = self.service_head.scores(text)
        t = _INACTION.sub(" ", normalise(text).lower())
        for code in scores:
            if any(k and k in t for k in self.keywords.get(code, ())):
                scores[code] += KEYWORD_WEIGHT
        best = max(scores, key=lambda k: scores[k])
        return best, float(min(1.0, scores[best]))

    def urgent_probability(self, text: str) -> float:
        return self.urgency_head.scores(text).get("urgent", 0.0) if self.urgency_head is not None else 0.0

    def urgency(self, text: str, cutoff: float = URGENT_CUTOFF) -> str:
        """Danger to people now: a danger concept in the words, or the urgency model at or above the cut-off."""
        if dangers(text) or self.urgent_probability(text) >= cutoff:
            return "urgent"
        return "normal"

    # --- the interface ---------------------------------------------------------------------------------

    def classify(self, text: str) -> Classification:
        t = text.strip()
        if not normalise(t):
            return Classification(intent="chitchat", confidence=1.0)
        location = extract_place(t)
        if _COMMAND.search(t):
            return Classification(intent="command", location=None, confidence=1.0)
        if _TICKET_QUERY.search(t):
            return Classification(intent="question", location=None, confidence=1.0, description=t)
        scores = self.intent_scores(t)
        intent: Intent = str(max(scores, key=lambda k: scores[k]))  # type: ignore[assignment]
        confidence = scores[intent]
        report_p = sum(scores.get(i, 0.0) for i in REPORT_INTENTS)
        danger = bool(dangers(t))
        if intent not in REPORT_INTENTS and danger and report_p >= 0.25:
            intent = "hazard"  # danger to people now is a report even when phrased as a question
        if intent not in REPORT_INTENTS:
            return Classification(
                intent=intent, location=location, confidence=confidence, description=clean_description(t)
            )
        urgency = self.urgency(t)
        if urgency == "urgent":
            intent = "hazard"
        service, _ = self.service_of(t)
        keyword_hit = any(k in normalise(t).lower() for k in self.keywords.get(service or "", ()))
        confidence = max(
            report_p, 0.6 if urgency == "urgent" else 0.0, 0.65 if keyword_hit and report_p >= 0.4 else 0.0
        )
        return Classification(
            intent=intent,
            service_code=str(service or self.fallback_service),
            location=location,
            urgency="urgent" if urgency == "urgent" else "normal",
            needs_ticket=True,
            confidence=confidence,
            description=clean_description(t),
        )


def _service_terms() -> dict[str, list[str]]:
    data = yaml.safe_load(SERVICE_TERMS.read_text(encoding="utf-8")) if SERVICE_TERMS.exists() else {}
    return {str(k): [str(w) for w in v or []] for k, v in (data or {}).items()}


def train(examples: Iterable[Example], config: Config, *, semantic: bool = True) -> TrainedClassifier:
    return TrainedClassifier(
        list(examples), config.lexicon.terms, config.services.services, semantic=semantic
    )


def corrections_file(config: Config) -> Path:
    """Where `doorstep train` writes the staff's corrections as training rows (in the data directory)."""
    return config.data_dir / CORRECTIONS_NAME


def training_files(config: Config) -> list[Path]:
    """The bundled template and varied sets, a community's own labelled file (config/classify_extra.jsonl) and the
    exported corrections, each if present."""
    extra = config.path.parent / "classify_extra.jsonl"
    return [p for p in (TRAIN_FILE, VARIED_FILE, extra, corrections_file(config)) if p.exists()]


def _config_key(config: Config, files: Sequence[Path]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(config.lexicon.terms, sort_keys=True, ensure_ascii=False).encode())
    h.update(
        json.dumps(
            [s.model_dump() for s in config.services.services], sort_keys=True, ensure_ascii=False
        ).encode()
    )
    for p in files:
        h.update(str(p).encode())
        h.update(str(p.stat().st_mtime_ns).encode() if p.exists() else b"-")
    return h.hexdigest()


_CACHE: dict[str, TrainedClassifier] = {}
_CACHE_LOCK = threading.Lock()


def trained_for(config: Config) -> TrainedClassifier:
    """The model for this configuration and these training files, trained once per distinct set."""
    files = training_files(config)
    key = _config_key(config, [*files, corrections_file(config)])
    with _CACHE_LOCK:
        if key not in _CACHE:
            examples: list[Example] = []
            for f in files:
                examples.extend(read_examples(f))
            _CACHE[key] = train(examples, config)
        return _CACHE[key]


class LiveClassifier:
    """The classifier the bot and the CLI use: the trained model, swapped for a retrained one when the corrections
    file changes (checked at most every CHECK_SECONDS, a stat call)."""

    CHECK_SECONDS = 5.0

    def __init__(self, config: Config) -> None:
        self.config = config
        self.model = trained_for(config)
        self._stamp = self._corrections_stamp()
        self._checked = time.monotonic()

    def _corrections_stamp(self) -> int:
        p = corrections_file(self.config)
        return p.stat().st_mtime_ns if p.exists() else 0

    def reload(self) -> TrainedClassifier:
        """Retrain now if the training files changed (after `doorstep train` or a nightly retrain)."""
        self._stamp = self._corrections_stamp()
        self._checked = time.monotonic()
        self.model = trained_for(self.config)
        return self.model

    def classify(self, text: str) -> Classification:
        if time.monotonic() - self._checked >= self.CHECK_SECONDS:
            self._checked = time.monotonic()
            if self._corrections_stamp() != self._stamp:
                self.reload()
        return self.model.classify(text)

    def __getattr__(self, name: str) -> Any:  # the parts (service_of, urgency ...) for evaluation
        return getattr(self.model, name)


def load_classifier(config: Config) -> LiveClassifier:
    return LiveClassifier(config)


def evaluate(model: Any, rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """needs_ticket, intent, service code (on true reports), urgency, urgent recall and false alarms (share of
    ordinary reports flagged urgent), location, on labelled rows."""
    n = len(rows)
    ok_ticket = ok_intent = ok_service = n_service = ok_urgency = ok_loc = 0
    n_urgent = hit_urgent = n_ordinary = false_alarm = 0
    for r in rows:
        c = model.classify(r["text"])
        ok_ticket += c.needs_ticket == r["needs_ticket"]
        ok_intent += c.intent == r["intent"]
        ok_urgency += c.urgency == r.get("urgency", "normal")
        ok_loc += c.location == r.get("location")
        if r["needs_ticket"]:
            n_service += 1
            ok_service += c.service_code == r["service_code"]
            if r.get("urgency") == "urgent":
                n_urgent += 1
                hit_urgent += c.urgency == "urgent"
            else:
                n_ordinary += 1
                false_alarm += c.urgency == "urgent"
    return {
        "n": n,
        "needs_ticket": ok_ticket / n,
        "intent": ok_intent / n,
        "service_code": ok_service / max(1, n_service),
        "urgency": ok_urgency / n,
        "urgent_recall": hit_urgent / max(1, n_urgent),
        "false_alarms": false_alarm / max(1, n_ordinary),
        "location": ok_loc / n,
    }


def held_out(config: Config, dev: Sequence[dict[str, Any]], *, semantic: bool = True) -> dict[str, float]:
    """Trained without any dev-set message (the template file's dev rows are dropped), evaluated on the dev set."""
    texts = {r["text"] for r in dev}
    base = [
        e
        for f in (TRAIN_FILE, VARIED_FILE)
        for e in read_examples(f)
        if e.source != "dev" and e.text not in texts
    ]
    return evaluate(train(base, config, semantic=semantic), dev)
