"""The normalised message every channel produces and the replies every handler returns.

Channels translate their platform's events into `Message`; handlers never see platform objects.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

AttachmentKind = Literal["image", "file", "link"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def run_prefix() -> str:
    """A prefix for the message ids one channel numbers itself (simulator, console): unique to this run of
    the process, so the ids of a restarted process on the same store never repeat an earlier run's (the router
    would take them for resends). Milliseconds since the epoch in fixed-width hex first, so a later run's ids
    also sort after an earlier run's; then random bits for two runs started in the same millisecond."""
    return f"{int(time.time() * 1000):011x}{secrets.token_hex(3)}"


# "「家门口助手：已收到，工单号 #3…」 补充一下：…": a quote typed or pasted before the reply, as WeChat shows it
_INLINE_QUOTE = re.compile(
    r"^「(?P<who>[^「」：:\n]{1,32})[：:](?P<quoted>[^「」]*)」[\s\-—]*(?P<reply>\S[\s\S]*)$"
)


def split_quote(text: str) -> tuple[str, str]:
    """(reply, quoted text) of a message that starts with a quote, "「name：quoted」 reply"; (text, "") when it
    does not. The quoted person's name is dropped, as channels do."""
    m = _INLINE_QUOTE.match(text.strip())
    if m is None:
        return text, ""
    return m.group("reply").strip(), m.group("quoted").strip()


@dataclass(frozen=True, slots=True)
class Location:
    """A place sent as a location: coordinates (WeChat's location messages carry them), a place name, or both.
    A location picked by name only (the simulator without coordinates) has lat and lon None."""

    lat: float | None
    lon: float | None
    address: str = ""


@dataclass(frozen=True, slots=True)
class Attachment:
    kind: AttachmentKind
    name: str = ""
    mime: str = ""
    data: bytes | None = None
    url: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data or self.url.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Message:
    """One message as the router sees it, whatever channel it came from."""

    id: str
    channel: str
    group: str  # the group's stable id on its channel (the room id on WeChat, the name in the simulator)
    sender: str
    sender_name: str = ""
    text: str = ""
    group_name: str = ""
    mentions: tuple[str, ...] = ()
    mentions_bot: bool = False
    attachments: tuple[Attachment, ...] = ()
    location: Location | None = None
    time: datetime = field(default_factory=utcnow)
    quoted: str = ""  # text of a quoted message (引用), context for the handlers
    from_bot: bool = False
    private: bool = False  # a 1:1 chat with the bot rather than a group

    @property
    def images(self) -> tuple[Attachment, ...]:
        return tuple(a for a in self.attachments if a.kind == "image")

    @property
    def display_sender(self) -> str:
        return self.sender_name or self.sender


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler wants said. The throttled sender delivers it on the group's channel."""

    group: str
    text: str = ""
    mentions: tuple[str, ...] = ()  # sender ids to @mention
    image: bytes | None = None
    image_name: str = ""
    in_reply_to: str = ""  # the message id this answers
    channel: str = ""  # empty: the channel the group belongs to
    kind: str = "answer"  # answer | ack | notice | status | refusal | pointer | error

    def with_channel(self, channel: str) -> Reply:
        return Reply(
            group=self.group,
            text=self.text,
            mentions=self.mentions,
            image=self.image,
            image_name=self.image_name,
            in_reply_to=self.in_reply_to,
            channel=channel,
            kind=self.kind,
        )
