"""The WeCom protocol layers against the fake WeCom (tests/wecom_fake.py): the AI bot's long connection and its
callback mode, and the 微信客服 server API with its cursor, token and reply window. No Doorstep runtime here."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from channels.wecom_bot.callback import BotCallback, StreamBook
from channels.wecom_bot.media import fetch_media
from channels.wecom_bot.protocol import (
    STREAM_MAX_BYTES,
    AckError,
    AuthFailed,
    Callback,
    LongConnection,
    WecomBotError,
)
from channels.wecom_crypto import CallbackRejected
from channels.wecom_kf.api import KfApi, KfMessage, KfState, Puller
from channels.wecom_kf.callback import KfCallback
from tests.wecom_fake import FakeCrypt, FakeWecom, StepClock, aes_key, eventually

TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def clock() -> StepClock:
    return StepClock(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))


@pytest.fixture
async def fake(clock: StepClock) -> AsyncIterator[FakeWecom]:
    f = await FakeWecom(now=clock.now).start()
    yield f
    await f.stop()


class Bot:
    """A LongConnection with a list for an inbox."""

    def __init__(self, fake: FakeWecom, clock: StepClock, secret: str | None = None) -> None:
        self.got: list[Callback] = []

        async def on_callback(cb: Callback) -> None:
            self.got.append(cb)

        self.conn = LongConnection(
            fake.ws_url, fake.bot_id, secret if secret is not None else fake.bot_secret, on_callback, clock
        )


@pytest.fixture
async def bot(fake: FakeWecom, clock: StepClock) -> AsyncIterator[Bot]:
    b = Bot(fake, clock)
    await b.conn.start()
    yield b
    await b.conn.stop()


# --- long connection ------------------------------------------------------------------------------------------


async def test_subscribes_and_receives_a_group_message(fake: FakeWecom, bot: Bot) -> None:
    sub = fake.frames_of("aibot_subscribe")[0]
    assert sub["body"] == {"bot_id": fake.bot_id, "secret": fake.bot_secret}
    rid = await fake.push(
        "@家门口助手 电动车能在楼道充电吗", userid="lisi", chatid="wrkStaff1", quote="上一条"
    )
    cb = (await eventually("the callback", lambda: bot.got))[0]
    assert (cb.req_id, cb.chatid, cb.chattype, cb.userid, cb.msgtype) == (
        rid,
        "wrkStaff1",
        "group",
        "lisi",
        "text",
    )
    assert cb.text == "@家门口助手 电动车能在楼道充电吗" and cb.quote == "上一条"
    assert cb.conversation == "wrkStaff1"


async def test_stream_frames_replace_the_content_and_finish(fake: FakeWecom, bot: Bot) -> None:
    rid = await fake.push("@bot 问题")
    await eventually("the callback", lambda: bot.got)
    await bot.conn.respond_stream(rid, "s1", "第一段", finish=False)
    await bot.conn.respond_stream(rid, "s1", "第一段\n\n第二段", finish=True)
    st = fake.stream_for(rid)
    assert st is not None and st.content == "第一段\n\n第二段" and st.finish and st.frames == 2
    with pytest.raises(AckError):  # a finished stream takes no more frames: the fake refuses like WeCom
        await bot.conn.respond_stream(rid, "s1", "再来", finish=True)


async def test_stream_content_is_clipped_to_20kb_at_a_character_boundary(fake: FakeWecom, bot: Bot) -> None:
    rid = await fake.push("@bot 长")
    await eventually("the callback", lambda: bot.got)
    await bot.conn.respond_stream(rid, "s2", "条" * 10000, finish=True)  # 30000 bytes
    st = fake.stream_for(rid)
    assert st is not None and len(st.content.encode()) <= STREAM_MAX_BYTES and st.content.endswith("已省略）")
    assert not fake.refused


async def test_a_stream_past_the_messages_lifetime_is_refused(
    fake: FakeWecom, bot: Bot, clock: StepClock
) -> None:
    rid = await fake.push("@bot 慢")
    await eventually("the callback", lambda: bot.got)
    await clock.advance(7 * 60)
    with pytest.raises(AckError):
        await bot.conn.respond_stream(rid, "s3", "晚了", finish=True)
    await bot.conn.send_markdown("wrkSFfCgAAstaff", "晚了")  # speaking first still works
    assert fake.pushed[-1] == {
        "chatid": "wrkSFfCgAAstaff",
        "msgtype": "markdown",
        "markdown": {"content": "晚了"},
    }


async def test_wrong_secret_fails_at_start(fake: FakeWecom, clock: StepClock) -> None:
    b = Bot(fake, clock, secret="wrong")
    with pytest.raises(AuthFailed, match="DOORSTEP_WECOM_BOT_SECRET"):
        await b.conn.start()
    assert b.conn.state == "auth_failed"


async def test_unreachable_address_fails_at_start(clock: StepClock) -> None:
    async def nothing(cb: Callback) -> None: ...

    conn = LongConnection("ws://127.0.0.1:9/", "id", "secret", nothing, clock)
    with pytest.raises(WecomBotError, match="cannot reach"):
        await conn.start()


async def test_pings_every_30_seconds_and_a_silent_server_means_reconnect(
    fake: FakeWecom, bot: Bot, clock: StepClock
) -> None:
    await clock.advance(29)
    assert not fake.frames_of("ping")
    await clock.advance(1)
    await eventually("a ping", lambda: fake.frames_of("ping"))
    fake.answer_pings = False
    for n in (2, 3):
        await clock.advance(30)
        await eventually(f"ping {n}", lambda n=n: len(fake.frames_of("ping")) == n)
    assert bot.conn.connects == 1
    await clock.advance(30)  # two unanswered pings: the client closes the connection and reconnects after 1 s
    await eventually("the backoff", lambda: bot.conn.state == "reconnecting" and clock.sleeping())
    await clock.advance(1)
    await eventually("a new subscription", lambda: bot.conn.connects == 2 and bot.conn.state == "up")


async def test_reconnects_with_backoff_after_the_server_drops_the_socket(
    fake: FakeWecom, bot: Bot, clock: StepClock
) -> None:
    await fake.drop()
    await eventually("reconnecting", lambda: bot.conn.state == "reconnecting")
    assert fake.subscriptions == 1
    await clock.advance(1)
    await eventually("subscribed again", lambda: bot.conn.state == "up")
    assert fake.subscriptions == 2
    await fake.push("@bot 又连上了")
    await eventually("the callback after reconnecting", lambda: bot.got)
    # a server that stays away: 1, 2, 4 … seconds between attempts, capped at 30
    await fake.stop()
    await eventually("reconnecting", lambda: bot.conn.state == "reconnecting" and clock.sleeping())
    for delay in (1, 2, 4, 8, 16, 30, 30):
        await clock.advance(delay - 0.5)
        assert bot.conn.state == "reconnecting"
        before = len(fake.frames)
        await clock.advance(0.5)
        await eventually(
            f"the attempt after {delay} s", lambda: clock.sleeping() and bot.conn.state == "reconnecting"
        )
        assert len(fake.frames) == before  # nobody answered


async def test_kicked_by_another_connection_stops_with_a_clear_error(
    fake: FakeWecom, bot: Bot, clock: StepClock
) -> None:
    other = Bot(fake, clock)
    await other.conn.start()
    await eventually("the first connection kicked", lambda: bot.conn.state == "kicked")
    assert "disconnected_event" in bot.conn.error and bot.conn.health()["status"] == "down"
    await clock.advance(120)
    assert fake.subscriptions == 2 and other.conn.state == "up"  # the kicked one did not come back
    await other.conn.stop()


async def test_a_picture_in_a_private_chat_is_decrypted(fake: FakeWecom, bot: Bot) -> None:
    photo = b"\xff\xd8\xff\xe0 a jpeg" * 50
    await fake.push(image=photo, chattype="single", userid="wangwu")
    cb = (await eventually("the callback", lambda: bot.got))[0]
    assert cb.chattype == "single" and cb.conversation == "wangwu" and len(cb.images) == 1
    async with httpx.AsyncClient() as client:
        assert await fetch_media(client, cb.images[0].url, cb.images[0].aeskey) == photo


# --- callback mode ---------------------------------------------------------------------------------------------


def test_callback_mode_url_verification_messages_and_replies() -> None:
    token, key = "cbtoken", aes_key()
    ours, theirs = BotCallback(token, key), FakeCrypt(token, key, "")
    echo = theirs.encrypt("echo-12345")
    q = theirs.query(echo)
    assert ours.verify_url(q["msg_signature"], q["timestamp"], q["nonce"], echo) == "echo-12345"
    body = {"msgid": "m1", "chattype": "group", "chatid": "c1", "from": {"userid": "u1"}, "msgtype": "text"}
    body["text"] = {"content": "@bot 你好"}
    enc = theirs.encrypt(json.dumps(body))
    q = theirs.query(enc)
    got = ours.open(q["msg_signature"], q["timestamp"], q["nonce"], json.dumps({"encrypt": enc}).encode())
    assert got["text"]["content"] == "@bot 你好"
    sealed = ours.seal(
        {"msgtype": "stream", "stream": {"id": "s", "finish": False, "content": ""}}, q["timestamp"]
    )
    assert sealed["msgsignature"] == theirs.sign(str(sealed["timestamp"]), sealed["nonce"], sealed["encrypt"])
    assert json.loads(theirs.decrypt(sealed["encrypt"]))["stream"]["id"] == "s"


@pytest.mark.parametrize("tamper", ["signature", "ciphertext", "receive_id", "envelope"])
def test_callback_mode_rejects_what_does_not_check_out(tamper: str) -> None:
    token, key = "cbtoken", aes_key()
    ours = BotCallback(token, key)
    theirs = FakeCrypt(token, key, "wwsomeoneelse" if tamper == "receive_id" else "")
    enc = theirs.encrypt(json.dumps({"msgtype": "text"}))
    q = theirs.query(enc, bad_signature=tamper == "signature")
    if tamper == "ciphertext":
        enc = enc[:-8] + "AAAAAAA="
        q = theirs.query(enc)
    raw = b"not json" if tamper == "envelope" else json.dumps({"encrypt": enc}).encode()
    with pytest.raises(CallbackRejected):
        ours.open(q["msg_signature"], q["timestamp"], q["nonce"], raw)


def test_stream_book_answers_refreshes_and_always_finishes_in_time() -> None:
    t0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    book = StreamBook(lifetime=300)
    sid = book.open("chat1", t0)
    assert book.refresh(sid, t0 + timedelta(seconds=5))["stream"] == {
        "id": sid,
        "finish": False,
        "content": "",
    }
    assert book.waiting("chat1", t0 + timedelta(seconds=6)) == sid
    book.fill(sid, "答案")
    assert book.refresh(sid, t0 + timedelta(seconds=7))["stream"]["content"] == "答案"
    late = book.open("chat2", t0)
    assert book.waiting("chat2", t0 + timedelta(seconds=301)) is None
    assert book.refresh(late, t0 + timedelta(seconds=301))["stream"]["finish"] is True
    assert book.refresh("unknown", t0)["stream"]["finish"] is True


# --- 微信客服 ----------------------------------------------------------------------------------------------------


@pytest.fixture
async def kf(fake: FakeWecom, clock: StepClock) -> AsyncIterator[KfApi]:
    api = KfApi(fake.corpid, fake.kf_secret, clock, base_url=fake.api_url)
    yield api
    await api.close()


def _puller(api: KfApi, path: Path, into: list[KfMessage]) -> Puller:
    async def on_message(m: KfMessage) -> None:
        into.append(m)

    return Puller(api, KfState(path), on_message, TZ)


async def test_access_token_is_cached_renewed_before_expiry_and_after_a_refusal(
    fake: FakeWecom, kf: KfApi, clock: StepClock
) -> None:
    first = await kf.token()
    assert await kf.token() == first and kf.token_fetches == 1
    await clock.advance(7200 - 301)
    assert await kf.token() == first
    await clock.advance(2)
    assert await kf.token() != first and kf.token_fetches == 2  # renewed 5 minutes early
    fake.expire_tokens()  # WeCom invalidated it: the next call renews once and goes through
    fake.customer_says("wk1", "wm_a", "你好")
    page = await kf.sync_msg("wk1", "", "")
    assert page["msg_list"][0]["text"]["content"] == "你好" and kf.token_fetches == 3


async def test_wrong_corp_secret_is_an_auth_error(fake: FakeWecom, clock: StepClock) -> None:
    from channels.wecom_kf.api import KfAuthError

    api = KfApi(fake.corpid, "wrong", clock, base_url=fake.api_url)
    with pytest.raises(KfAuthError, match="40001"):
        await api.token()
    await api.close()


async def test_cursor_survives_a_restart_without_replaying_or_skipping(
    fake: FakeWecom, kf: KfApi, tmp_path: Path
) -> None:
    state = tmp_path / "kf.json"
    got: list[KfMessage] = []
    for i in range(3):
        fake.customer_says("wk1", "wm_a", f"第{i}条")
    assert await _puller(kf, state, got).pull("wk1", "tok") == 3
    fake.customer_says("wk1", "wm_a", "重启后的一条")
    again: list[KfMessage] = []
    assert await _puller(kf, state, again).pull("wk1") == 1  # a new process: same file
    assert [m.text for m in again] == ["重启后的一条"]
    assert json.loads(state.read_text())["wk1"]["cursor"] == "c4"


async def test_a_replayed_page_or_a_shuffled_one_neither_doubles_nor_drops(
    fake: FakeWecom, kf: KfApi, tmp_path: Path, clock: StepClock
) -> None:
    fake.page_size = 2
    got: list[KfMessage] = []
    puller = _puller(kf, tmp_path / "kf.json", got)
    for i in range(5):
        fake.customer_says("wk1", "wm_a", f"消息{i}")
        await clock.advance(1)
    fake.replay_next = True  # the first page is answered twice over the run
    fake.reverse_next = True
    await puller.pull("wk1")
    await puller.pull("wk1")
    fake.replay_next = True
    await puller.pull("wk1")  # an old cursor once more: nothing new, nothing again
    assert [m.text for m in got] == [f"消息{i}" for i in range(5)]


async def test_a_crash_after_handing_on_does_not_hand_on_twice(
    fake: FakeWecom, kf: KfApi, tmp_path: Path
) -> None:
    state = tmp_path / "kf.json"
    fake.customer_says("wk1", "wm_a", "一")
    fake.customer_says("wk1", "wm_a", "二")
    got: list[KfMessage] = []

    async def crash_on_second(m: KfMessage) -> None:
        if m.text == "二":
            raise RuntimeError("killed")
        got.append(m)

    with pytest.raises(RuntimeError):
        await Puller(kf, KfState(state), crash_on_second, TZ).pull("wk1")
    assert json.loads(state.read_text())["wk1"]["cursor"] == ""  # the page was not finished
    await _puller(kf, state, got).pull("wk1")
    assert [m.text for m in got] == ["一", "二"]


async def test_images_and_locations_come_in(fake: FakeWecom, kf: KfApi, tmp_path: Path) -> None:
    fake.customer_says("wk1", "wm_b", location=(39.16, 117.21, "幸福里小区", "天津市河西区幸福路3号"))
    fake.customer_says("wk1", "wm_b", image=b"jpegbytes")
    got: list[KfMessage] = []
    await _puller(kf, tmp_path / "kf.json", got).pull("wk1")
    loc, img = got
    assert loc.location is not None and loc.location.name == "幸福里小区" and loc.location.latitude == 39.16
    assert await kf.media(img.media_id) == b"jpegbytes"


async def test_reply_window_five_messages_within_48_hours(
    fake: FakeWecom, kf: KfApi, tmp_path: Path, clock: StepClock
) -> None:
    state = KfState(tmp_path / "kf.json")
    fake.customer_says("wk1", "wm_c", "你好")
    puller = Puller(kf, state, _ignore, TZ)
    await puller.pull("wk1")
    for i in range(5):
        ok, left = state.window_open("wk1", "wm_c", clock.now())
        assert ok and left == 5 - i
        await kf.send_msg("wm_c", "wk1", f"回复{i}")
        state.replied("wk1", "wm_c")
    assert state.window_open("wk1", "wm_c", clock.now()) == (False, 0)
    with pytest.raises(Exception, match="95018"):  # the fake keeps the rule independently
        await kf.send_msg("wm_c", "wk1", "第六条")
    fake.customer_says("wk1", "wm_c", "还有一个问题")
    await puller.pull("wk1")
    assert state.window_open("wk1", "wm_c", clock.now())[0]
    await clock.advance(48 * 3600)
    assert state.window_open("wk1", "wm_c", clock.now()) == (False, 0)
    assert KfState(tmp_path / "kf.json").window_open("wk1", "wm_c", clock.now() - timedelta(hours=1))[0]


async def _ignore(m: KfMessage) -> None:
    return None


def test_kf_callback_checks_and_opens_the_xml_envelope() -> None:
    token, key, corp = "kftoken", aes_key(), "wwfakecorp"
    ours, theirs = KfCallback(token, key, corp), FakeCrypt(token, key, corp)
    echo = theirs.encrypt("8211653945")
    q = theirs.query(echo)
    assert ours.verify_url(q["msg_signature"], q["timestamp"], q["nonce"], echo) == "8211653945"
    inner = (
        f"<xml><ToUserName><![CDATA[{corp}]]></ToUserName><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[kf_msg_or_event]]></Event><Token><![CDATA[ENCtok]]></Token>"
        "<OpenKfId><![CDATA[wkABC]]></OpenKfId></xml>"
    )
    enc = theirs.encrypt(inner)
    body = (
        f"<xml><ToUserName><![CDATA[{corp}]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>".encode()
    )
    q = theirs.query(enc)
    ev = ours.open(q["msg_signature"], q["timestamp"], q["nonce"], body)
    assert (ev.event, ev.token, ev.open_kfid) == ("kf_msg_or_event", "ENCtok", "wkABC")
    bad = theirs.query(enc, bad_signature=True)
    with pytest.raises(CallbackRejected):
        ours.open(bad["msg_signature"], bad["timestamp"], bad["nonce"], body)
    wrong_corp = FakeCrypt(token, key, "wwother")
    enc2 = wrong_corp.encrypt(inner)
    q2 = wrong_corp.query(enc2)
    with pytest.raises(CallbackRejected):
        ours.open(
            q2["msg_signature"], q2["timestamp"], q2["nonce"], body.replace(enc.encode(), enc2.encode())
        )
