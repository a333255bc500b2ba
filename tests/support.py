"""Test helpers shared by the suites: a recording channel and message builders."""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.channel import BaseChannel
from core.message import Attachment, Location, Message, utcnow
from core.ports import Inbox, Joined

_ids = itertools.count(1)


@dataclass
class Sent:
    group: str
    text: str
    mentions: tuple[str, ...] = ()
    image: bytes | None = None


class RecordingChannel(BaseChannel):
    """A channel whose platform is a list: what the bot sent, in order. Can be told to fail sends."""

    name = "rec"

    def __init__(self, account: str = "doorstep-bot", name: str = "rec") -> None:
        super().__init__(account)
        self.name = name
        self.sent: list[Sent] = []
        self.fail_next = 0
        self.inbox: Inbox | None = None

    async def start(self, inbox: Inbox, joined: Joined | None = None) -> None:
        self.inbox = inbox

    async def stop(self) -> None:
        self.inbox = None

    async def send_text(
        self, group: str, text: str, mentions: Sequence[str] = (), in_reply_to: str = ""
    ) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise ConnectionError("platform refused the send")
        self.sent.append(Sent(group, text, tuple(mentions)))

    async def send_image(self, group: str, image: bytes, name: str = "image.png") -> None:
        self.sent.append(Sent(group, f"[image {name}]", (), image))

    def texts(self, group: str | None = None) -> list[str]:
        return [s.text for s in self.sent if group is None or s.group == group]


@dataclass
class Say:
    """Builds messages as a given person in a given group would send them."""

    group: str = "幸福里3号楼"
    sender: str = "u_zhang"
    sender_name: str = "张师傅"
    channel: str = "rec"
    clock_now: object = field(default=None)

    def __call__(
        self,
        text: str,
        *,
        mention: bool = False,
        group: str | None = None,
        sender: str | None = None,
        sender_name: str | None = None,
        image: bytes | None = None,
        location: Location | None = None,
        private: bool = False,
        id: str | None = None,
        quoted: str = "",
        mentions: tuple[str, ...] = (),
    ) -> Message:
        return Message(
            id=id or f"t-{next(_ids)}",
            channel=self.channel,
            group=group or self.group,
            group_name=group or self.group,
            sender=sender or self.sender,
            sender_name=sender_name if sender_name is not None else self.sender_name,
            text=text,
            mentions=(("doorstep-bot",) if mention else ()) + mentions,
            mentions_bot=mention,
            attachments=(Attachment(kind="image", name="p.jpg", mime="image/jpeg", data=image),)
            if image
            else (),
            location=location,
            time=utcnow(),
            quoted=quoted,
            private=private,
        )


def documented_signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """The webhook signature written out from docs/tickets.md, independently of backend/webhooks.py:
    `X-Open311-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed with the shared secret>`."""
    message = str(timestamp).encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
