"""The simulator channel: a real channel whose 'platform' is a web page (its routes: channels/simulator/routes.py).

Residents, riders and staff post through `POST /sim/messages`; the bot's replies are kept with the
residents' messages so the page (and tests) can read each group's conversation in order. Like a real platform
the history outlives the bot: `serve` keeps it in `simulator/history.jsonl` in the data directory (one line a
message, written before the message is handed on), so a restarted bot still sees what it said before, and so
does the page.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.channel import BaseChannel
from core.message import Attachment, Location, Message, run_prefix, split_quote, utcnow
from core.ports import JSON, Capabilities, CommunityConfig, Inbox, Joined

if TYPE_CHECKING:
    from fastapi import APIRouter

log = logging.getLogger(__name__)
HISTORY_PER_GROUP = 5000  # the most recent messages of a group kept in memory (the file keeps them all)


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
    quoted: str = ""  # the text this message quotes (引用)

    def public(self) -> dict[str, Any]:
        return asdict(self)


class SimulatorChannel(BaseChannel):
    name = "simulator"
    capabilities = Capabilities(keeps_history=True, private_chats=True)

    def __init__(self, account: str, bot_name: str = "家门口助手", history: Path | None = None) -> None:
        super().__init__(account)
        self.bot_name = bot_name
        self.people: list[dict[str, str]] = []  # staff the page can post as (the residents are fixed)
        self._inbox: Inbox | None = None
        self._run = run_prefix()  # ids stay unique across restarts on the same store
        self._ids = itertools.count(1)
        self.groups: dict[str, list[SimEntry]] = {}
        self.names: dict[str, str] = {}  # sender id -> display name, for rendering @mentions
        self.history_file = history
        if history is not None:
            self._load(history)

    @classmethod
    def from_config(cls, config: CommunityConfig) -> SimulatorChannel:
        ch = cls(config.bot.account, config.bot.name, config.data_dir / "simulator" / "history.jsonl")
        for g in config.group_list:
            ch.groups.setdefault(g.id, [])
        for s in config.staff_list:
            ch.names[s.id] = s.name
            ch.people.append({"id": s.id, "name": s.name, "role": "、".join(s.roles)})
        return ch

    def _load(self, path: Path) -> None:
        if not path.exists():
            return
        data = path.read_bytes()
        for line in data[: data.rfind(b"\n") + 1].splitlines():  # a killed writer may leave half a line
            try:
                d = json.loads(line)
                self.groups.setdefault(d.pop("group"), []).append(SimEntry(**d))
            except (ValueError, TypeError, KeyError):
                log.warning("simulator history %s: skipped an unreadable line", path)
        for entries in self.groups.values():
            del entries[:-HISTORY_PER_GROUP]

    def _append(self, group: str, entry: SimEntry) -> None:
        entries = self.groups.setdefault(group, [])
        entries.append(entry)
        if len(entries) > HISTORY_PER_GROUP:
            del entries[: len(entries) - HISTORY_PER_GROUP]
        if self.history_file is not None:
            self.history_file.parent.mkdir(parents=True, exist_ok=True)
            with self.history_file.open("a", encoding="utf-8") as f:  # flushed on close: a kill keeps it
                f.write(json.dumps({"group": group, **entry.public()}, ensure_ascii=False) + "\n")

    def _next_id(self) -> str:
        return f"sim-{self._run}-{next(self._ids):06d}"

    async def start(self, inbox: Inbox, joined: Joined | None = None) -> None:
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
        quoted: str = "",
    ) -> str:
        """A person posts in a group; returns the message id at once and routes the message in the background.
        A quote typed before the words ("「家门口助手：…」 补充一下：…") is taken as a quoted reply, as WeChat's."""
        if self._inbox is None:
            raise RuntimeError("simulator channel is not started")
        if not quoted:
            text, quoted = split_quote(text)
        mid = self._next_id()
        now = utcnow()
        if sender_name:
            self.names[sender] = sender_name
        attachments = (
            (Attachment(kind="image", name=f"{mid}.jpg", mime=image_mime, data=image),) if image else ()
        )
        self._append(
            group,
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
                quoted,
            ),
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
            quoted=quoted,
            private=private,
        )
        await self._inbox(msg)  # the app's inbox only queues: the HTTP answer does not wait for the handler
        return mid

    async def send_text(
        self, group: str, text: str, mentions: Sequence[str] = (), in_reply_to: str = ""
    ) -> None:
        at = " ".join(f"@{self.names.get(m, m)}" for m in mentions)
        shown = f"{at} {text}" if at else text
        self._append(
            group,
            SimEntry(
                self._next_id(),
                self.account,
                self.bot_name,
                shown,
                utcnow().isoformat(),
                True,
                list(mentions),
            ),
        )

    async def send_image(self, group: str, image: bytes, name: str = "image.png") -> None:
        self._append(
            group,
            SimEntry(
                self._next_id(),
                self.account,
                self.bot_name,
                f"[图片] {name}",
                utcnow().isoformat(),
                True,
                image=True,
            ),
        )

    def messages(self, group: str, after: str | None = None) -> list[dict[str, Any]]:
        entries = self.groups.get(group, [])
        if after:
            idx = next((i for i, e in enumerate(entries) if e.message_id == after), None)
            entries = entries[idx + 1 :] if idx is not None else [e for e in entries if e.message_id > after]
        return [e.public() for e in entries]

    def history(self, group: str) -> list[str]:
        return [e.text for e in self.groups.get(group, []) if e.from_bot]

    def routes(self) -> APIRouter:
        from channels.simulator.routes import simulator_router  # FastAPI loads only where routes are mounted

        return simulator_router(self)

    def health(self) -> JSON:
        return {"status": "up", "groups": len(self.groups)}
