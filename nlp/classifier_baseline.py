"""The previous classifier (character n-grams over the template training set, urgency by one phrase regex), kept
unchanged so that the benchmark (bench/bench_tickets.py) and the figures in docs/understanding.md can measure
it in the same run as the current one. Not used by the bot.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline

from core.community import Service
from core.intent import INTENTS, Classification, Intent
from core.ports import ClassifierConfig as Config  # the config as the classifier reads it
from nlp.extract import clean_description, extract_place, normalise

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


_URGENT = re.compile(
    r"着火|起火|失火|火灾|冒烟|冒黑烟|烧起来|烧着了|火苗|明火|燃气味|煤气味|天然气味|液化气味|漏气|燃气泄漏|煤气泄漏|"
    r"闻到.{0,4}(?:燃气|煤气|天然气)|电线(?:裸露|露出|露在|耷拉|掉下来|断了|垂下来|拖地)|裸露的电线|漏电|触电|电着|"
    r"冒火花|打火花|火花|井盖(?:没了|丢了|不见了|被偷|掀开|翻了|翻过来|塌了|掉下去|被撬|开着|敞着|碎了)|没有井盖|没盖井盖|"
    r"井口敞|掉井里|掉进去|路面塌陷|地面塌陷|塌了个大坑|塌方|水淹|被淹|淹了|漫进|倒灌|水漫|积水.{0,6}(?:膝盖|腰|很深|半米)|"
    r"困在电梯|困电梯|电梯(?:困人|关人|里有人|里面有人)|关在电梯|有人受伤|受伤了|流血|摇摇欲坠|要掉下来|快掉下来|"
    r"砸到人|砸伤|砸下来|坠落|掉下来.{0,4}(?:砸|人)|高空抛物|扔下来|救命|快来人|要倒了|咬伤|被狗咬|咬人了"
)


def urgency_of(text: str) -> str:
    return "urgent" if _URGENT.search(normalise(text)) else "normal"


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


class BaselineClassifier:
    """Implements core.intent.IntentClassifier."""

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


def train(examples: Iterable[Example], config: Config) -> BaselineClassifier:
    return BaselineClassifier(list(examples), config.lexicon.terms, config.services.services)


def load_baseline(config: Config) -> BaselineClassifier:
    """The previous model, trained on the bundled template file alone, as it was."""
    return train(read_examples(TRAIN_FILE), config)
