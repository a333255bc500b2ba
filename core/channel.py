"""A base for channels: the defaults of the `core.ports.Channel` Protocol, so a channel writes only what its
platform needs (start, stop, send_text, send_image) and declares its capabilities.

A channel turns its platform's events into `Message`s and hands them to the inbox; it sends only what the
Sender gives it. The router and the handlers never see platform objects.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

from core.ports import JSON, Capabilities, Inbox, Joined

if TYPE_CHECKING:
    from fastapi import APIRouter


class ChannelError(Exception):
    """A send failed on the platform (the Sender records it and may retry), or the channel cannot start."""


class BaseChannel(ABC):
    name: str = "channel"
    capabilities: Capabilities = Capabilities()

    def __init__(self, account: str) -> None:
        self.account = account  # the bot's own id on this channel: its messages are never handled

    @abstractmethod
    async def start(self, inbox: Inbox, joined: Joined | None = None) -> None:
        """Begin receiving; every message goes to `inbox`, a join (if the platform reports it) to `joined`.
        Returns once receiving has started."""

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def send_text(
        self, group: str, text: str, mentions: Sequence[str] = (), in_reply_to: str = ""
    ) -> None:
        """Say `text` in `group`, @-mentioning the given sender ids; `in_reply_to` is the id of the message it
        answers (empty when the bot speaks on its own), for platforms whose replies belong to a message."""

    @abstractmethod
    async def send_image(self, group: str, image: bytes, name: str = "image.png") -> None: ...

    def serves(self, group: str) -> bool:
        return True

    def history(self, group: str) -> Sequence[str]:
        return ()

    def routes(self) -> APIRouter | None:
        return None

    def health(self) -> JSON:
        return {"status": "up"}
