"""Intent and service classification: a trained lightweight model over character n-grams, the term lexicon,
and a few rules where rules are simply right.

- intent: TF-IDF over character 1-3-grams of the normalised text (digits folded, colloquial terms expanded by
  config/lexicon.yaml) -> logistic regression, trained at start-up on handlers/data/classify_train.jsonl
  (about a second; no pickled artefacts that break across scikit-learn versions);
- service: the same features -> a second logistic regression over reports only, blended with the configured
  service keywords (config/services.yaml), so a deployment that adds a service and its keywords is heard;
- rules: slash commands are commands, ticket look-ups are questions (answered by handlers/status.py); urgency and place come from handlers/extract.py;
  a report describing danger to people now is a hazard.

`load_classifier(config)` is the one entry point; the trained model is cached per configuration.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline

from bot.config import Config, Service
from handlers.extract import clean_description, extract_place, normalise, urgency_of
from handlers.intent import INTENTS, Classification, Intent

DATA = Path(__file__).resolve().parent / "data"
TRAIN_FILE = DATA / "classify_train.jsonl"
SERVICE_TERMS = DATA / "service_terms.yaml"
REPORT_INTENTS: tuple[Intent, ...] = ("complaint", "hazard")
KEYWORD_WEIGHT = 0.3  # how much a configured keyword adds to the model's service probability

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


def read_examples(path: Path) -> list[Example]:
    """JSON Lines with at least `text` and `intent` (and `service_code` for reports)."""
    out: list[Example] = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            d = json.loads(line)
            if d.get("intent") not in INTENTS:
                raise ValueError(f"{path}:{n}: unknown intent {d.get('intent')!r}")
            out.append(Example(d["text"], d["intent"], d.get("service_code"), d.get("source", "train")))
    return out


class Featuriser:
    """Text -> the string the n-gram model sees: normalised, digits folded, lexicon terms appended."""

    def __init__(self, lexicon: dict[str, str]) -> None:
        self.terms = sorted(lexicon.items(), key=lambda kv: len(kv[0]), reverse=True)

    def __call__(self, text: str) -> str:
        t = normalise(text).lower()
        t = re.sub(r"[#＃]?\d+", "0", t)
        extra = [std for word, std in self.terms if word in t and std not in t]
        return t + (" " + " ".join(extra) if extra else "")


def _pipeline(c: float) -> Pipeline:
    return Pipeline(
        [
            ("tfidf", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=1)),
            # one-vs-rest liblinear: a fraction of a second on a few thousand messages, unlike multinomial lbfgs
            ("lr", OneVsRestClassifier(LogisticRegression(C=c, class_weight="balanced", solver="liblinear"))),
        ]
    )


class TrainedClassifier:
    """Implements handlers.intent.IntentClassifier."""

    def __init__(
        self, examples: Sequence[Example], lexicon: dict[str, str], services: Sequence[Service]
    ) -> None:
        self.featurise = Featuriser(lexicon)
        self.services = list(services)
        codes = {s.service_code for s in self.services}
        hints = _service_terms()
        self.keywords: dict[str, list[str]] = {
            s.service_code: sorted({k.lower() for k in [*s.keywords, *hints.get(s.service_code, [])] if k})
            for s in self.services
        }
        self.intent_model = _pipeline(c=20.0)
        for_intent = [e for e in examples if e.source != "service"]
        self.intent_model.fit([self.featurise(e.text) for e in for_intent], [e.intent for e in for_intent])
        reports = [e for e in examples if e.intent in REPORT_INTENTS and e.service_code in codes]
        # every configured service is learnable from its name, description and keywords alone
        seeds = [
            Example(f"{s.service_name} {s.description} {' '.join(s.keywords)}", "complaint", s.service_code)
            for s in self.services
        ]
        self.service_model = _pipeline(c=20.0)
        self.service_model.fit(
            [self.featurise(e.text) for e in [*reports, *seeds]], [e.service_code for e in [*reports, *seeds]]
        )
        self.service_classes: list[str] = list(self.service_model.classes_)
        self.fallback_service = "other" if "other" in codes else (self.service_classes[0] if codes else None)

    # --- the parts, also used by the evaluation ---------------------------------------------------------

    def intent_scores(self, text: str) -> dict[str, float]:
        probs = self.intent_model.predict_proba([self.featurise(text)])[0]
        return dict(zip(self.intent_model.classes_, probs.tolist(), strict=True))

    def service_of(self, text: str) -> tuple[str | None, float]:
        if not self.service_classes:
            return self.fallback_service, 0.0
        probs = self.service_model.predict_proba([self.featurise(text)])[0].copy()
        t = normalise(text).lower()
        for i, code in enumerate(self.service_classes):
            if any(k and k in t for k in self.keywords.get(code, ())):
                probs[i] += KEYWORD_WEIGHT
        best = int(np.argmax(probs))
        return self.service_classes[best], float(min(1.0, probs[best]))

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
        urgency = urgency_of(t)
        report_p = sum(scores.get(i, 0.0) for i in REPORT_INTENTS)
        if intent not in REPORT_INTENTS and urgency == "urgent" and report_p >= 0.25:
            intent = "hazard"  # danger to people now is a report even when phrased as a question
        if intent not in REPORT_INTENTS:
            return Classification(
                intent=intent, location=location, confidence=confidence, description=clean_description(t)
            )
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


def train(examples: Iterable[Example], config: Config) -> TrainedClassifier:
    return TrainedClassifier(list(examples), config.lexicon.terms, config.services.services)


_CACHE: dict[str, TrainedClassifier] = {}


def _config_key(config: Config, extra: Sequence[Path]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(config.lexicon.terms, sort_keys=True, ensure_ascii=False).encode())
    h.update(
        json.dumps(
            [s.model_dump() for s in config.services.services], sort_keys=True, ensure_ascii=False
        ).encode()
    )
    for p in (TRAIN_FILE, *extra):
        h.update(str(p).encode())
        if p.exists():
            h.update(str(p.stat().st_mtime_ns).encode())
    return h.hexdigest()


def training_files(config: Config) -> list[Path]:
    """The bundled training set, plus a community's own labelled file (config/classify_extra.jsonl) if present."""
    extra = config.path.parent / "classify_extra.jsonl"
    return [TRAIN_FILE, *([extra] if extra.exists() else [])]


def load_classifier(config: Config) -> TrainedClassifier:
    files = training_files(config)
    key = _config_key(config, files[1:])
    if key not in _CACHE:
        examples: list[Example] = []
        for f in files:
            examples.extend(read_examples(f))
        _CACHE[key] = train(examples, config)
    return _CACHE[key]


def evaluate(model: TrainedClassifier, rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Accuracy of needs_ticket, intent, service code (on true reports) and urgency/location, on labelled rows."""
    n = len(rows)
    ok_ticket = ok_intent = ok_service = n_service = ok_urgency = ok_loc = 0
    for r in rows:
        c = model.classify(r["text"])
        ok_ticket += c.needs_ticket == r["needs_ticket"]
        ok_intent += c.intent == r["intent"]
        ok_urgency += c.urgency == r.get("urgency", "normal")
        ok_loc += c.location == r.get("location")
        if r["needs_ticket"]:
            n_service += 1
            ok_service += c.service_code == r["service_code"]
    return {
        "n": n,
        "needs_ticket": ok_ticket / n,
        "intent": ok_intent / n,
        "service_code": ok_service / max(1, n_service),
        "urgency": ok_urgency / n,
        "location": ok_loc / n,
    }


def held_out(config: Config, dev: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Trained without any dev-set message, evaluated on the whole dev set."""
    texts = {r["text"] for r in dev}
    base = [e for e in read_examples(TRAIN_FILE) if e.source != "dev" and e.text not in texts]
    return evaluate(train(base, config), dev)


def cross_validate(
    config: Config, dev: Sequence[dict[str, Any]], folds: int = 5, seed: int = 0
) -> dict[str, float]:
    """k-fold over the dev set: each fold is evaluated by a model trained on the training set and the other
    folds (never on itself); the figures are pooled over all dev messages."""
    import random

    idx = list(range(len(dev)))
    random.Random(seed).shuffle(idx)
    base = [e for e in read_examples(TRAIN_FILE) if e.source != "dev"]
    totals: dict[str, float] = {}
    n_reports = sum(1 for r in dev if r["needs_ticket"])
    for k in range(folds):
        test = [dev[i] for i in idx[k::folds]]
        held = {r["text"] for r in test}
        rest = [
            Example(dev[i]["text"], dev[i]["intent"], dev[i]["service_code"], "dev")
            for j in range(folds)
            if j != k
            for i in idx[j::folds]
            if dev[i]["text"] not in held
        ]
        model = train([e for e in base if e.text not in held] + rest, config)
        m = evaluate(model, test)
        n_fold_reports = sum(1 for r in test if r["needs_ticket"])
        for key, v in m.items():
            weight = n_fold_reports if key == "service_code" else len(test)
            totals[key] = totals.get(key, 0.0) + (v * weight if key != "n" else v)
    return {
        k: (v if k == "n" else v / (n_reports if k == "service_code" else len(dev)))
        for k, v in totals.items()
    }
