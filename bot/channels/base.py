"""The one small interface every channel implements (simulator, console, WeChat through Wechaty).

A channel turns its platform's events into `Message`s and hands them to the router through `Inbox`;
it sends what the throttled sender gives it. The router and the handlers never see platform objects.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bot.message import Message

Inbox = Callable[[Message], Awaitable[None]]


class ChannelError(Exception):
    """A send failed on the platform; the sender records it and may retry."""


class Channel(ABC):
    name: str = "channel"

    def __init__(self, account: str) -> None:
        self.account = account  # the bot's own id on this channel: its messages are never handled

    @abstractmethod
    async def start(self, inbox: Inbox) -> None:
        """Begin receiving; every message goes to `inbox`. Returns once receiving has started."""

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def send_text(self, group: str, text: str, mentions: Sequence[str] = ()) -> None:
        """Say `text` in `group`, @-mentioning the given sender ids."""

    @abstractmethod
    async def send_image(self, group: str, image: bytes, name: str = "image.png") -> None: ...

    def serves(self, group: str) -> bool:
        """Whether this channel can reach `group` (used for notices to groups that have not spoken yet)."""
        return True

    def health(self) -> dict[str, Any]:
        return {"status": "up"}
