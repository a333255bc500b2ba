"""Conversations: a handler that asked something ("请问具体位置在哪里？", "请回复“确认”发送") gets the same
person's next message in the same group, until its deadline (python-telegram-bot's ConversationHandler).

A conversation is typed data: the handler that owns it, its state (a name from the handler's `Flow`), JSON
data, and ONE deadline. The store of conversations (`Conversations`, bot/conversations.py) keeps them in the
database, so a restart resumes an open conversation and its deadline still fires.

A `Flow` is the small state machine behind a conversation: its states, a transition table (state, event) ->
next state, and how long each state waits. `Flow.next` refuses a move the table does not have, so a flow can
only go where its table says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from core.message import Reply

END = "end"  # the state that closes a conversation
UNCHANGED = ""  # a step that leaves the conversation as it is (or absent)


@dataclass
class Conversation:
    handler: str
    group: str
    sender: str
    state: str
    deadline: datetime
    data: dict[str, object] = field(default_factory=dict)

    def get_int(self, key: str) -> int | None:
        v = self.data.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    def get_str(self, key: str) -> str:
        v = self.data.get(key)
        return v if isinstance(v, str) else ""


@dataclass
class Step:
    """What a flow says after one message: the replies, and where the conversation goes."""

    replies: list[Reply] = field(default_factory=list)
    state: str = END  # the next state; END closes the conversation, UNCHANGED leaves it
    deadline: datetime | None = None  # when the next state's wait ends; None keeps the current deadline
    data: dict[str, object] | None = None  # None keeps the current data
    taken: bool = True  # False: the message is not part of the conversation; the router routes it as new


class FlowError(ValueError):
    """A move the flow's transition table does not have."""


@dataclass(frozen=True)
class Flow:
    """States, a transition table and one wait per state."""

    name: str
    transitions: Mapping[tuple[str, str], str]  # (state, event) -> next state (END closes)
    waits: Mapping[str, float]  # state -> seconds until its deadline

    @property
    def states(self) -> frozenset[str]:
        return frozenset(s for s, _ in self.transitions) | frozenset(self.transitions.values())

    def next(self, state: str, event: str) -> str:
        try:
            return self.transitions[(state, event)]
        except KeyError:
            raise FlowError(f"flow {self.name}: no move from {state!r} on {event!r}") from None

    def deadline(self, state: str, now: datetime) -> datetime:
        return now + timedelta(seconds=self.waits[state])


class Conversations(Protocol):
    """The open conversations, one per (group, sender)."""

    def open(
        self,
        handler: str,
        group: str,
        sender: str,
        *,
        state: str,
        deadline: datetime,
        data: Mapping[str, object] | None = None,
    ) -> Conversation:
        """Open (or replace) the conversation of `sender` in `group`."""
        ...

    def get(self, group: str, sender: str, now: datetime) -> Conversation | None:
        """The open conversation, None when there is none or its deadline has passed."""
        ...

    def close(self, group: str, sender: str) -> None: ...

    def expired(self, now: datetime) -> list[Conversation]:
        """Remove and return the conversations whose deadline is over (each returned to one caller only)."""
        ...
