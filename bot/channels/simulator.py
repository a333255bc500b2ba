"""The simulator channel: a real channel whose 'platform' is a web page (see bot/web/simulator.py).

Residents, riders and staff post through `POST /sim/messages`; the bot's replies are kept with the
residents' messages so the page (and tests) can read each group's conversation in order.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bot.channels.base import Channel, Inbox
from bot.config import Config
from bot.message import Attachment, Location, Message, run_prefix, utcnow


@dataclass
class SimEntry:
    message_id: str
    sender: str
    sender_name: str
    text: str
    time: str
    from_bot: bool
    mentions: list[str] = field(default_factory=list)
    image: bool = False
    location: dict[str, Any] | None = None

    def public(self) -> dict[str, Any]:
        return asdict(self)


class SimulatorChannel(Channel):
    name = "simulator"

    def __init__(self, account: str, bot_name: str = "家门口助手") -> None:
        super().__init__(account)
        self.bot_name = bot_name
        self._inbox: Inbox | None = None
        self._run = run_prefix()  # ids stay unique across restarts on the same store
        self._ids = itertools.count(1)
        self.groups: dict[str, list[SimEntry]] = {}
        self.names: dict[str, str] = {}  # sender id -> display name, for rendering @mentions

    @classmethod
    def from_config(cls, config: Config) -> SimulatorChannel:
        ch = cls(config.main.bot.account, config.main.bot.name)
        for g in config.groups.groups:
            ch.groups.setdefault(g.id, [])
        for s in config.staff.staff:
            ch.names[s.id] = s.name
        return ch

    def _next_id(self) -> str:
        return f"sim-{self._run}-{next(self._ids):06d}"

    async def start(self, inbox: Inbox) -> None:
        self._inbox = inbox

    async def stop(self) -> None:
        self._inbox = None

    async def post(
        self,
        group: str,
        sender: str,
        sender_name: str = "",
        text: str = "",
        mentions_bot: bool = False,
        image: bytes | None = None,
        image_mime: str = "image/jpeg",
        location: Location | None = None,
        private: bool = False,
    ) -> str:
        """A person posts in a group; returns the message id at once and routes the message in the background."""
        if self._inbox is None:
            raise RuntimeError("simulator channel is not started")
        mid = self._next_id()
        now = utcnow()
        if sender_name:
            self.names[sender] = sender_name
        attachments = (
            (Attachment(kind="image", name=f"{mid}.jpg", mime=image_mime, data=image),) if image else ()
        )
        self.groups.setdefault(group, []).append(
            SimEntry(
                mid,
                sender,
                sender_name or sender,
                text,
                now.isoformat(),
                False,
                [self.account] if mentions_bot else [],
                image is not None,
                asdict(location) if location else None,
            )
        )
        msg = Message(
            id=mid,
            channel=self.name,
            group=group,
            group_name=group,
            sender=sender,
            sender_name=sender_name,
            text=text,
            mentions=(self.account,) if mentions_bot else (),
            mentions_bot=mentions_bot,
            attachments=attachments,
            location=location,
            time=now,
            private=private,
        )
        await self._inbox(msg)  # the app's inbox only queues: the HTTP answer does not wait for the handler
        return mid

    async def send_text(self, group: str, text: str, mentions: Sequence[str] = ()) -> None:
        at = " ".join(f"@{self.names.get(m, m)}" for m in mentions)
        shown = f"{at} {text}" if at else text
        self.groups.setdefault(group, []).append(
            SimEntry(
                self._next_id(),
                self.account,
                self.bot_name,
                shown,
                utcnow().isoformat(),
                True,
                list(mentions),
            )
        )

    async def send_image(self, group: str, image: bytes, name: str = "image.png") -> None:
        self.groups.setdefault(group, []).append(
            SimEntry(
                self._next_id(),
                self.account,
                self.bot_name,
                f"[图片] {name}",
                utcnow().isoformat(),
                True,
                image=True,
            )
        )

    def messages(self, group: str, after: str | None = None) -> list[dict[str, Any]]:
        entries = self.groups.get(group, [])
        if after:
            idx = next((i for i, e in enumerate(entries) if e.message_id == after), None)
            entries = entries[idx + 1 :] if idx is not None else [e for e in entries if e.message_id > after]
        return [e.public() for e in entries]

    def health(self) -> dict[str, Any]:
        return {"status": "up", "groups": len(self.groups)}
