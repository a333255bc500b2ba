"""Satisfaction as 12345 asks it, through the real pipeline: reports in a group become tickets on the built-in
backend (a real loopback server), staff close them, the reporters are asked in the group, and their answers come
back through the router. The clock is the test's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from backend.models import ServiceRequest
from bot.app import App
from bot.clock import ManualClock
from bot.config import load_config
from core.ports import Capabilities
from store.models import SatisfactionSurvey, Ticket, TicketReport
from tests.conftest import ROOT, TICKETS_API_KEY
from tests.support import RecordingChannel, Say
from tickets.desk import ReportDesk
from tickets.satisfaction import ASK_IN_GROUP, parse_rating


@pytest.fixture(autouse=True)
def open311_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOORSTEP_OPEN311_API_KEYS", TICKETS_API_KEY)


def desk(app: App) -> ReportDesk:
    return app.desk


async def settle(app: App) -> None:
    for _ in range(2):
        await app.tick()
        await app.sender.drain()


async def filed(app: App, say: Say, text: str, **kw: object) -> int:
    await app.handle(say(text, **kw))  # type: ignore[arg-type]
    await settle(app)
    with app.store.session() as s:
        r = s.scalars(select(TicketReport).order_by(TicketReport.id.desc())).first()
        assert r is not None and r.ticket_id is not None
        return r.ticket_id


def backend_status(backend, ticket_id: int, app: App) -> str:
    with app.store.session() as s:
        t = s.get(Ticket, ticket_id)
        assert t is not None and t.remote_id
        rid = int(t.remote_id)
    with backend[0].sessions() as s:
        return str(s.get(ServiceRequest, rid).status)


def test_the_answer_words() -> None:
    assert parse_rating("满意") == parse_rating("满意！") and parse_rating("满意").rating == "satisfied"  # type: ignore[union-attr]
    assert parse_rating("基本满意").rating == "basic"  # type: ignore[union-attr]
    got = parse_rating("不满意，井盖还是松的")
    assert got is not None and (got.rating, got.reason) == ("unsatisfied", "井盖还是松的")
    assert parse_rating("#12 满意").ticket_id == 12  # type: ignore[union-attr]
    assert parse_rating("大家对物业满意吗") is None  # a sentence about satisfaction is not an answer
    assert parse_rating("满意度调查是什么时候开始的呀请问一下") is None


async def test_closed_ticket_asks_its_reporters_and_unsatisfied_reopens_it(
    tapp: App, backend, channel: RecordingChannel, say: Say, clock: ManualClock
) -> None:
    tid = await filed(tapp, say, "3号楼门口井盖松了，差点摔了")
    await filed(tapp, say, "3号楼门口井盖松动了，很危险", sender="u_liu", sender_name="刘阿姨")
    await desk(tapp).set_status(tid, "closed", "已更换井盖", by_id="s_wang", by_name="王网格员")
    await settle(tapp)
    [closed] = [m for m in channel.sent if "已处理完毕" in m.text]
    assert "已更换井盖" in closed.text and "“满意”“基本满意”或“不满意”" in closed.text
    assert set(closed.mentions) == {"u_zhang", "u_liu"}  # each reporter is asked, in the group
    with tapp.store.session() as s:
        assert {sv.sender for sv in s.scalars(select(SatisfactionSurvey))} == {"u_zhang", "u_liu"}

    # 满意 is taken though the bot is not addressed (it would otherwise be ignored as chitchat)
    o = await tapp.handle(say("满意", sender="u_liu", sender_name="刘阿姨"))
    await settle(tapp)
    assert o.handler == "satisfaction"
    assert channel.sent[-1].text.startswith(f"收到您对工单 #{tid} 的评价：满意")

    # 不满意 with a reason reopens the ticket on the backend, tells the group, and tells the grid worker 1:1
    o = await tapp.handle(say("不满意，井盖还是松的，一踩就响"))
    await settle(tapp)
    assert o.handler == "satisfaction"  # not filed as a new report
    assert backend_status(backend, tid, tapp) == "open"
    with tapp.store.session() as s:
        t = s.get(Ticket, tid)
        assert t is not None and t.status == "open"
        assert s.scalars(select(TicketReport)).all().__len__() == 2  # no new report
    reopened = [m for m in channel.sent if m.group == "幸福里3号楼" and "已重新打开" in m.text]
    assert reopened and "井盖还是松的" in reopened[-1].text
    worker = [m for m in channel.sent if m.group == "s_wang"]
    assert worker and "【工单被退回】" in worker[-1].text and "井盖还是松的" in worker[-1].text
    with tapp.store.session() as s:
        ratings = {sv.sender: (sv.rating, sv.state) for sv in s.scalars(select(SatisfactionSurvey))}
    assert ratings == {"u_liu": ("satisfied", "answered"), "u_zhang": ("unsatisfied", "answered")}

    # closed again: a new round of questions; the earlier answers stand
    await desk(tapp).set_status(tid, "closed", "已重新固定", by_id="s_wang")
    await settle(tapp)
    with tapp.store.session() as s:
        assert (
            len(s.scalars(select(SatisfactionSurvey).where(SatisfactionSurvey.state == "asked")).all()) == 2
        )


async def test_a_bare_unsatisfied_asks_why_and_the_next_words_are_the_reason(
    tapp: App, backend, channel: RecordingChannel, say: Say
) -> None:
    tid = await filed(tapp, say, "3号楼门口井盖松了，差点摔了")
    await desk(tapp).set_status(tid, "closed", "已处理")
    await settle(tapp)
    await tapp.handle(say("不满意"))
    await settle(tapp)
    assert "请问哪里不满意" in channel.sent[-1].text
    assert backend_status(backend, tid, tapp) == "closed"
    o = await tapp.handle(say("根本没人来修"))
    await settle(tapp)
    assert o.handler == "satisfaction"
    assert backend_status(backend, tid, tapp) == "open"
    assert any(m.group == "s_wang" and "根本没人来修" in m.text for m in channel.sent)


async def test_no_answer_in_three_days_is_none_never_satisfied(
    tapp: App, say: Say, clock: ManualClock, channel: RecordingChannel
) -> None:
    tid = await filed(tapp, say, "3号楼门口井盖松了，差点摔了")
    await desk(tapp).set_status(tid, "closed", "已处理")
    await settle(tapp)
    clock.advance(3 * 86400 + 1)
    await settle(tapp)
    with tapp.store.session() as s:
        sv = s.scalars(select(SatisfactionSurvey)).one()
        assert (sv.state, sv.rating) == ("expired", "none")
    o = await tapp.handle(say("满意"))  # too late: an ordinary message again
    assert o.handler != "satisfaction"
    from workbench.figures import compute

    staff = tapp.config.staff_member("s_wang")
    assert staff is not None
    f = compute(tapp.store, staff, clock.now(), ZoneInfo(tapp.config.main.timezone), lambda g: "网格3")
    assert f.satisfaction is None and f.ratings["none"] == 1  # nobody answered: no 满意率, not 100%


async def test_a_restart_keeps_the_question(
    data_dir, backend, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, say: Say
) -> None:
    monkeypatch.setenv("DOORSTEP_OPEN311_URL", backend[1])
    monkeypatch.setenv("DOORSTEP_OPEN311_API_KEY", TICKETS_API_KEY)
    cfg = load_config(ROOT / "config" / "doorstep.yaml")
    first_channel = RecordingChannel()
    first = App(cfg, clock=clock, channels={"rec": first_channel})
    await first.start(background=False)
    tid = await filed(first, say, "3号楼门口井盖松了，差点摔了")
    await desk(first).set_status(tid, "closed", "已处理")
    await settle(first)
    await first.stop()
    clock.advance(86400)  # a day later, another process
    again_channel = RecordingChannel()
    again = App(load_config(ROOT / "config" / "doorstep.yaml"), clock=clock, channels={"rec": again_channel})
    await again.start(background=False)
    try:
        o = await again.handle(say("基本满意"))
        await settle(again)
        assert o.handler == "satisfaction"
        assert again_channel.sent[-1].text == f"收到您对工单 #{tid} 的评价：基本满意。谢谢！"
    finally:
        await again.stop()


# --- tickets.satisfaction: private ------------------------------------------------------------------------------


class PrivateChatChannel(RecordingChannel):
    """A channel that declares 1:1 chats (as WeChat and the simulator do)."""

    capabilities = Capabilities(private_chats=True)


@pytest.fixture
async def private_app(
    data_dir, backend, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[App, RecordingChannel, RecordingChannel]]:
    """`tickets.satisfaction: private`, with one channel that has private chats ("rec") and one that has not
    ("plain")."""
    monkeypatch.setenv("DOORSTEP_OPEN311_URL", backend[1])
    monkeypatch.setenv("DOORSTEP_OPEN311_API_KEY", TICKETS_API_KEY)
    monkeypatch.setenv("DOORSTEP_TICKETS__SATISFACTION", "private")
    cfg = load_config(ROOT / "config" / "doorstep.yaml")
    assert cfg.main.tickets.satisfaction == "private"
    private, plain = PrivateChatChannel(), RecordingChannel(name="plain")
    a = App(cfg, clock=clock, channels={"rec": private, "plain": plain})
    await a.start(background=False)
    yield a, private, plain
    await a.stop()


async def test_private_mode_asks_each_reporter_one_to_one_and_takes_the_answer_there(
    private_app: tuple[App, RecordingChannel, RecordingChannel], say: Say
) -> None:
    app, channel, _ = private_app
    tid = await filed(app, say, "3号楼门口井盖松了，差点摔了")
    await desk(app).set_status(tid, "closed", "已更换井盖", by_id="s_wang")
    await settle(app)
    [closed] = [m for m in channel.sent if m.group == "幸福里3号楼" and "已处理完毕" in m.text]
    assert ASK_IN_GROUP not in closed.text  # the group is not asked
    [asked] = [m for m in channel.sent if m.group == "u_zhang"]
    assert f"工单 #{tid}" in asked.text and "“满意”“基本满意”或“不满意”" in asked.text
    with app.store.session() as s:
        sv = s.scalars(select(SatisfactionSurvey)).one()
        assert (sv.group_id, sv.channel, sv.state) == ("u_zhang", "rec", "asked")

    # a 满意 in the group answers nothing (the question was asked 1:1)
    o = await app.handle(say("满意"))
    assert o.handler != "satisfaction"
    # the answer in the private chat is taken, and thanked for there
    o = await app.handle(say("基本满意", group="u_zhang", private=True))
    await settle(app)
    assert o.handler == "satisfaction"
    assert channel.sent[-1].group == "u_zhang"
    assert channel.sent[-1].text == f"收到您对工单 #{tid} 的评价：基本满意。谢谢！"
    with app.store.session() as s:
        sv = s.scalars(select(SatisfactionSurvey)).one()
        assert (sv.rating, sv.state) == ("basic", "answered")


async def test_private_mode_asks_in_the_group_where_the_channel_has_no_private_chats(
    private_app: tuple[App, RecordingChannel, RecordingChannel], say: Say
) -> None:
    app, _, plain = private_app
    tid = await filed(app, Say(channel="plain"), "3号楼门口井盖松了，差点摔了")
    await desk(app).set_status(tid, "closed", "已更换井盖", by_id="s_wang")
    await settle(app)
    [closed] = [m for m in plain.sent if m.group == "幸福里3号楼" and "已处理完毕" in m.text]
    assert ASK_IN_GROUP in closed.text
    assert not [m for m in plain.sent if m.group == "u_zhang"]  # nothing sent to a chat that cannot exist
    with app.store.session() as s:
        assert s.scalars(select(SatisfactionSurvey)).one().group_id == "幸福里3号楼"
    o = await app.handle(Say(channel="plain")("满意"))
    assert o.handler == "satisfaction"
