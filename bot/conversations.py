"""Open conversations: a handler that asked a follow-up question ("请问具体位置在哪里？") gets the same
person's next message in the same group, until a timeout (python-telegram-bot's ConversationHandler)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class Conversation:
    handler: str
    group: str
    sender: str
    expires_at: datetime
    state: dict[str, object] = field(default_factory=dict)


class Conversations:
    def __init__(self) -> None:
        self._open: dict[tuple[str, str], Conversation] = {}

    def open(
        self, handler: str, group: str, sender: str, now: datetime, timeout_s: float, state: dict[str, object]
    ) -> Conversation:
        conv = Conversation(handler, group, sender, now + timedelta(seconds=timeout_s), state)
        self._open[(group, sender)] = conv
        return conv

    def get(self, group: str, sender: str, now: datetime) -> Conversation | None:
        conv = self._open.get((group, sender))
        return conv if conv and conv.expires_at > now else None

    def close(self, group: str, sender: str) -> Conversation | None:
        return self._open.pop((group, sender), None)

    def expired(self, now: datetime) -> list[Conversation]:
        """Remove and return the conversations whose time is up."""
        gone = [c for c in self._open.values() if c.expires_at <= now]
        for c in gone:
            self._open.pop((c.group, c.sender), None)
        return gone

    def __len__(self) -> int:
        return len(self._open)
