"""End to end on WeChat: a real Doorstep App with the Wechaty channel, against the official TypeScript Wechaty
puppet server (wechaty-puppet-service) serving the official mock puppet (wechaty-puppet-mock), started from
tests/wechaty/peer.mjs on a free loopback port. Residents, riders and staff speak through the mocker; what the
bot said comes back as room message events on the TS side.

Needs `npm ci --prefix tests/wechaty` (make test and .ci/run do it). Without node_modules these tests skip,
unless DOORSTEP_REQUIRE_WECHATY=1 (CI), where they fail.

Negative assertions ("the bot said nothing to that") never sleep: a sentinel message that is answered is sent
after it in the same room; replies in a room leave in order, so anything said to the first would come first.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import random
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import App, build_channel
from bot.clock import ManualClock
from bot.config import Config
from bot.runtime import build_app
from channels.wechaty.channel import WechatyChannel, WechatyStartError
from core.message import Message
from store.models import InboundMessage
from tests.wechaty.harness import Peer, free_port, missing_reason

ROOT = Path(__file__).resolve().parent.parent

_missing = missing_reason()
if _missing and os.environ.get("DOORSTEP_REQUIRE_WECHATY"):
    raise RuntimeError(f"DOORSTEP_REQUIRE_WECHATY is set but the WeChat peer cannot run: {_missing}")
pytestmark = [
    pytest.mark.wechaty,
    pytest.mark.skipif(_missing is not None, reason=_missing or ""),
]

BOT = "wxid_doorstep"
XF3, XF5, JM, RIDERS, NEW, HY = (
    "r_xf3@chatroom",
    "r_xf5@chatroom",
    "r_jm@chatroom",
    "r_rider@chatroom",
    "r_new@chatroom",
    "r_hy@chatroom",
)
WORLD: dict[str, Any] = {
    "bot": {"id": BOT, "name": "家门口助手"},
    "contacts": [
        {"id": "u_zhang", "name": "张阿姨"},
        {"id": "u_wang", "name": "王师傅"},
        {"id": "u_liu", "name": "刘大爷"},
        {"id": "r_chen", "name": "陈师傅（骑手）"},
        {"id": "s_li", "name": "李书记"},  # staff.yaml: 管理员, 社区工作者
        {"id": "s_zhao", "name": "赵网格员"},  # staff.yaml: 网格员 of 网格1 and 网格2
    ],
    "rooms": [
        {"id": XF3, "topic": "幸福里3号楼", "members": [BOT, "u_zhang", "u_wang", "s_li"]},
        {"id": XF5, "topic": "幸福里5号楼", "members": [BOT, "u_liu", "s_li"]},
        {"id": JM, "topic": "示例社区居民群", "members": [BOT, "u_zhang", "u_liu", "s_zhao"]},
        {"id": RIDERS, "topic": "示例社区骑手群", "members": [BOT, "r_chen", "u_wang", "s_zhao"]},
        {"id": HY, "topic": "焕玉里2号院", "members": [BOT, "u_wang"]},
        {"id": NEW, "topic": "幸福里7号楼邻里群", "members": ["u_zhang", "s_li"]},  # the bot is not in it yet
    ],
}
AT_BOT = "@家门口助手\u2005"
HELP_MARK = "我是家门口助手"


def png(width: int = 64, height: int = 48, seed: int = 1) -> bytes:
    """A picture of random pixels: its PNG does not compress, so `width * height * 3` is about its size."""
    from PIL import Image

    img = Image.frombytes("RGB", (width, height), random.Random(seed).randbytes(width * height * 3))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[Peer]:
    p = Peer(WORLD, tmp_path)
    await p.start()
    yield p
    await p.stop()


def wechat_config(config: Config, peer: Peer) -> Config:
    config.main.channels.wechaty_endpoint = peer.endpoint
    config.main.channels.wechaty_token = peer.token
    return config


def make_channel(config: Config) -> WechatyChannel:
    ch = build_channel(config, "wechaty")  # as `serve` builds it, from the config's channels block
    assert isinstance(ch, WechatyChannel)
    ch.backoff_initial = 0.2  # tests restart the server at once: no need to wait long between attempts
    ch.send_wait_seconds = 20
    return ch


@pytest.fixture
async def wx(
    config: Config,
    peer: Peer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
    clock: ManualClock,
) -> AsyncIterator[App]:
    """A real Doorstep App whose only channel is WeChat through the peer, on a manual clock (10:00 in Shanghai:
    no quiet hours, and the sender's pauses between messages pass at once)."""
    monkeypatch.setenv("DOORSTEP_INDEX", str(_index_dir(tmp_path_factory)))  # one index: ingested once
    cfg = wechat_config(config, peer)
    ch = make_channel(cfg)
    app = build_app(cfg, channels={"wechaty": ch}, clock=clock)
    await app.start()
    assert await ch.wait_logged_in(30), ch.health()
    yield app
    await app.stop()


_INDEX: list[Path] = []


def _index_dir(factory: pytest.TempPathFactory) -> Path:
    if not _INDEX:
        _INDEX.append(factory.mktemp("wechaty-index"))
    return _INDEX[0]


def channel_of(app: App) -> WechatyChannel:
    ch = app.channels["wechaty"]
    assert isinstance(ch, WechatyChannel)
    return ch


class Received:
    """An inbox that keeps what the channel delivered, for the receiving tests."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[Message] = asyncio.Queue()

    async def __call__(self, msg: Message) -> None:
        await self.messages.put(msg)

    async def next(self, timeout: float = 20.0) -> Message:
        return await asyncio.wait_for(self.messages.get(), timeout)


@pytest.fixture
async def channel_only(config: Config, peer: Peer) -> AsyncIterator[tuple[WechatyChannel, Received]]:
    """The channel alone against the peer, delivering to a recording inbox."""
    ch = make_channel(wechat_config(config, peer))
    inbox = Received()
    await ch.start(inbox)
    assert await ch.wait_logged_in(30), ch.health()
    yield ch, inbox
    await ch.stop()


async def say(peer: Peer, who: str, room: str, text: str, *, at_bot: bool = False) -> None:
    await peer.do(
        "say",
        **{
            "from": who,
            "room": room,
            "text": (AT_BOT + text) if at_bot else text,
            "mentions": [BOT] if at_bot else [],
        },
    )


# --- receiving ------------------------------------------------------------------------------------------


async def test_room_text_with_mention_sender_and_room(
    channel_only: tuple[WechatyChannel, Received], peer: Peer
) -> None:
    ch, inbox = channel_only
    await say(peer, "u_zhang", XF3, "电瓶车能推上楼充电吗", at_bot=True)
    m = await inbox.next()
    assert m.channel == "wechaty"
    assert m.group == "幸福里3号楼"  # the configured group whose name is the room's topic
    assert m.group_name == "幸福里3号楼"
    assert (m.sender, m.sender_name) == ("u_zhang", "张阿姨")
    assert m.text == "电瓶车能推上楼充电吗"  # the @mention is stripped
    assert m.mentions_bot and m.mentions == (BOT,)
    assert not m.private and not m.from_bot

    await say(peer, "u_liu", JM, "今天天气不错")
    m = await inbox.next()
    assert (m.group, m.text, m.mentions_bot) == ("示例社区居民群", "今天天气不错", False)


async def test_quoted_reply_carries_the_quoted_text(
    channel_only: tuple[WechatyChannel, Received], peer: Peer
) -> None:
    _, inbox = channel_only
    quoted = "「李书记：明天9点到12点停水，请提前储水」\n- - - - - - - - - - - - - - -\n这个几点开始？"
    await say(peer, "u_zhang", XF3, quoted)
    m = await inbox.next()
    assert m.text == "这个几点开始？"
    assert m.quoted == "明天9点到12点停水，请提前储水"


async def test_pictures_small_large_and_by_url(
    channel_only: tuple[WechatyChannel, Received], peer: Peer
) -> None:
    _, inbox = channel_only
    small = png(40, 40, seed=1)  # a few KB: the server sends it inline
    large = png(300, 300, seed=2)  # ~270 KB: over the server's 20 KB threshold, it arrives as a stream
    by_url = png(50, 50, seed=3)  # a URL FileBox (what CDN-backed puppets send)
    assert len(small) < 20 * 1024 < len(large)

    await peer.do("image", **{"from": "r_chen", "room": RIDERS, "name": "small.png", "base64": b64(small)})
    m = await inbox.next()
    assert len(m.images) == 1 and m.images[0].data == small and m.images[0].mime == "image/png"

    await peer.do("image", **{"from": "r_chen", "room": RIDERS, "name": "manhole.png", "base64": b64(large)})
    m = await inbox.next()
    assert m.images[0].data == large and m.images[0].name == "manhole.png"

    await peer.do(
        "image",
        **{"from": "r_chen", "room": RIDERS, "name": "cdn.png", "url": "/cdn.png", "base64": b64(by_url)},
    )
    m = await inbox.next()
    assert m.images[0].data == by_url and m.images[0].url.endswith("/cdn.png")


async def test_file_location_link_and_private_chat(
    channel_only: tuple[WechatyChannel, Received], peer: Peer
) -> None:
    _, inbox = channel_only
    pdf = b"%PDF-1.4\n" + random.Random(7).randbytes(30_000)
    await peer.do("file", **{"from": "s_li", "room": XF3, "name": "停水通知.pdf", "base64": b64(pdf)})
    m = await inbox.next()
    assert m.attachments[0].kind == "file" and m.attachments[0].data == pdf

    await peer.do(
        "location",
        **{
            "from": "r_chen",
            "room": RIDERS,
            "latitude": 39.1234,
            "longitude": 117.2001,
            "address": "天津市南开区宜景菜市场",
            "name": "宜景菜市场门口",
        },
    )
    m = await inbox.next()
    assert m.location is not None
    assert (round(m.location.lat, 4), round(m.location.lon, 4)) == (39.1234, 117.2001)
    assert "宜景菜市场" in m.location.address

    await peer.do(
        "link",
        **{
            "from": "u_wang",
            "room": HY,
            "title": "关于电动自行车停放的通知",
            "url": "https://example.org/notice/1",
            "description": "请勿在楼道停放",
        },
    )
    m = await inbox.next()
    assert m.attachments[0].kind == "link" and m.attachments[0].url == "https://example.org/notice/1"
    assert "电动自行车" in m.text

    await peer.do("say", **{"from": "s_li", "to": BOT, "text": "/通知 幸福里3号楼 明天停水"})
    m = await inbox.next()
    assert m.private and m.group == "s_li" and m.sender_name == "李书记"


async def test_topic_change_keeps_the_group_and_updates_its_name(
    channel_only: tuple[WechatyChannel, Received], peer: Peer
) -> None:
    _, inbox = channel_only
    await peer.do("topic", room=HY, topic="焕玉里2号院（新）", by="u_wang")
    await say(peer, "u_wang", HY, "改名了")
    m = await inbox.next()
    assert m.group == "焕玉里2号院"  # the same group for the router and the store
    assert m.group_name == "焕玉里2号院（新）"


# --- sending --------------------------------------------------------------------------------------------


async def test_send_text_with_mentions_and_pictures(
    channel_only: tuple[WechatyChannel, Received], peer: Peer
) -> None:
    ch, _ = channel_only
    await ch.send_text("幸福里3号楼", "3号楼门口井盖已修好，谢谢反映！", ["u_zhang", "u_wang"])
    said = await peer.next_said(XF3)
    assert said["mentions"] == ["u_zhang", "u_wang"]
    assert said["text"] == "@张阿姨\u2005@王师傅\u20053号楼门口井盖已修好，谢谢反映！"

    small = png(30, 30, seed=4)
    await ch.send_image("幸福里3号楼", small, "notice.png")
    said = await peer.next_said(XF3)
    assert said["type"] == "image" and said["file"]["size"] == len(small)

    # a 4.8 MB picture would exceed gRPC's 4 MB message limit as a base64 FileBox: it is shrunk to fit
    huge = png(1300, 1250, seed=5)
    assert len(huge) > 4 * 1024 * 1024
    await ch.send_image("幸福里3号楼", huge, "map.png")
    said = await peer.next_said(XF3)
    assert said["type"] == "image" and said["file"]["name"] == "map.jpg"
    assert 0 < said["file"]["size"] < 3 * 1024 * 1024


# --- the whole bot ----------------------------------------------------------------------------------------


async def test_mentioned_request_is_answered_in_the_room(wx: App, peer: Peer) -> None:
    await say(peer, "u_zhang", XF3, "帮助", at_bot=True)
    said = await peer.next_said(XF3)
    assert HELP_MARK in said["text"]
    assert said["mentions"] == ["u_zhang"] and said["text"].startswith("@张阿姨\u2005")
    with wx.store.session() as s:
        row = s.scalars(select(InboundMessage).where(InboundMessage.sender == "u_zhang")).one()
    assert (row.group_id, row.text, row.status) == ("幸福里3号楼", "帮助", "handled")


async def test_question_gets_a_cited_answer(wx: App, peer: Peer) -> None:
    await say(peer, "u_liu", XF5, "助老食堂几点开饭？", at_bot=True)
    said = await peer.next_said(XF5, timeout=60)
    assert said["mentions"] == ["u_liu"]
    # the answer names where it comes from
    assert re.search(r"来源|出处|依据|《.+》|第.+条|服务目录|办事指南|\.(?:csv|md|json|txt)", said["text"]), (
        said["text"]
    )


async def test_own_messages_and_unaddressed_chatter_are_ignored(wx: App, peer: Peer) -> None:
    ch = channel_of(wx)
    # the riders' group answers only when addressed or triggered (groups.yaml: respond: trigger)
    await say(peer, "r_chen", RIDERS, "今天单子好多，跑不过来了")
    await say(peer, "r_chen", RIDERS, "小门 帮助")
    said = await peer.next_said(RIDERS)
    assert HELP_MARK in said["text"]  # the first thing said there answers the sentinel, not the chatter
    # a resident group (respond: auto) does not answer small talk either
    await say(peer, "u_liu", JM, "哈哈今天天气真不错")
    await say(peer, "u_liu", JM, "帮助", at_bot=True)
    said = await peer.next_said(JM)
    assert HELP_MARK in said["text"]
    # the bot's own messages came back as message events and were dropped by the channel, not answered
    await peer.wait_until(lambda: ch.counts["own_filtered"] >= 2, 20, "the bot's own messages to come back")
    assert len(peer.said(RIDERS)) == 1 and len(peer.said(JM)) == 1
    assert ch.counts["received"] == 4


async def test_messages_during_a_slow_handler_are_not_lost(wx: App, peer: Peer) -> None:
    gate = asyncio.Event()
    original = wx.router.on_message

    async def slow(msg: Message, **kw: Any) -> Any:
        await gate.wait()
        return await original(msg, **kw)

    wx.router.on_message = slow  # type: ignore[method-assign]
    for text in ("帮助", "菜单", "功能"):
        await say(peer, "u_wang", HY, text, at_bot=True)
    await peer.wait_until(lambda: channel_of(wx).counts["received"] >= 3, 20, "three messages to arrive")
    assert peer.said(HY) == []
    gate.set()
    for _ in range(3):
        assert HELP_MARK in (await peer.next_said(HY))["text"]


async def test_private_chat_with_staff(wx: App, peer: Peer) -> None:
    await peer.do("say", **{"from": "s_li", "to": BOT, "text": "帮助"})
    said = await peer.next_said(to="s_li")
    assert HELP_MARK in said["text"] and said["mentions"] == []


async def test_added_to_a_new_group_greets_once(wx: App, peer: Peer) -> None:
    await peer.do("join", room=NEW, invitees=[BOT], by="s_li")
    greeting = await peer.next_said(NEW)
    assert "大家好" in greeting["text"] and "家门口助手" in greeting["text"]
    assert "/绑定" in greeting["text"]  # a group not in groups.yaml: staff are told how to bind it
    await peer.do("join", room=NEW, invitees=["u_liu"], by="s_li")  # someone else joins: no second greeting
    await say(peer, "u_zhang", NEW, "帮助", at_bot=True)
    assert HELP_MARK in (await peer.next_said(NEW))["text"]
    assert len(peer.said(NEW)) == 2


# --- tickets and notices ---------------------------------------------------------------------------------

TICKET = re.compile(r"(?:工单|编号|单号)[^0-9#]{0,8}#?\s*([0-9A-Za-z-]{1,20})|#(\d+)")


def ticket_no(text: str) -> str | None:
    m = TICKET.search(text)
    return (m.group(1) or m.group(2)) if m else None


@pytest.fixture
def open311(tmp_path: Path, config: Config, clock: ManualClock) -> Iterator[Any]:
    """The built-in GeoReport v2 backend on a loopback port, as the App's ticket backend (on the App's clock:
    an update is never stamped ahead of the bot's time)."""
    from backend import Backend
    from backend.testing import running_backend
    from bot.builtin_backend import backend_settings

    be = Backend(backend_settings(config, f"sqlite:///{tmp_path / 'open311.db'}"), now=clock.now)
    with running_backend(be) as url:
        config.main.tickets.open311_url = url
        config.main.tickets.api_key = config.api_keys[0]
        yield be
    be.engine.dispose()


async def test_hazard_report_with_photo_ticket_merge_and_closing(open311: Any, wx: App, peer: Peer) -> None:
    from store.models import Ticket

    photo = png(320, 240, seed=11)  # ~230 KB: arrives through the file stream
    await peer.do("image", **{"from": "r_chen", "room": RIDERS, "name": "manhole.png", "base64": b64(photo)})
    await say(peer, "r_chen", RIDERS, "小门 3号楼门口井盖松了，差点摔了")
    first = await peer.next_said(RIDERS, timeout=60)
    number = ticket_no(first["text"])
    assert number, first["text"]
    assert first["mentions"] == ["r_chen"]

    await say(peer, "u_zhang", XF3, "小门 3号楼门口的井盖松动了，有危险")
    second = await peer.next_said(XF3, timeout=60)
    assert ticket_no(second["text"]) == number and "合并" in second["text"], second["text"]

    def remote_id() -> str | None:
        with wx.store.session() as s:
            t = s.scalars(select(Ticket)).first()
            return t.remote_id if t is not None and t.sync == "sent" and t.remote_id else None

    rid = await peer.wait_until(remote_id, 60, "the ticket to reach the backend")  # the App's ticker sends it
    assert open311.get_request(rid).media_url  # the rider's WeChat photo went with the ticket

    open311.update_status(int(rid), "closed", "已更换井盖", "街道城管科")
    await wx.services.tickets.poll_once()
    await peer.wait_until(
        lambda: len(peer.said(RIDERS)) >= 2 and len(peer.said(XF3)) >= 2,
        60,
        "the rooms to be told the ticket is closed",
    )
    closed_riders, closed_xf3 = peer.said(RIDERS)[1], peer.said(XF3)[1]
    for said, who in ((closed_riders, "r_chen"), (closed_xf3, "u_zhang")):
        assert "处理完毕" in said["text"] and number in said["text"], said["text"]
        assert said["mentions"] == [who]  # each room's reporters are @mentioned there


async def test_staff_notice_reaches_exactly_the_targeted_rooms(wx: App, peer: Peer) -> None:
    await peer.do(
        "say",
        **{"from": "s_li", "to": BOT, "text": "/通知 幸福里3号楼 幸福里5号楼 明天9点到12点停水，请提前储水"},
    )
    preview = await peer.next_said(to="s_li", timeout=60)
    assert "幸福里3号楼" in preview["text"] and "幸福里5号楼" in preview["text"]
    if "确认" in preview["text"]:  # the broadcaster asks the staff member to confirm first
        await peer.do("say", **{"from": "s_li", "to": BOT, "text": "确认"})
    await peer.wait_until(lambda: peer.said(XF3) and peer.said(XF5), 60, "the notice in both rooms")
    assert "停水" in peer.said(XF3)[0]["text"] and "停水" in peer.said(XF5)[0]["text"]
    # the staff member hears back privately; the other rooms hear nothing (sentinels answered first)
    for room, who in ((JM, "u_liu"), (RIDERS, "r_chen"), (HY, "u_wang")):
        await say(peer, who, room, "帮助", at_bot=True)
        assert HELP_MARK in (await peer.next_said(room))["text"]
    assert len(peer.said(XF3)) == 1 and len(peer.said(XF5)) == 1


# --- lifecycle --------------------------------------------------------------------------------------------


async def test_survives_a_server_restart(config: Config, tmp_path: Path) -> None:
    port = free_port()
    first = Peer(WORLD, tmp_path, port=port)
    await first.start()
    cfg = wechat_config(config, first)
    ch = make_channel(cfg)
    app = build_app(cfg, channels={"wechaty": ch}, clock=ManualClock(), with_knowledge=False)
    await app.start()
    second: Peer | None = None
    try:
        assert await ch.wait_logged_in(30)
        await say(first, "u_zhang", XF3, "帮助", at_bot=True)
        assert HELP_MARK in (await first.next_said(XF3))["text"]
        # the send is complete on our side too: a reply still in flight when the server goes would be
        # retried after the reconnect (at least once, by design) and read below as the answer to 菜单
        await app.settle()

        await first.stop()  # the TS server goes away; the stream drops
        await first.wait_until(lambda: not ch.health()["connected"], 20, "the channel to notice")
        second = Peer(WORLD, tmp_path, port=port)  # and comes back on the same address, fresh
        await second.start()
        await second.wait_until(lambda: ch.health()["reconnects"] >= 1 and ch.logged_in, 30, "the reconnect")
        assert ch.health()["status"] == "up"

        await say(second, "u_wang", XF3, "菜单", at_bot=True)
        said = await second.next_said(XF3)
        assert HELP_MARK in said["text"] and said["mentions"] == ["u_wang"]
    finally:
        await app.stop()
        if second is not None:
            await second.stop()
        await first.stop()


async def test_scan_qr_code_then_login_in_health(config: Config, tmp_path: Path) -> None:
    peer = Peer(WORLD, tmp_path, scan=True)
    await peer.start()
    ch = make_channel(wechat_config(config, peer))
    try:
        await ch.start(Received())
        await peer.wait_until(lambda: ch.health()["scan"], 20, "the QR code")
        h = ch.health()
        assert h["status"] == "waiting for scan" and not h["logged_in"]
        assert h["scan"]["status"] == "waiting"
        assert h["scan"]["qrcode"] == "https://login.weixin.qq.com/l/doorstep-mock"
        assert h["scan"]["url"].startswith("https://wechaty.js.org/qrcode/")

        await peer.do("login")
        assert await ch.wait_logged_in(20)
        h = ch.health()
        assert h["status"] == "up" and h["user"] == {"id": BOT, "name": "家门口助手"} and h["scan"] is None

        await peer.do("logout")
        await peer.wait_until(lambda: not ch.logged_in, 20, "the logout")
        assert ch.health()["status"] == "logged out"
    finally:
        await ch.stop()
        await peer.stop()


async def test_wrong_token_is_a_clear_error_at_start(config: Config, peer: Peer) -> None:
    cfg = wechat_config(config, peer)
    cfg.main.channels.wechaty_token = "not-the-token"
    ch = make_channel(cfg)
    with pytest.raises(WechatyStartError, match="rejected the token"):
        await ch.start(Received())
    await ch.stop()


async def test_unreachable_endpoint_is_a_clear_error_at_start(config: Config) -> None:
    config.main.channels.wechaty_endpoint = f"127.0.0.1:{free_port()}"  # nothing listens there
    config.main.channels.wechaty_token = "any"
    ch = make_channel(config)
    with pytest.raises(WechatyStartError, match="cannot reach"):
        await ch.start(Received())
    await ch.stop()
