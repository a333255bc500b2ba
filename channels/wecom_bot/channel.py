"""The `wecom_bot` channel: the WeCom AI bot (企业微信智能机器人) in the community's internal staff groups.

Staff @ the bot in a WeCom group (or write to it 1:1); each message becomes a `Message` with the group's chatid
as its group and the staff member's Doorstep id as its sender (staff.yaml's `wecom_userid`), so roles work as on
every channel. What the bot says back answers that message with a stream reply: paragraphs appear frame by
frame (each frame replaces the content) and the stream finishes within the message's lifetime; a reply with no
open stream (an urgent alert, a summary, an answer later than the lifetime) is a proactive `aibot_send_msg`.

Pairing a reply with its message: a reply names the message it answers (`in_reply_to`, the Sender passes it), and
fills that message's stream; what the bot says on its own (a new group's greeting, a notice, an alert) is sent
proactively, so it never takes a stream meant for an answer (it did when the two raced). A second reply to one
message, or one later than the stream's lifetime, is sent proactively too. Callback mode cannot speak first: there a
reply with no open stream of its own fills the oldest open stream of the conversation.

Modes: `long_connection` (the default; no public URL) and `callback` (routes.py serves the URL; it can only
answer, so proactive sends need the long connection).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import httpx

from channels.wecom_bot.callback import BotCallback, StreamBook
from channels.wecom_bot.media import MediaError, fetch_media
from channels.wecom_bot.protocol import (
    STREAM_LIFETIME,
    AckError,
    Callback,
    LongConnection,
    NotConnected,
    WallClock,
    WecomBotError,
)
from channels.wecom_bot.settings import WecomBotSettings
from core.channel import BaseChannel, ChannelError
from core.message import Attachment, Message
from core.ports import JSON, Capabilities, Clock, CommunityConfig, Inbox, Joined

if TYPE_CHECKING:
    from fastapi import APIRouter

log = logging.getLogger(__name__)
MAX_FRAMES = 3  # a long answer appears in at most this many steps


@dataclass
class _Open:
    req_id: str
    received: datetime
    stream_id: str
    message_id: str  # the Message.id it answers


def stream_steps(text: str, frames: int = MAX_FRAMES) -> list[str]:
    """The contents of successive stream frames: growing prefixes of `text` cut at line ends, about evenly; the
    last is the whole text (each frame replaces what the previous one showed)."""
    ends = [m.start() for m in re.finditer(r"\n", text) if text[: m.start()].strip()]
    cuts: list[int] = []
    for k in range(1, frames):
        target = len(text) * k / frames
        after = [e for e in ends if e >= target and (not cuts or e > cuts[-1])]
        if after:
            cuts.append(after[0])
    return [*(text[:c].rstrip() for c in cuts), text]


class WecomBotChannel(BaseChannel):
    name = "wecom_bot"
    # stream replies carry no @mentions; pictures are not sent; staff also write to the bot 1:1
    capabilities = Capabilities(can_mention=False, can_send_images=False, private_chats=True)

    def __init__(
        self,
        settings: WecomBotSettings,
        *,
        staff: Mapping[str, tuple[str, str]] | None = None,
        known_groups: Sequence[str] = (),
        clock: Clock | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(f"wecom-bot:{settings.bot_id or 'callback'}")
        self.settings = settings
        self.staff = dict(staff or {})  # wecom userid -> (Doorstep staff id, name)
        self.clock: Clock = clock or WallClock()
        self.http = http or httpx.AsyncClient(timeout=15.0)
        self._known = set(known_groups)  # conversations this channel can reach
        self._open: dict[str, deque[_Open]] = {}
        self._inbox: Inbox | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.lifetime = timedelta(seconds=STREAM_LIFETIME)
        self.conn: LongConnection | None = None
        self.callback: BotCallback | None = None
        self.streams = StreamBook()
        if settings.mode == "callback":
            self.callback = BotCallback(settings.callback_token, settings.callback_aes_key)
        else:
            self.conn = LongConnection(
                settings.ws_url, settings.bot_id, settings.secret, self.on_callback, self.clock
            )

    @classmethod
    def from_config(
        cls, settings: WecomBotSettings, config: CommunityConfig, clock: Clock | None = None
    ) -> WecomBotChannel:
        staff = {s.wecom_userid: (s.id, s.name) for s in config.staff_list if s.wecom_userid}
        known = [g.id for g in config.group_list if g.channel == cls.name]
        return cls(settings, staff=staff, known_groups=known, clock=clock)

    # --- lifecycle

    async def start(self, inbox: Inbox, joined: Joined | None = None) -> None:
        self._inbox = inbox
        if self.conn is not None:
            try:
                await self.conn.start()
            except WecomBotError as e:
                raise ChannelError(str(e)) from None

    async def stop(self) -> None:
        if self.conn is not None:
            await self.conn.stop()
        await self.http.aclose()
        self._inbox = None

    # --- receiving

    def _text(self, raw: str) -> tuple[str, bool]:
        text, mentioned = raw, False
        for name in sorted(self.settings.names, key=len, reverse=True):
            pattern = re.compile(rf"@{re.escape(name)}[\s\u2005]*")
            if pattern.search(text):
                text, mentioned = pattern.sub("", text), True
        return text.strip(), mentioned

    async def on_callback(self, cb: Callback, *, stream_id: str = "") -> None:
        """One message from WeCom (long connection, or callback mode with its stream already opened)."""
        if self._inbox is None or not cb.msgid:
            return
        group = cb.conversation
        self._known.add(group)
        now = self.clock.now()
        if self.conn is not None or stream_id:
            q = self._open.setdefault(group, deque())
            q.append(
                _Open(cb.req_id, cb.received or now, stream_id or f"ds-{cb.msgid[-24:]}", f"wecom:{cb.msgid}")
            )
        sender, name = self.staff.get(cb.userid, (f"wecom:{cb.userid}", ""))
        text, _ = self._text(cb.text)
        attachments: list[Attachment] = []
        for i, img in enumerate(cb.images):
            try:
                data = await fetch_media(self.http, img.url, img.aeskey)
            except MediaError as e:
                log.warning("a WeCom picture could not be fetched: %s", e)
                continue
            attachments.append(
                Attachment(kind="image", name=f"{cb.msgid[-12:]}-{i}.jpg", mime="image/jpeg", data=data)
            )
        private = cb.chattype != "group"
        await self._inbox(
            Message(
                id=f"wecom:{cb.msgid}",
                channel=self.name,
                group=group,
                group_name=group,
                sender=sender,
                sender_name=name or cb.userid,
                text=text,
                # WeCom hands a group message to the bot only when it is @-mentioned
                mentions=(self.account,),
                mentions_bot=True,
                attachments=tuple(attachments),
                time=now,
                quoted=cb.quote,
                private=private,
            )
        )

    def accept(self, cb: Callback) -> str:
        """Callback mode: a message arrived at the URL. Its stream is opened now (the passive reply names it)
        and the message is handled without holding up WeCom's request, which wants an answer within a second."""
        sid = self.streams.open(cb.conversation, self.clock.now())
        task = asyncio.create_task(self.on_callback(cb, stream_id=sid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return sid

    # --- sending

    def _take_open(self, group: str, in_reply_to: str, *, any_open: bool) -> _Open | None:
        """The open stream this reply fills: the stream of the message it answers. What the bot says on its own
        (a greeting, a notice, an alert: no `in_reply_to`) takes none, unless `any_open` (callback mode, which
        cannot speak first): then a reply with no stream of its own fills the oldest open one."""
        q = self._open.get(group)
        if not q:
            return None
        now = self.clock.now()
        for stale in [o for o in q if now - o.received >= self.lifetime]:
            q.remove(stale)
            log.info("a WeCom stream in %s was not answered within its lifetime; dropped", group)
        found = next((o for o in q if in_reply_to and o.message_id == in_reply_to), None)
        if found is None and any_open and q:
            found = q[0]
        if found is not None:
            q.remove(found)
        return found

    async def send_text(
        self, group: str, text: str, mentions: Sequence[str] = (), in_reply_to: str = ""
    ) -> None:
        if self.callback is not None:
            o = self._take_open(group, in_reply_to, any_open=True)
            if o is None:
                raise ChannelError(
                    "callback mode can only answer a message; use the long connection to speak first"
                )
            self.streams.fill(o.stream_id, text)  # WeCom's next refresh callback reads it
            return
        assert self.conn is not None
        o = self._take_open(group, in_reply_to, any_open=False)
        try:
            if o is not None:
                try:
                    for i, step in enumerate(steps := stream_steps(text)):
                        await self.conn.respond_stream(
                            o.req_id, o.stream_id, step, finish=i == len(steps) - 1
                        )
                    return
                except AckError as e:  # past its lifetime after all, or refused: say it proactively
                    log.info("stream reply refused (%s); sending proactively", e)
            await self.conn.send_markdown(group, text)
        except (NotConnected, AckError, TimeoutError) as e:
            raise ChannelError(f"WeCom send to {group} failed: {e}") from None

    async def send_image(self, group: str, image: bytes, name: str = "image.png") -> None:
        log.info("pictures are not sent on the WeCom AI bot channel (%s to %s skipped)", name, group)

    def serves(self, group: str) -> bool:
        return group in self._known

    def routes(self) -> APIRouter | None:
        """Callback mode's URL (routes.py); the long connection needs none."""
        if self.callback is None:
            return None
        from channels.wecom_bot.routes import wecom_bot_router

        return wecom_bot_router(self)

    def health(self) -> JSON:
        if self.conn is not None:
            return self.conn.health()
        return {"status": "up", "mode": "callback"}
