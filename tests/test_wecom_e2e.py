"""The WeCom channels end to end, each case through the real pipeline (channel -> app inbox -> router ->
handlers -> desk/notices -> throttled sender -> channel) against the fake WeCom of tests/wecom_fake.py: the
AI bot's long connection for a staff group, 微信客服 for residents, and the simulator as the WeChat side. The
index is real (Chroma + BM25 over a two-section guide, hashed vectors so it builds in a moment), the ticket
backend is the built-in one on a loopback port, and time is the test's StepClock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from bot.app import App
from bot.config import AlertGroup, Config, SendLimits, load_config
from bot.web.app import create_web_app
from channels.simulator import SimulatorChannel
from channels.wecom_bot.channel import WecomBotChannel
from channels.wecom_bot.settings import WecomBotSettings
from channels.wecom_kf.channel import WecomKfChannel
from channels.wecom_kf.settings import KfAccount, WecomKfSettings
from knowledge.service import open_knowledge
from store.models import Delivery, InboundMessage, Notice, Ticket, TicketReport
from tests.conftest import TICKETS_API_KEY
from tests.knowledge_support import HashEncoder
from tests.wecom_fake import FakeCrypt, FakeWecom, StepClock, aes_key, eventually

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "tests" / "data" / "procs_knowledge"
STAFF_CHAT = "wrkSFfCgAAxingfu-staff"
KFID = "wk-xingfu"
KF_TOKEN = "kf-callback-token"
KF_KEY = aes_key()


@pytest.fixture
def clock() -> StepClock:  # overrides conftest's: the long connection's heartbeat waits on it
    return StepClock(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))  # 10:00 in Shanghai


@pytest.fixture
async def fake(clock: StepClock) -> AsyncIterator[FakeWecom]:
    f = await FakeWecom(now=clock.now).start()
    yield f
    await f.stop()


@pytest.fixture
def wcfg(
    data_dir: Path, backend: tuple[object, str], fake: FakeWecom, monkeypatch: pytest.MonkeyPatch
) -> Config:
    monkeypatch.setenv("DOORSTEP_OPEN311_URL", backend[1])
    monkeypatch.setenv("DOORSTEP_OPEN311_API_KEY", TICKETS_API_KEY)
    cfg = load_config(ROOT / "config" / "doorstep.yaml")
    m = cfg.main
    m.policy.quiet_hours = None
    m.policy.repeat_window_minutes = 0
    m.send_limits = SendLimits(group_per_minute=1000, account_interval_seconds=0, jitter_seconds=0)
    blocks = m.channels.model_extra
    assert blocks is not None
    blocks["wecom_bot"] = WecomBotSettings(
        bot_id=fake.bot_id, secret=fake.bot_secret, ws_url=fake.ws_url
    ).model_dump()
    blocks["wecom_kf"] = WecomKfSettings(
        corpid=fake.corpid,
        secret=fake.kf_secret,
        token=KF_TOKEN,
        encoding_aes_key=KF_KEY,
        api_base=fake.api_url,
        accounts=[KfAccount(open_kfid=KFID, community="示例社区", name="幸福里微信客服")],
    ).model_dump()
    m.tickets.alert_groups = [AlertGroup(group=STAFF_CHAT, channel="wecom_bot", community="示例社区")]
    m.knowledge_paths = [str(GUIDE)]
    for s in cfg.staff.staff:
        if s.id == "s_li":
            s.wecom_userid = "lishuji"
    return cfg


@dataclass
class Rig:
    app: App
    sim: SimulatorChannel
    bot: WecomBotChannel
    kf: WecomKfChannel
    web: httpx.AsyncClient

    async def settle(self, rounds: int = 3) -> None:
        for _ in range(rounds):
            await self.kf.settle()
            await self.app.settle()
            await self.app.tick()  # owed acknowledgements, alerts, notice deliveries
            await self.app.settle()


async def make_rig(cfg: Config, clock: StepClock, tmp: Path) -> Rig:
    sim = SimulatorChannel.from_config(cfg)
    blocks = cfg.main.channels.model_extra or {}
    bot = WecomBotChannel.from_config(WecomBotSettings.model_validate(blocks["wecom_bot"]), cfg, clock=clock)
    kf = WecomKfChannel.from_config(WecomKfSettings.model_validate(blocks["wecom_kf"]), cfg, clock=clock)
    knowledge = open_knowledge(cfg, index_dir=tmp / "index", encoder=HashEncoder())
    app = App(
        cfg, clock=clock, channels={"simulator": sim, "wecom_bot": bot, "wecom_kf": kf}, knowledge=knowledge
    )
    await app.start(background=False)
    web = httpx.AsyncClient(
        transport=httpx.ASGITransport(create_web_app(app, manage_lifecycle=False)), base_url="http://doorstep"
    )
    return Rig(app, sim, bot, kf, web)


@pytest.fixture
async def rig(wcfg: Config, clock: StepClock, tmp_path: Path) -> AsyncIterator[Rig]:
    r = await make_rig(wcfg, clock, tmp_path)
    yield r
    await r.web.aclose()
    await r.app.stop()


async def finished_stream(fake: FakeWecom, rid: str, rig: Rig) -> str:
    async def done() -> str:
        while True:
            await rig.app.settle()
            st = fake.stream_for(rid)
            if st is not None and st.finish:
                return st.content
            await asyncio.sleep(0.01)

    return await asyncio.wait_for(done(), 20)


async def kf_notify(fake: FakeWecom, rig: Rig, **kw: object) -> httpx.Response:
    return await fake.kf_notify(
        rig.web, "/wecom/kf/callback", FakeCrypt(KF_TOKEN, KF_KEY, fake.corpid), KFID, **kw
    )  # type: ignore[arg-type]


def kf_texts(fake: FakeWecom, user: str) -> list[str]:
    return [s.text for s in fake.kf_sent if s.touser == user]


# --- the staff side: WeCom AI bot -------------------------------------------------------------------------------


async def test_staff_question_in_a_wecom_group_gets_a_cited_stream_reply(fake: FakeWecom, rig: Rig) -> None:
    rid = await fake.push("@家门口助手 电动自行车能在楼道里充电吗？", userid="lishuji", chatid=STAFF_CHAT)
    content = await finished_stream(fake, rid, rig)
    assert "充电棚" in content and "来源：《进程测试社区指南》" in content, content
    assert not fake.pushed and not fake.refused  # answered in the message's own stream, nothing refused
    with rig.app.store.session() as s:
        row = s.scalars(select(InboundMessage).where(InboundMessage.channel == "wecom_bot")).one()
    assert row.sender == "s_li" and row.group_id == STAFF_CHAT  # the WeCom user is the staff member


async def test_what_the_bot_says_on_its_own_never_takes_the_stream_of_a_question(
    fake: FakeWecom, rig: Rig
) -> None:
    """A new group's greeting (or a notice, an alert) raced the answer for the question's stream and won whenever
    the answer took a little longer: the staff member saw the greeting where the answer belonged."""
    rid = await fake.push("@家门口助手 电动自行车能在楼道里充电吗？", userid="lishuji", chatid=STAFF_CHAT)

    async def opened() -> None:
        while not rig.bot._open.get(STAFF_CHAT):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(opened(), 20)
    await rig.bot.send_text(
        STAFF_CHAT, "【通知】明天9点到12点停水"
    )  # said on its own, while the question waits
    content = await finished_stream(fake, rid, rig)
    assert "来源：《进程测试社区指南》" in content and "停水" not in content, content
    assert any("停水" in json.dumps(p, ensure_ascii=False) for p in fake.pushed)  # sent proactively instead


async def test_a_long_answer_is_streamed_in_steps_each_replacing_the_last(fake: FakeWecom, rig: Rig) -> None:
    rid = await fake.push("@家门口助手 帮助", userid="lishuji", chatid=STAFF_CHAT)
    content = await finished_stream(fake, rid, rig)
    frames = [f for f in fake.frames_of("aibot_respond_msg") if f["headers"]["req_id"] == rid]
    shown = [f["body"]["stream"]["content"] for f in frames]
    assert len(frames) > 1 and shown[-1] == content and all(content.startswith(s.rstrip()) for s in shown)
    assert [f["body"]["stream"]["finish"] for f in frames] == [False] * (len(frames) - 1) + [True]


async def test_staff_notice_from_wecom_reaches_the_targeted_wechat_groups(fake: FakeWecom, rig: Rig) -> None:
    rid = await fake.push(
        "@家门口助手 /通知 网格3 明天9点到12点停水，请提前储水", userid="lishuji", chatid=STAFF_CHAT
    )
    assert "确认" in await finished_stream(fake, rid, rig)
    rid = await fake.push("@家门口助手 确认", userid="lishuji", chatid=STAFF_CHAT)
    assert "已确认" in await finished_stream(fake, rid, rig)
    await rig.settle()
    reached = {
        g for g, entries in rig.sim.groups.items() if any("明天9点到12点停水" in e.text for e in entries)
    }
    assert reached == {"幸福里3号楼", "幸福里5号楼"}  # 网格3's groups, on the WeChat side
    with rig.app.store.session() as s:
        notice = s.scalars(select(Notice)).one()
    assert notice.origin_channel == "wecom_bot" and notice.created_by == "s_li"


async def test_a_resident_in_wecom_gets_no_staff_command(fake: FakeWecom, rig: Rig) -> None:
    rid = await fake.push("@家门口助手 /通知 网格3 明天停水", userid="someone-else", chatid=STAFF_CHAT)
    assert "确认" not in await finished_stream(fake, rid, rig)
    await rig.settle()
    assert not any("明天停水" in e.text for e in rig.sim.groups["幸福里3号楼"])


async def test_an_urgent_report_in_a_wechat_group_alerts_the_staff_wecom_group(
    fake: FakeWecom, rig: Rig
) -> None:
    await rig.sim.post("幸福里3号楼", "u_zhang", "张师傅", "3号楼门口电线裸露还在冒火花，太危险了")
    await rig.settle()
    assert any("工单号" in e.text for e in rig.sim.groups["幸福里3号楼"])
    (alert,) = [p for p in fake.pushed if p["chatid"] == STAFF_CHAT]
    text = alert["markdown"]["content"]
    assert "紧急工单" in text and "电线裸露" in text and "来源：模拟群" in text, text


async def test_reconnects_after_the_server_drops_the_socket(
    fake: FakeWecom, rig: Rig, clock: StepClock
) -> None:
    await fake.drop()
    await eventually("reconnecting", lambda: rig.bot.health()["state"] == "reconnecting")
    assert rig.app.health()["parts"]["channels"]["wecom_bot"]["status"] == "down"
    await clock.advance(1)
    await eventually("subscribed again", lambda: rig.bot.health()["status"] == "up")
    rid = await fake.push("@家门口助手 助老食堂几点开饭？", userid="lishuji", chatid=STAFF_CHAT)
    assert "11:00" in await finished_stream(fake, rid, rig)


# --- the resident side: 微信客服 ---------------------------------------------------------------------------------


async def test_a_residents_question_gets_a_cited_answer_and_a_report_a_ticket(
    fake: FakeWecom, rig: Rig
) -> None:
    fake.customer_says(KFID, "wm_resident", "助老食堂几点开饭？")
    assert (await kf_notify(fake, rig)).text == "success"
    await rig.settle()
    (answer,) = kf_texts(fake, "wm_resident")
    assert "11:00" in answer and "来源：《进程测试社区指南》" in answer, answer
    fake.customer_says(KFID, "wm_resident", "小区东门的路灯坏了，晚上很黑")
    fake.customer_says(
        KFID, "wm_resident", location=(39.1601, 117.2102, "幸福里小区东门", "天津市河西区幸福路3号")
    )
    await kf_notify(fake, rig)
    await rig.settle()
    ack = next(t for t in kf_texts(fake, "wm_resident") if "工单号" in t)
    with rig.app.store.session() as s:
        ticket = s.scalars(select(Ticket)).one()
        report = s.scalars(select(TicketReport)).one()
    assert f"#{ticket.id}" in ack and ticket.community == "示例社区"  # the account's community
    assert report.channel == "wecom_kf" and report.group_id == f"kf:{KFID}:wm_resident"


async def test_a_wrong_signature_is_rejected_and_nothing_is_pulled(fake: FakeWecom, rig: Rig) -> None:
    await rig.settle()  # the pull at start-up is done
    fake.customer_says(KFID, "wm_x", "助老食堂几点开饭？")
    before = fake.sync_calls
    r = await kf_notify(fake, rig, bad_signature=True)
    assert r.status_code == 403
    await rig.settle()
    assert fake.sync_calls == before and not fake.kf_sent
    q = FakeCrypt(KF_TOKEN, KF_KEY, fake.corpid)
    echo = q.encrypt("1234567890")
    ok = await rig.web.get("/wecom/kf/callback", params={**q.query(echo), "echostr": echo})
    assert ok.status_code == 200 and ok.text == "1234567890"
    bad = await rig.web.get(
        "/wecom/kf/callback", params={**q.query(echo, bad_signature=True), "echostr": echo}
    )
    assert bad.status_code == 403


async def test_a_replayed_or_out_of_order_page_neither_doubles_nor_drops(fake: FakeWecom, rig: Rig) -> None:
    fake.page_size = 2
    questions = ["助老食堂几点开饭？", "电动自行车能在楼道里充电吗？", "老人就餐有优惠吗？"]
    for q in questions:
        fake.customer_says(KFID, "wm_a", q)
    fake.reverse_next = True
    await kf_notify(fake, rig)
    fake.replay_next = True  # WeCom answers the first page again
    await kf_notify(fake, rig)
    await kf_notify(fake, rig)
    await rig.settle()
    with rig.app.store.session() as s:
        got = s.scalars(select(InboundMessage.text).where(InboundMessage.channel == "wecom_kf")).all()
    assert sorted(got) == sorted(questions)
    assert len(kf_texts(fake, "wm_a")) == 3


async def test_a_restart_resumes_from_the_stored_cursor(
    fake: FakeWecom, wcfg: Config, clock: StepClock, tmp_path: Path
) -> None:
    first = await make_rig(wcfg, clock, tmp_path)
    fake.customer_says(KFID, "wm_b", "助老食堂几点开饭？")
    await kf_notify(fake, first)
    await first.settle()
    assert len(kf_texts(fake, "wm_b")) == 1
    await first.web.aclose()
    await first.app.stop()
    fake.customer_says(
        KFID, "wm_b", "电动自行车能在楼道里充电吗？"
    )  # while the bot is down: no callback reaches it
    second = await make_rig(wcfg, clock, tmp_path)
    try:
        await second.settle()  # start() pulls from the stored cursor
        texts = kf_texts(fake, "wm_b")
        assert len(texts) == 2 and "充电棚" in texts[1]
    finally:
        await second.web.aclose()
        await second.app.stop()


async def test_the_reply_window_closes_after_five_replies(
    fake: FakeWecom, rig: Rig, clock: StepClock
) -> None:
    fake.customer_says(KFID, "wm_c", "助老食堂几点开饭？")
    await kf_notify(fake, rig)
    await rig.settle()
    for i in range(5):
        rig.app.sender.submit(_reply(f"kf:{KFID}:wm_c", f"第{i + 2}条"))
    await rig.app.settle()
    sent = kf_texts(fake, "wm_c")
    assert len(sent) == 5 and "请再发一条消息" in sent[-1]  # the last one the window allows says so
    assert not fake.kf_refused  # refused here, before WeCom had to
    assert rig.kf.health()["refused_replies"] == 1
    with rig.app.store.session() as s:
        failed = s.scalars(
            select(Delivery).where(Delivery.channel == "wecom_kf", Delivery.status == "failed")
        ).one()
    assert failed.text == "第6条" and "窗口已关闭" in failed.error  # recorded, with the reason
    await clock.advance(48 * 3600)
    fake.customer_says(KFID, "wm_c", "电动自行车能在楼道里充电吗？")
    await kf_notify(fake, rig)
    await rig.settle()
    assert len(kf_texts(fake, "wm_c")) == 6  # a new message opens a new window


def _reply(group: str, text: str):  # type: ignore[no-untyped-def]
    from core.message import Reply

    return Reply(group=group, text=text, channel="wecom_kf", kind="status")
