"""The `wecom_kf` channel: WeCom customer service (微信客服), 1:1 with any WeChat user.

A resident opens the chat from a QR code or link; each conversation is a private group
`kf:<open_kfid>:<external_userid>`, and the customer-service account's community (settings `accounts`) is the
community of all its conversations, so answers use that community's knowledge and reports go to its grid.

WeCom's callback (routes.py) only says that an account has news; the channel then pulls with sync_msg
(api.Puller: cursor and seen ids persisted in the data directory). Replies go out with send_msg while the
customer's 48-hour / 5-message window is open; the last reply the window allows says how to reopen it, and a
reply the window no longer allows is refused before WeCom sees it, logged and recorded as a failed delivery.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import httpx

from channels.wecom_bot.protocol import WallClock
from channels.wecom_kf.api import KfApi, KfApiError, KfAuthError, KfMessage, KfState, Puller
from channels.wecom_kf.callback import KfCallback
from channels.wecom_kf.settings import WecomKfSettings
from core.channel import BaseChannel, ChannelError
from core.message import Attachment, Location, Message
from core.ports import JSON, Capabilities, Clock, CommunityConfig, Inbox, Joined

if TYPE_CHECKING:
    from fastapi import APIRouter

log = logging.getLogger(__name__)
LAST_REPLY_NOTE = "\n\n（微信客服规定：您发消息后我最多能回复5条。如还有问题，请再发一条消息给我。）"
WINDOW_CLOSED = "微信客服会话窗口已关闭（超过48小时或已回复5条），等居民再发消息后才能回复"


def conversation(open_kfid: str, external_userid: str) -> str:
    return f"kf:{open_kfid}:{external_userid}"


class WecomKfChannel(BaseChannel):
    name = "wecom_kf"
    capabilities = Capabilities(can_mention=False, can_send_images=False, private_chats=True)

    def __init__(
        self,
        settings: WecomKfSettings,
        state_path: Path,
        *,
        clock: Clock | None = None,
        tz: tzinfo | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__("wecom-kf")
        self.settings = settings
        self.clock: Clock = clock or WallClock()
        self.api = KfApi(
            settings.corpid, settings.secret, self.clock, base_url=settings.api_base, client=http
        )
        self.state = KfState(state_path)
        self.puller = Puller(self.api, self.state, self._on_kf, tz or ZoneInfo("Asia/Shanghai"))
        self.callback = (
            KfCallback(settings.token, settings.encoding_aes_key, settings.corpid)
            if settings.token and settings.encoding_aes_key
            else None
        )
        self._inbox: Inbox | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._poller: asyncio.Task[None] | None = None
        self.refused: set[str] = set()  # replies the window no longer allowed
        self.errors = 0

    @classmethod
    def from_config(
        cls, settings: WecomKfSettings, config: CommunityConfig, clock: Clock | None = None
    ) -> WecomKfChannel:
        return cls(settings, config.data_dir / "wecom_kf" / "state.json", tz=config.tz, clock=clock)

    # --- lifecycle

    async def start(self, inbox: Inbox, joined: Joined | None = None) -> None:
        self._inbox = inbox
        try:
            await self.api.token()
        except KfAuthError as e:
            raise ChannelError(
                f"WeCom refused the 微信客服 credentials ({e}): check channels.wecom_kf.corpid and secret"
            ) from None
        except KfApiError as e:
            raise ChannelError(f"cannot reach the WeCom API at {self.settings.api_base}: {e}") from None
        for a in self.settings.accounts:  # what arrived while the bot was down
            self.pull(a.open_kfid)
        if self.settings.poll_seconds > 0:
            self._poller = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.api.close()
        self._inbox = None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _poll(self) -> None:
        while True:
            await self.clock.sleep(self.settings.poll_seconds)
            for a in self.settings.accounts:
                await self._pull(a.open_kfid, "")

    def pull(self, open_kfid: str, token: str = "") -> None:
        """Read what is new for an account (the callback's `kf_msg_or_event`), in the background."""
        self._spawn(self._pull(open_kfid, token))

    async def _pull(self, open_kfid: str, token: str) -> None:
        try:
            await self.puller.pull(open_kfid, token)
        except KfApiError as e:
            self.errors += 1
            log.warning("微信客服 sync_msg for %s failed: %s", open_kfid, e)

    async def settle(self) -> None:
        """Wait until the pulls under way are done (tests)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- receiving

    async def _on_kf(self, m: KfMessage) -> None:
        if self._inbox is None or m.msgtype == "event" or self.settings.account(m.open_kfid) is None:
            return
        attachments: tuple[Attachment, ...] = ()
        if m.msgtype == "image" and m.media_id:
            try:
                data = await self.api.media(m.media_id)
                attachments = (
                    Attachment(kind="image", name=f"{m.msgid[-16:]}.jpg", mime="image/jpeg", data=data),
                )
            except KfApiError as e:
                log.warning("a 微信客服 picture could not be fetched: %s", e)
        location = None
        if m.location is not None:
            address = " ".join(p for p in (m.location.name, m.location.address) if p)
            location = Location(m.location.latitude, m.location.longitude, address)
        group = conversation(m.open_kfid, m.external_userid)
        await self._inbox(
            Message(
                id=f"kf:{m.msgid}",
                channel=self.name,
                group=group,
                group_name=self.settings.account(m.open_kfid).name,  # type: ignore[union-attr]
                sender=f"wxkf:{m.external_userid}",
                sender_name="微信用户",
                text=m.text,
                mentions_bot=True,
                attachments=attachments,
                location=location,
                time=m.send_time,
                private=True,
            )
        )

    # --- sending

    async def send_text(
        self, group: str, text: str, mentions: Sequence[str] = (), in_reply_to: str = ""
    ) -> None:
        _, kfid, user = (group.split(":", 2) + ["", ""])[:3]
        if not group.startswith("kf:") or not user:
            raise ChannelError(f"{group!r} is not a 微信客服 conversation")
        ok, left = self.state.window_open(kfid, user, self.clock.now())
        if not ok:
            self.refused.add(hashlib.sha1(f"{group}|{text}".encode()).hexdigest())  # retries count once
            log.warning("微信客服 reply to %s not sent: %s", group, WINDOW_CLOSED)
            raise ChannelError(WINDOW_CLOSED)
        if left == 1:
            text += LAST_REPLY_NOTE
        # numbered by our replies to this customer: the sender's retry of a reply has the same msgid (WeCom
        # shows it once), two equal answers do not
        n = self.state.replies_sent(kfid, user)
        msgid = hashlib.sha1(f"{group}|{n}|{text}".encode()).hexdigest()[:32]
        try:
            await self.api.send_msg(user, kfid, text, msgid)
        except KfApiError as e:
            raise ChannelError(f"微信客服 send_msg to {group} failed: {e}") from None
        self.state.replied(kfid, user)

    async def send_image(self, group: str, image: bytes, name: str = "image.png") -> None:
        log.info("pictures are not sent on the 微信客服 channel (%s to %s skipped)", name, group)

    def serves(self, group: str) -> bool:
        parts = group.split(":")
        return len(parts) == 3 and parts[0] == "kf" and self.settings.account(parts[1]) is not None

    def routes(self) -> APIRouter | None:
        """The callback URL (routes.py), when a callback Token and EncodingAESKey are set."""
        if self.callback is None:
            return None
        from channels.wecom_kf.routes import wecom_kf_router

        return wecom_kf_router(self)

    def health(self) -> JSON:
        return {
            "status": "up",
            "accounts": len(self.settings.accounts),
            "refused_replies": len(self.refused),
            "sync_errors": self.errors,
        }
