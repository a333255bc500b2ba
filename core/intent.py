"""What a message is: the classifier's result and the interface every classifier implements."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

Intent = Literal["question", "complaint", "hazard", "notice", "chitchat", "command"]
INTENTS: tuple[Intent, ...] = ("question", "complaint", "hazard", "notice", "chitchat", "command")
Urgency = Literal["normal", "urgent"]


@dataclass(frozen=True, slots=True)
class Classification:
    intent: Intent
    service_code: str | None = None
    location: str | None = None
    urgency: Urgency = "normal"
    needs_ticket: bool = False
    confidence: float = 1.0
    description: str = ""
    # what the words are, beyond the model's labels (nlp/extract.py), for reading a conversation
    names_problem: bool = False  # something is wrong now ("灯不亮"), not only a place or a fact
    small_talk: str = ""  # the whole message is thanks, a greeting, a goodbye, praise or "ok": its kind

    def contract_dict(self) -> dict[str, Any]:
        """The `classify --json` object of the contract."""
        d = asdict(self)
        return {k: d[k] for k in ("intent", "service_code", "location", "urgency", "needs_ticket")}


class IntentClassifier(Protocol):
    def classify(self, text: str) -> Classification: ...
