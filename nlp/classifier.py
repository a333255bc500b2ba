"""Intent, service and urgency: one trained lightweight model, the term lexicon, and rules where rules are right.

- features: TF-IDF over character 1-3-grams of the normalised text (digits folded, colloquial terms expanded by
  config/lexicon.yaml), side by side with a semantic vector of the message (nlp/semantic.py: a word table
  distilled from the product's embedding model), so that a phrasing never seen still lands near its meaning;
- intent: logistic regression over those features; service: a second one over reports only, blended with the
  configured service keywords (config/services.yaml), so a deployment that adds a service and its keywords is
  heard, and for a long message blended with the score of its opening clauses (`opening`); urgency: the
  danger concepts of nlp/extract.py, or a third model's probability of "urgent" at or above URGENT_CUTOFF (a missed danger is far worse than a false alarm: see docs/understanding.md);
- training rows: the template file (nlp/data/classify_train.jsonl), the hand-written varied file
  (classify_varied.jsonl: short chat), the hand-written letters (classify_letters.jsonl: residents' letters and
  group messages, questions typed as searches, thanks stories, written from the services' owner rules), the
  owner-boundary letters (classify_owners.jsonl: the labelling rules' boundaries, consequences after the
  problem), the real labelled messages (nlp/data/real/classify_real*.jsonl, weighted REAL_WEIGHT, measured out of fold:
  `out_of_fold`), a community's own file (config/classify_extra.jsonl) and the staff's corrections exported by `doorstep train`
  (DATA_DIR/classify_corrections.jsonl, weighted CORRECTION_WEIGHT); trained in about a second and saved in the
  data directory as plain arrays (no pickle), loaded at the next start while its inputs are unchanged;
- rules: slash commands are commands, ticket look-ups are questions (answered by handlers/status.py).

`load_classifier(config)` is the one entry point, used by the chat and by `doorstep classify` alike; it returns a
`LiveClassifier`: the next `classify --json` loads the model trained for the current corrections, and a running
bot swaps in the retrained one (bot/retrain.py: nightly, or when the file changes), without a code
change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from core.community import Service
from core.intent import INTENTS, Classification, Intent
from core.ports import ClassifierConfig as Config  # the config as the classifier reads it
from nlp.extract import (
    clean_description,
    complaint_asking_who,
    dangers,
    extract_place,
    names_problem,
    normalise,
    small_talk,
    thanks_for_help,
)
from nlp.semantic import TABLE as TERM_TABLE
from nlp.semantic import TermVectors, term_vectors

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parent / "data"
TRAIN_FILE = DATA / "classify_train.jsonl"
VARIED_FILE = DATA / "classify_varied.jsonl"
LETTERS_FILE = DATA / "classify_letters.jsonl"
OWNERS_FILE = DATA / "classify_owners.jsonl"
# The real labelled messages (tests/data/README.md): training rows since issue 11 part 7, measured out of fold by
# grouped cross-validation (bench/bench_real_cv.py, docs/understanding.md part 7)
REAL_DIR = DATA / "real"
REAL_FILES = tuple(
    REAL_DIR / f"classify_real{suffix}.jsonl"
    for suffix in ("", "_fresh", "_fresh2", "_fresh3", "_fresh4", "_fresh5", "_train6", "_fresh6")
)
REAL_WEIGHT = (
    3.0  # a real message counts as this many training rows (chosen by the grouped CV: 1, 3, 5 tried)
)
# the training files that ship with the code: the generated and hand-written ones, then the real messages
GENERATED_FILES = (TRAIN_FILE, VARIED_FILE, LETTERS_FILE, OWNERS_FILE)
BUNDLED = (*GENERATED_FILES, *REAL_FILES)
SERVICE_TERMS = DATA / "service_terms.yaml"
CORRECTIONS_NAME = "classify_corrections.jsonl"
REPORT_INTENTS: tuple[Intent, ...] = ("complaint", "hazard")
KEYWORD_WEIGHT = 0.3  # how much a configured keyword adds to the model's service probability
LATER_KEYWORD_SHARE = 0.25  # and a keyword that only comes after another service's (see `service_of`)
SEMANTIC_WEIGHT = 0.5  # scale of the semantic vector beside the (unit-norm) n-gram vector
CORRECTION_WEIGHT = 3.0  # a staff correction counts as this many training rows
REGULARISATION_C = 20.0  # inverse L2 strength of the intent and service heads
URGENCY_C = 0.3  # and of the urgency head: strongly regularised, see docs/understanding.md
OPENING_WEIGHT = 0.3  # share of a long message's service score decided by its opening (see `opening`)
OPENING_CLAUSES = 2
URGENT_CUTOFF = (
    0.7  # the urgency model's probability at or above which a report is urgent (docs/understanding.md)
)

PROMOTE_CUTOFF: float | None = None

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
            if isinstance(source, dict):  # a real message names its page
                out.append(real_example(d))
                continue
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


def real_example(d: dict[str, Any], weight: float = REAL_WEIGHT) -> Example:
    """A real labelled message as a training row: its intent, and for a report its owner and labelled urgency."""
    report = d["intent"] in REPORT_INTENTS
    return Example(
        d["text"], d["intent"], d.get("service_code"), "real", d.get("urgency") if report else None, weight
    )


# Who was asked and did nothing ("物业不管", "向物业反映", "城管也不管") says nothing about whose thing is broken: the
# service model must not read "物业" in "物业不清理垃圾" as a complaint about the property company's service.
_INACTION = re.compile(
    r"(?:向|跟|给|找|反映给|打电话给|告诉)?(?:物业公司|物业|物管|城管|社区|居委会|有关部门|相关部门|街道|保安)"
    r"(?:的人|工作人员)?(?:也|都|却|还是|一直|根本|从来)?(?:不管|不理|不清理|不处理|不作为|不修|不装|没人管|没人来|置之不理|"
    r"推诿|扯皮|两手一摊|说不归|反映|督促|来看|处理一下|负责)"
)


# The owner of a leak from the flat above (or next door) is the building: pipes, floors and waterproofing are
# shared parts, fixed through the property office (property_repair). It becomes the neighbour's matter
# (neighbor_dispute) only when the writer says the neighbour will not act: refuses the repair, will not open
# the door, agreed and did nothing (tests/data/README.md, the labelling rules). Words alone cannot carry this:
# "楼上" leans to neighbor_dispute in every phrasing, so the rule reads the two facts and decides between those
# two services only. An air conditioner's drip is the neighbour's own appliance, not a shared part.
_NEIGHBOUR_LEAK = re.compile(
    r"(?:楼上|隔壁|对门|邻居)(?:(?!空调)[^。！？!?\n]){0,16}(?:漏水|渗水|滴水|漏到|渗到|往下漏|往下滴|返水|漏下来|渗下来|泡)"
)
_NEIGHBOUR_REFUSES = re.compile(
    r"不让.{0,4}(?:进|修|查|看|上门)|不配合|不肯|拒绝|拒不|不理|不搭理|不管不顾|不了了之|不愿|推脱|推说|说了不听|"
    r"说不听|不承认|不认账|说不是.{0,4}问题|不赔|不给修|不修|不开门|没人开门|联系不上|找不到人|协商(?:无果|不成|未果)|"
    r"商量了?好几|说了好几次|说了几次|找了.{0,6}(?:多次|好几次|几次)|一直用|照样用|还在用|吵了|骂"
)


_LEAK_SERVICES = ("property_repair", "neighbor_dispute")


def leak_owner(text: str) -> str | None:
    """property_repair or neighbor_dispute for a leak from a neighbour's flat, None when the text tells none."""
    t = _INACTION.sub(
        " ", normalise(text).lower()
    )  # "物业不管" is the office's inaction, not the neighbour's
    if not _NEIGHBOUR_LEAK.search(t):
        return None
    return "neighbor_dispute" if _NEIGHBOUR_REFUSES.search(t) else "property_repair"


# The owner of discoloured tap water (tests/data/README.md, "Tap water"): the supply network up to the estate's
# meter (municipal_facility), unless the writer points to the building's or the estate's own part (its tank,
# pump room, risers) or says only their building has it. "我们小区的自来水是黄的" names where, not whose. The
# n-grams read "小区" and "家里" as the building's, so the rule decides whenever the words tell of such water.
_TAP_WATER = re.compile(
    r"(?:自来水|水龙头|放出来的水|流出来的水|出来的水|水质|自来水管)[^。！？!?\n]{0,16}"
    r"(?:黄|黑|浑|浊|泥|锈|红糖水|沙子|渣|异味|臭|污水|虫)"
    r"|水(?:就)?(?:是|都是|全是)?(?:黄|黑|浑|浑浊)的|水(?:发|变|变得)(?:黄|黑|浑)|黄泥水|黄水(?!河)|(?<!冒)黑水"
    r"|污水[^。！？!?\n]{0,4}(?:渗入|渗进|进入|流进|混进|混入)(?:了)?自来水"
)
_BUILDING_WATER = re.compile(
    r"水箱|二次供水|水泵|泵房|蓄水池|水池|楼顶|立管|楼里的(?:水)?管|楼内(?:的)?(?:水)?管"
    r"|只有(?:我们|我家|这)(?:这)?(?:栋|幢|单元|楼)|(?:别的|其他|隔壁)(?:楼|栋|单元)[^。！？!?\n]{0,4}(?:没事|正常|好好的|不黄)"
)


def tap_water_owner(text: str) -> str | None:
    """municipal_facility or property_repair for discoloured tap water, None when the text tells of none."""
    t = normalise(text)
    if not _TAP_WATER.search(t):
        return None
    return "property_repair" if _BUILDING_WATER.search(t) else "municipal_facility"


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


_CLAUSE = re.compile(r"[。！？!?；;，,\n]")


def opening(text: str) -> str | None:
    """The first clauses of a longer message, where a letter states its problem ("地库被水淹了，车都泡了"); the
    clauses after it tell what it led to, who did nothing and what is asked ("不让我们停车", "物业不管", "臭味影响生活"),
    and their words name other services. None when the message is no longer than its opening."""
    parts = [p.strip() for p in _CLAUSE.split(text) if p.strip()]
    if len(parts) <= OPENING_CLAUSES:
        return None
    head = "，".join(parts[:OPENING_CLAUSES])
    return head if len(head) >= 6 else None


def _vectoriser() -> TfidfVectorizer:
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=1)


class Features:
    """Text -> one sparse row: character n-gram TF-IDF beside the semantic vector (when the table is built).

    scikit-learn fits the vocabulary and the idf; the rows are built here (sublinear tf, idf, l2 norm, as
    TfidfVectorizer does), for one message without scikit-learn's per-call checks, and identically for a model
    just trained and one loaded from the cache."""

    def __init__(
        self,
        featurise: Featuriser,
        vectors: TermVectors | None,
        grams: dict[str, int] | None = None,
        idf: np.ndarray | None = None,
    ) -> None:
        self.featurise = featurise
        self.vectors = vectors
        self.grams: dict[str, int] = grams or {}
        self.idf = idf if idf is not None else np.zeros(0)
        self._analyse = _vectoriser().build_analyzer()

    @property
    def dim(self) -> int:
        return len(self.grams) + (self.vectors.dim if self.vectors is not None else 0)

    def fit(self, texts: Sequence[str]) -> Features:
        v = _vectoriser().fit([self.featurise(t) for t in texts])
        self.grams = {str(g): int(i) for g, i in v.vocabulary_.items()}
        self.idf = np.asarray(v.idf_, dtype=np.float64)
        return self

    def row(self, text: str, semantic: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(column indices, values) of the text's row; `semantic`: its vector if already computed."""
        grams = self.grams
        counts = [
            (grams[g], c) for g, c in Counter(self._analyse(self.featurise(text))).items() if g in grams
        ]
        idx = np.fromiter((i for i, _ in counts), dtype=np.int64, count=len(counts))
        tf = np.fromiter((c for _, c in counts), dtype=np.float64, count=len(counts))
        val = (1.0 + np.log(tf)) * self.idf[idx]
        norm = float(np.sqrt(val @ val))
        if norm > 0:
            val /= norm
        if self.vectors is None:
            return idx, val
        sem = semantic if semantic is not None else self.vectors(text)
        n = len(self.grams)
        return (
            np.concatenate([idx, np.arange(n, n + self.vectors.dim)]),
            np.concatenate([val, sem.astype(np.float64) * SEMANTIC_WEIGHT]),
        )

    def matrix(self, texts: Sequence[str]) -> sparse.csr_matrix:
        rows = [self.row(t) for t in texts]
        indptr = np.cumsum([0, *(len(i) for i, _ in rows)])
        idx = np.concatenate([i for i, _ in rows]) if rows else np.zeros(0, dtype=np.int64)
        val = np.concatenate([v for _, v in rows]) if rows else np.zeros(0)
        return sparse.csr_matrix((val, idx, indptr), shape=(len(rows), self.dim))


class Head:
    """One-vs-rest logistic regression over its own features, kept as plain arrays (one weight column per class):
    a message is scored with one small product, and the head is saved and loaded without pickle."""

    def __init__(
        self, features: Features, classes: Sequence[str], coef: np.ndarray, intercept: np.ndarray
    ) -> None:
        self.features = features
        self.classes = [str(c) for c in classes]
        self.coef = coef  # (features.dim, classes)
        self.intercept = intercept

    @classmethod
    def fit(
        cls,
        features: Features,
        texts: Sequence[str],
        labels: Sequence[str],
        weights: Sequence[float],
        strength: float | None = None,
    ) -> Head:
        x = features.fit(texts).matrix(texts)
        y = np.asarray(labels)
        classes = sorted(set(labels))
        coef, intercept = [], []
        for c in classes:
            # the dual solver: far fewer messages than n-gram columns, so it converges ~40x faster than the
            # primal one at the same optimum (measured: 0.014 s per class instead of 0.5 s)
            m = LogisticRegression(
                C=strength or REGULARISATION_C,
                class_weight="balanced",
                solver="liblinear",
                dual=True,
                max_iter=5000,
            )
            m.fit(x, (y == c).astype(int), sample_weight=np.asarray(weights, dtype=np.float64))
            coef.append(m.coef_[0])
            intercept.append(m.intercept_[0])
        return cls(features, classes, np.column_stack(coef), np.asarray(intercept))

    def scores(self, text: str, semantic: np.ndarray | None = None) -> dict[str, float]:
        idx, val = self.features.row(text, semantic)
        z = val @ self.coef[idx] + self.intercept
        p = 1.0 / (1.0 + np.exp(-z))
        p /= max(float(p.sum()), 1e-12)
        return dict(zip(self.classes, p.tolist(), strict=True))


class TrainedClassifier:
    """Implements core.intent.IntentClassifier: the three fitted heads, the configured keywords, the rules."""

    def __init__(
        self,
        intent_head: Head,
        service_head: Head,
        urgency_head: Head | None,
        services: Sequence[Service],
        vectors: TermVectors | None,
    ) -> None:
        self.intent_head = intent_head
        self.service_head = service_head
        self.urgency_head = urgency_head
        self.vectors = vectors
        self.services = list(services)
        codes = {s.service_code for s in self.services}
        hints = _service_terms()
        self.keywords: dict[str, list[str]] = {
            s.service_code: sorted({k.lower() for k in [*s.keywords, *hints.get(s.service_code, [])] if k})
            for s in self.services
        }
        self.service_classes = service_head.classes
        self.urgent_cutoff = URGENT_CUTOFF
        # the urgency model's probability at or above which a message the intent head reads as a question or talk
        # is a danger report all the same (None: never); see docs/understanding.md, part 7
        self.promote_cutoff: float | None = PROMOTE_CUTOFF
        self.fallback_service = "other" if "other" in codes else (self.service_classes[0] if codes else None)

    @classmethod
    def fit(
        cls,
        examples: Sequence[Example],
        lexicon: dict[str, str],
        services: Sequence[Service],
        *,
        semantic: bool = True,
    ) -> TrainedClassifier:
        vectors = term_vectors() if semantic else None
        codes = {s.service_code for s in services}
        for_intent = [e for e in examples if e.source != "service"]
        # the words' meaning helps to name the owner of a problem; whether a message is a report at all is carried
        # by its form (questions, thanks, notices), which the n-grams read better (measured: docs/understanding.md)
        intent_head = Head.fit(
            Features(Featuriser(lexicon), None),
            [e.text for e in for_intent],
            [e.intent for e in for_intent],
            [e.weight for e in for_intent],
        )
        reports = [e for e in examples if e.intent in REPORT_INTENTS and e.service_code in codes]
        # every configured service is learnable from its name, description and keywords alone
        seeds = [
            Example(f"{s.service_name} {s.description} {' '.join(s.keywords)}", "complaint", s.service_code)
            for s in services
        ]
        rows = [*reports, *seeds]
        service_head = Head.fit(
            Features(Featuriser(lexicon, drop_inaction=True), vectors),
            [e.text for e in rows],
            [str(e.service_code) for e in rows],
            [e.weight for e in rows],
        )
        labelled = [e for e in reports if e.urgency in ("urgent", "normal")]
        urgency_head = (
            Head.fit(
                Features(Featuriser(lexicon), vectors),
                [e.text for e in labelled],
                [str(e.urgency) for e in labelled],
                [e.weight for e in labelled],
                URGENCY_C,
            )
            if len({e.urgency for e in labelled}) == 2
            else None
        )
        return cls(intent_head, service_head, urgency_head, services, vectors)

    # --- the parts, also used by the evaluation ---------------------------------------------------------

    def semantic(self, text: str) -> np.ndarray | None:
        """The message's semantic vector, computed once and shared by the heads that read it."""
        return self.vectors(text) if self.vectors is not None else None

    def intent_scores(self, text: str) -> dict[str, float]:
        return self.intent_head.scores(text)

    def service_of(self, text: str, semantic: np.ndarray | None = None) -> tuple[str | None, float]:
        if not self.service_classes:
            return self.fallback_service, 0.0
        scores = self.service_head.scores(text, semantic)
        head = opening(normalise(text))
        if head is not None:
            first = self.service_head.scores(head)
            scores = {c: (1 - OPENING_WEIGHT) * p + OPENING_WEIGHT * first[c] for c, p in scores.items()}
        t = _INACTION.sub(" ", normalise(text).lower())
        # the keyword named first is usually the broken thing ("楼道灯坏了，晚上摔了一跤还被狗吓到"); a later service's
        # keyword tells what it led to or who else was there, so it adds only a share of the bonus
        first_at: dict[str, int] = {}
        for code in scores:
            hits = [t.find(k) for k in self.keywords.get(code, ()) if k and k in t]
            if hits:
                first_at[code] = min(hits)
        lead = min(first_at.values(), default=0)
        for code, at in first_at.items():
            scores[code] += KEYWORD_WEIGHT * (1.0 if at == lead else LATER_KEYWORD_SHARE)
        best = max(scores, key=lambda k: scores[k])
        owner = leak_owner(text) if best in _LEAK_SERVICES else None
        owner = tap_water_owner(text) or owner
        if owner in scores and owner != best:
            scores[owner], best = max(scores[owner], scores[best]), owner  # type: ignore[index]
        return best, float(min(1.0, scores[best]))

    def urgent_probability(self, text: str, semantic: np.ndarray | None = None) -> float:
        if self.urgency_head is None:
            return 0.0
        return self.urgency_head.scores(text, semantic).get("urgent", 0.0)

    def urgency(
        self,
        text: str,
        cutoff: float | None = None,
        *,
        semantic: np.ndarray | None = None,
        danger: bool | None = None,
    ) -> str:
        """Danger to people now: a danger concept in the words, or the urgency model at or above the cut-off."""
        if danger is None:
            danger = bool(dangers(text))
        cut = self.urgent_cutoff if cutoff is None else cutoff
        if danger or self.urgent_probability(text, semantic) >= cut:
            return "urgent"
        return "normal"

    # --- the interface ---------------------------------------------------------------------------------

    def classify(self, text: str) -> Classification:
        c = self._classify(text)
        return replace(c, names_problem=names_problem(text), small_talk=small_talk(text))

    def _classify(self, text: str) -> Classification:
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
        found = dangers(t)
        danger = bool(found)
        if intent not in REPORT_INTENTS and danger and report_p >= 0.25:
            intent = "hazard"  # danger to people now is a report even when phrased as a question
        elif intent == "question" and complaint_asking_who(t):
            intent = "complaint"  # a problem told, then "该找谁管？": the question is how to get it solved
        elif intent in REPORT_INTENTS and not danger and (small_talk(t) or thanks_for_help(t)):
            intent = "chitchat"  # thanks and talk ask for nothing: the chat's small_talk, in `classify` too
        semantic = None
        if intent in ("question", "chitchat") and self.promote_cutoff is not None:
            # intent and urgency judged together: a danger told as what happened ("有人从楼上摔下来了") or asked
            # about reads to the intent head as talk or a question; the urgency model, which learned the dangers,
            # may still call it one
            semantic = self.semantic(t)
            if self.urgent_probability(t, semantic) >= self.promote_cutoff:
                intent = "hazard"
        if intent not in REPORT_INTENTS:
            return Classification(
                intent=intent, location=location, confidence=confidence, description=clean_description(t)
            )
        if semantic is None:
            semantic = self.semantic(t)
        urgency = self.urgency(t, semantic=semantic, danger=danger)
        # a report's kind follows its urgency (hazard = danger to people now, as the real sets are labelled): the intent
        # head, trained with real dangers, also says "hazard" of ordinary reports that share their words (measured:
        # docs/understanding.md part 7)
        intent = "hazard" if urgency == "urgent" else "complaint"
        service, _ = self.service_of(t, semantic)
        if "not_seen" in found and "elderly_child_care" in self.service_classes:
            service = "elderly_child_care"  # someone to check on a person not seen: the community's carers
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
    return TrainedClassifier.fit(
        list(examples), config.lexicon.terms, config.services.services, semantic=semantic
    )


def corrections_file(config: Config) -> Path:
    """Where `doorstep train` writes the staff's corrections as training rows (in the data directory)."""
    return config.data_dir / CORRECTIONS_NAME


def _extra_file(config: Config) -> Path:
    return config.path.parent / "classify_extra.jsonl"


def training_files(config: Config) -> list[Path]:
    """The bundled template and varied sets, a community's own labelled file (config/classify_extra.jsonl) and the
    exported corrections, each if present."""
    candidates = (*BUNDLED, _extra_file(config), corrections_file(config))
    return [p for p in candidates if p.exists()]


# --- the trained model, cached on disk ---------------------------------------------------------------------
# Training takes a few seconds; a start (of `serve`, or of every `classify`) loads the model the data directory
# already holds when it was trained on exactly these inputs. The key covers everything the model depends on:
# the training rows (by content, so two data directories without corrections share a model), the lexicon, the
# services and their keywords, the word table, the code that featurises and fits, and the library versions.

MODELS_DIR = "models"
_CODE = tuple(
    Path(__file__).resolve().parent / name
    for name in ("classifier.py", "extract.py", "semantic.py", "intent.py")
)
_CODE_VERSION = 1  # bump when the saved format changes


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "-"


def model_key(config: Config) -> str:
    import scipy
    import sklearn

    h = hashlib.sha256()

    def part(label: str, value: str) -> None:
        h.update(f"{label}\0{value}\0".encode())

    part("format", str(_CODE_VERSION))
    part("versions", f"{np.__version__} {scipy.__version__} {sklearn.__version__}")
    for p in _CODE:
        part(p.name, _file_digest(p))
    part("table", _file_digest(TERM_TABLE))
    part("terms", _file_digest(SERVICE_TERMS))
    for label, p in (
        *((p.name, p) for p in BUNDLED),
        ("extra", _extra_file(config)),
        ("corrections", corrections_file(config)),
    ):
        part(label, _file_digest(p))
    part("lexicon", json.dumps(config.lexicon.terms, sort_keys=True, ensure_ascii=False))
    part(
        "services",
        json.dumps([s.model_dump() for s in config.services.services], sort_keys=True, ensure_ascii=False),
    )
    return h.hexdigest()


def model_path(config: Config, key: str) -> Path:
    return config.data_dir / MODELS_DIR / f"classifier-{key[:24]}.npz"


_HEADS = ("intent", "service", "urgency")


def save_model(model: TrainedClassifier, path: Path, key: str) -> None:
    """The heads as plain arrays (no pickle), written atomically; older models in the folder are removed."""
    arrays: dict[str, np.ndarray] = {"key": np.array(key)}
    for name, head in zip(_HEADS, (model.intent_head, model.service_head, model.urgency_head), strict=True):
        if head is None:
            continue
        terms = sorted(head.features.grams, key=head.features.grams.__getitem__)
        arrays[f"{name}.grams"] = np.array(terms, dtype=str)
        arrays[f"{name}.idf"] = head.features.idf
        arrays[f"{name}.classes"] = np.array(head.classes, dtype=str)
        arrays[f"{name}.coef"] = head.coef
        arrays[f"{name}.intercept"] = head.intercept
        arrays[f"{name}.flags"] = np.array(
            [head.features.featurise.drop_inaction, head.features.vectors is not None]
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with tmp.open("wb") as f:
        np.savez(f, allow_pickle=False, **arrays)
    os.replace(tmp, path)
    for old in path.parent.glob("classifier-*.npz"):
        if old != path:
            old.unlink(missing_ok=True)


def load_model(path: Path, key: str, config: Config) -> TrainedClassifier | None:
    """The saved model if it is there and was trained for `key`; None otherwise (then the caller trains)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            vectors = term_vectors()
            heads: list[Head | None] = []
            for name in _HEADS:
                if f"{name}.coef" not in z:
                    heads.append(None)
                    continue
                drop_inaction, semantic = (bool(v) for v in z[f"{name}.flags"])
                if semantic and vectors is None:
                    return None
                grams = {str(g): i for i, g in enumerate(z[f"{name}.grams"].tolist())}
                features = Features(
                    Featuriser(config.lexicon.terms, drop_inaction=drop_inaction),
                    vectors if semantic else None,
                    grams,
                    np.asarray(z[f"{name}.idf"], dtype=np.float64),
                )
                heads.append(
                    Head(
                        features,
                        z[f"{name}.classes"].tolist(),
                        np.asarray(z[f"{name}.coef"], dtype=np.float64),
                        np.asarray(z[f"{name}.intercept"], dtype=np.float64),
                    )
                )
    except (OSError, ValueError, KeyError) as e:  # a damaged file is retrained, not fatal
        log.warning("ignoring the saved classifier %s: %s", path, e)
        return None
    intent_head, service_head, urgency_head = heads
    if intent_head is None or service_head is None:
        return None
    return TrainedClassifier(intent_head, service_head, urgency_head, config.services.services, vectors)


_CACHE: dict[str, TrainedClassifier] = {}  # this process's models by key (a few: tests use several configs)
_CACHE_SIZE = 4
_CACHE_LOCK = threading.Lock()


def trained_for(config: Config) -> TrainedClassifier:
    """The model for this configuration and these training files: from memory, else from the data directory's
    saved model when its key matches, else trained (and saved)."""
    key = model_key(config)
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is not None:
            return model
        path = model_path(config, key)
        start = time.perf_counter()
        model = load_model(path, key, config)
        if model is not None:
            log.debug("classifier loaded from %s in %.2f s", path, time.perf_counter() - start)
        else:
            examples = [e for f in training_files(config) for e in read_examples(f)]
            model = train(examples, config)
            log.info("classifier trained on %d rows in %.1f s", len(examples), time.perf_counter() - start)
            try:
                save_model(model, path, key)
            except OSError as e:  # a read-only data directory costs a retrain next start, nothing else
                log.warning("could not save the classifier to %s: %s", path, e)
        _CACHE[key] = model
        while len(_CACHE) > _CACHE_SIZE:
            del _CACHE[next(iter(_CACHE))]
        return model


class LiveClassifier:
    """The classifier the bot and the CLI use: the trained model, swapped for a retrained one when its training
    files change (`doorstep train`, the nightly retrain). The app's tick asks `stale()` (a few stat calls) and
    calls `reload` in a worker thread (tickets/retrain.py), so the event loop never waits for training;
    messages are classified by the current model meanwhile."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._stamp = self._files_stamp()
        self.model = trained_for(config)
        self._lock = threading.Lock()

    def _files_stamp(self) -> tuple[tuple[str, int, int], ...]:
        out = []
        for p in (_extra_file(self.config), corrections_file(self.config)):
            try:
                st = p.stat()
                out.append((str(p), st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((str(p), 0, -1))
        return tuple(out)

    def stale(self) -> bool:
        """Whether a community or corrections file changed since the model was trained."""
        return self._files_stamp() != self._stamp

    def reload(self) -> TrainedClassifier:
        """Retrain (or load the saved model) now, in the calling thread, and swap it in."""
        with self._lock:
            self._stamp = self._files_stamp()  # before training: a change meanwhile is seen next time
            self.model = trained_for(self.config)  # one assignment: a message sees the old or the new model
            return self.model

    def classify(self, text: str) -> Classification:
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


def source_page(r: dict[str, Any]) -> str:
    src = r.get("source") or {}
    return str(src.get("url") or src.get("title") or r["id"])


def grouped_folds(rows: Sequence[dict[str, Any]], k: int) -> list[int]:
    """Fold of each row: whole pages, the pages with most dangers placed first, each on the fold with the fewest
    dangers so far (then the fewest rows): deterministic, dangers spread evenly, no page in two folds."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(source_page(r), []).append(i)

    def n_danger(idx: list[int]) -> int:
        return sum(rows[i].get("urgency") == "urgent" for i in idx)

    order = sorted(groups, key=lambda g: (-n_danger(groups[g]), -len(groups[g]), g))
    load = [[0, 0] for _ in range(k)]
    fold = [0] * len(rows)
    for g in order:
        f = min(range(k), key=lambda j: (load[j][0], load[j][1], j))
        load[f][0] += n_danger(groups[g])
        load[f][1] += len(groups[g])
        for i in groups[g]:
            fold[i] = f
    return fold


def out_of_fold(
    config: Config, rows: Sequence[dict[str, Any]], folds: int = 3, weight: float = REAL_WEIGHT
) -> dict[str, Any]:
    """The real rows measured out of fold: each fold by a model trained on the generated files plus the other folds'
    real rows (whole pages per fold, `grouped_folds`). Returns text -> Classification, for `evaluate`."""
    generated = [e for f in GENERATED_FILES for e in read_examples(f)]
    fold = grouped_folds(rows, folds)
    answers: dict[str, Any] = {}
    for k in range(folds):
        real = [real_example(r, weight) for r, g in zip(rows, fold, strict=True) if g != k]
        model = train([*generated, *real], config)
        answers.update(
            {r["text"]: model.classify(r["text"]) for r, g in zip(rows, fold, strict=True) if g == k}
        )
    return answers


def held_out(config: Config, dev: Sequence[dict[str, Any]], *, semantic: bool = True) -> dict[str, float]:
    """Trained without any dev-set message (the template file's dev rows are dropped), evaluated on the dev set."""
    texts = {r["text"] for r in dev}
    # the shipped training rows (generated and real) without the synthetic dev set's
    base = [e for f in BUNDLED for e in read_examples(f) if e.source != "dev" and e.text not in texts]
    return evaluate(train(base, config, semantic=semantic), dev)
