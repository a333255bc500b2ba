"""The typed interface between the knowledge package and the rest of Doorstep."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Citation:
    source: str  # the ingested file's name, no directory
    title: str
    locator: str  # 第十五条, a heading, or a catalog entry's name
    text: str
    score: float

    def line(self) -> str:
        """The source line residents see: 来源：《物业管理条例》第四十二条"""
        return f"来源：《{self.title}》{self.locator}" if self.locator else f"来源：《{self.title}》"


@dataclass(slots=True)
class Answer:
    question: str
    found: bool
    answer: str
    citations: list[Citation] = field(default_factory=list)
    latency_ms: float = 0.0
    via: str = "extractive"  # faq | extractive | llm | none

    def contract_dict(self) -> dict[str, Any]:
        """The `ask --json` object of the contract."""
        return {
            "question": self.question,
            "found": self.found,
            "answer": self.answer,
            "citations": [asdict(c) for c in self.citations[:5]],
            "latency_ms": round(self.latency_ms, 2),
        }


class Answerer(Protocol):
    def answer(self, question: str, community: str | None = None) -> Answer: ...


class IndexUnavailable(Exception):
    """The index cannot be read just now (it was reopened and still failed); ask again later."""
