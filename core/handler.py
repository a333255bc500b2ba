"""Handlers: one class per kind of message, in the shape of python-telegram-bot's handlers and
NoneBot's matchers. A handler declares what it takes with a composable `Rule` and who may use it with a
`Permission`; the router asks `check` and calls `handle` on the first handler that takes the message.

Add a handler by writing one module with a class decorated by `@register` (core/registry.py) and its `usage`
text: the handlers in handlers/ are found by themselves, one elsewhere is named in the config's `plugins:`.
The router does not change, and 帮助 lists the new handler's usage.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel

from core.community import GroupConfig, GroupPolicy, StaffMember
from core.conversation import END, UNCHANGED, Conversation, Step
from core.intent import Classification, Intent
from core.message import Message, Reply
from core.ports import Services

if TYPE_CHECKING:
    from fastapi import APIRouter

M = TypeVar("M", bound=BaseModel)


@dataclass
class Context:
    """Everything a handler needs about one message."""

    message: Message
    text: str  # the message text with the @mention or trigger word removed
    classification: Classification
    policy: GroupPolicy
    group: GroupConfig | None
    staff: StaffMember | None
    services: Services
    addressed: bool  # @-mentioned, a trigger word, or a private chat
    # quiet hours (an unaddressed, non-urgent message): act, e.g. file the report, but say nothing before this
    quiet_until: datetime | None = None
    # the handler answered the question from the knowledge (the router then remembers it, for repeats)
    answered: bool = False

    @property
    def intent(self) -> Intent:
        return self.classification.intent

    def reply(
        self, text: str, *, kind: str = "answer", mention_sender: bool = True, image: bytes | None = None
    ) -> Reply:
        m = self.message
        return Reply(
            group=m.group,
            text=text,
            mentions=(m.sender,) if mention_sender and not m.private else (),
            image=image,
            in_reply_to=m.id,
            channel=m.channel,
            kind=kind,
        )


class Rule:
    """A predicate over a Context; `&`, `|` and `~` compose rules."""

    def __init__(self, fn: Callable[[Context], bool], name: str = "") -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "rule")

    def __call__(self, ctx: Context) -> bool:
        return bool(self.fn(ctx))

    def __and__(self, other: Rule) -> Rule:
        return Rule(lambda c: self(c) and other(c), f"({self.name} & {other.name})")

    def __or__(self, other: Rule) -> Rule:
        return Rule(lambda c: self(c) or other(c), f"({self.name} | {other.name})")

    def __invert__(self) -> Rule:
        return Rule(lambda c: not self(c), f"~{self.name}")


def intent_is(*intents: Intent) -> Rule:
    return Rule(lambda c: c.intent in intents, f"intent in {intents}")


def command(*names: str) -> Rule:
    """A slash command (`/通知 ...`) or its bare form (`通知 ...`) at the start of the text."""

    def match(c: Context) -> bool:
        t = c.text.lstrip("/／").strip()
        return any(t == n or t.startswith(n + " ") or t.startswith(n) for n in names)

    return Rule(match, f"command {names}")


def text_matches(*needles: str) -> Rule:
    return Rule(lambda c: any(n in c.text for n in needles), f"text has {needles}")


always = Rule(lambda c: True, "always")


class Permission:
    """Who may use a handler. A handler without one is open to everybody."""

    def __init__(self, *roles: str) -> None:
        self.roles = frozenset(roles)

    def __call__(self, ctx: Context) -> bool:
        return ctx.staff is not None and bool(self.roles & set(ctx.staff.roles))


class Handler(ABC):
    name: str = "handler"
    priority: int = 50  # lower runs first
    rule: Rule = always
    permission: Permission | None = None
    usage: str = ""  # one item of 帮助: what the handler does and how to ask for it ("": not listed)
    usage_rank: int = 50  # where the item stands in 帮助, lower first
    settings_model: type[BaseModel] | None = (
        None  # validates its block in the config's `handlers: {name: ...}`
    )

    def __init__(self, services: Services, settings: BaseModel | None = None) -> None:
        self.services = services
        self.settings = settings

    def settings_as(self, model: type[M]) -> M:
        """The handler's own settings, as its `settings_model` (the app validated them with it)."""
        if not isinstance(self.settings, model):
            raise TypeError(f"handler {self.name}: settings are not a {model.__name__}")
        return self.settings

    def routes(self) -> APIRouter | None:
        """HTTP routes the web shell mounts for this handler, or None."""
        return None

    def check(self, ctx: Context) -> bool:
        return self.rule(ctx)

    def permitted(self, ctx: Context) -> bool:
        return self.permission is None or self.permission(ctx)

    @abstractmethod
    async def handle(self, ctx: Context) -> list[Reply]: ...

    def claims(self, ctx: Context) -> bool:
        """Whether this message answers something the bot said and the store keeps (a quoted ticket
        acknowledgement, a satisfaction survey), or is a request the group's policy would not let through (an
        unaddressed 帮助): such a message goes to `handle` before the group's policy and the classifier,
        addressed or not."""
        return False

    async def observe(self, ctx: Context) -> None:
        """Sees every recorded message in a group, addressed or not, before the policy decides whether the
        bot speaks: e.g. a photo or a location sent just before the words of a report."""
        return None  # most handlers only see what is routed to them

    async def followup(self, ctx: Context, conv: Conversation) -> list[Reply] | None:
        """The next message of a conversation this handler opened (core/conversation.py).
        Return None to let the router treat the message as new."""
        return None

    async def expire(self, conv: Conversation) -> list[Reply]:
        """A conversation this handler opened reached its deadline."""
        return []

    def advance(self, msg: Message, step: Step, conv: Conversation | None = None) -> list[Reply] | None:
        """Apply a flow's step to the sender's conversation in the group: open, move or close it. Returns the
        step's replies, or None when the message was not part of the conversation (route it as new)."""
        convs = self.services.conversations
        if step.state == UNCHANGED:
            pass
        elif step.state == END:
            convs.close(msg.group, msg.sender)
        else:
            deadline = step.deadline or (conv.deadline if conv else None)
            if deadline is None:
                raise ValueError(f"{self.name}: a new conversation needs a deadline")
            data = step.data if step.data is not None else (conv.data if conv else {})
            convs.open(self.name, msg.group, msg.sender, state=step.state, deadline=deadline, data=data)
        return step.replies if step.taken else None
