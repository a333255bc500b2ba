"""No report is dropped by policy (issue 10, item 12): quiet hours hold back the acknowledgement until the
morning but file the ticket at once; hazards and reports are not rate-limited away; a trigger-only group
still files a clear report. Through the real pipeline, against the built-in backend on a loopback port."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from bot.app import App
from bot.clock import ManualClock
from store.models import InboundMessage, TicketReport
from tests.support import RecordingChannel, Say
from tests.test_tickets import requests_in, say_all, settle

NIGHT = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai: quiet hours (22:00-07:00)
MORNING = datetime(2026, 11, 23, 23, 0, 1, tzinfo=UTC)  # 07:00:01 in Shanghai: quiet hours are over


def reports(app: App) -> list[TicketReport]:
    with app.store.session() as s:
        return list(s.scalars(select(TicketReport).order_by(TicketReport.id)).all())


async def test_quiet_hours_file_the_report_and_acknowledge_in_the_morning(
    tapp: App,
    backend,
    channel: RecordingChannel,
    clock: ManualClock,
    say: Say,
) -> None:
    clock._now = NIGHT
    unaddressed, triggered = (
        say("3号楼门口井盖松了，差点摔了"),
        say("报修 5号楼2单元楼道灯不亮", sender="u_liu"),
    )
    outcomes = await say_all(tapp, unaddressed, triggered)
    assert [o.handler for o in outcomes] == ["report", "report"]
    assert channel.sent == []  # nothing said at night
    assert [r.state for r in reports(tapp)] == ["filed", "filed"]
    await settle(tapp)
    assert len(requests_in(backend[0])) == 2  # the tickets reached the backend the same night
    clock.advance(3600)  # 00:30: still quiet
    await settle(tapp)
    assert channel.sent == []
    clock._now = MORNING
    await settle(tapp)
    acks = channel.texts()
    assert len(acks) == 2 and all(t.startswith("已收到，工单号 #") for t in acks)
    await settle(tapp)
    assert len(channel.sent) == 2  # once each, not again
    with tapp.store.session() as s:
        rows = s.scalars(select(InboundMessage).order_by(InboundMessage.id)).all()
        assert [r.status for r in rows] == ["handled", "handled"]


async def test_no_place_question_at_night(
    tapp: App, channel: RecordingChannel, clock: ManualClock, say: Say
) -> None:
    clock._now = NIGHT
    await say_all(tapp, say("小门 电梯又坏了，爬楼累死了"))
    assert channel.sent == []  # nobody is asked "where?" at 23:30
    assert [r.state for r in reports(tapp)] == ["filed"]


async def test_urgent_report_at_night_is_answered_at_once(
    tapp: App,
    channel: RecordingChannel,
    clock: ManualClock,
    say: Say,
) -> None:
    clock._now = NIGHT
    await say_all(tapp, say("3号楼2单元楼道里有很大的煤气味"))
    [ack] = channel.texts("幸福里3号楼")
    assert ack.startswith("已收到，工单号 #1") and "情况紧急" in ack


async def test_a_hazard_right_after_a_burst_is_filed(
    tapp: App,
    channel: RecordingChannel,
    say: Say,
) -> None:
    limit = tapp.config.policy_for("幸福里3号楼").user_per_minute
    burst = [say(f"小门 助老食堂几点开饭 {i}") for i in range(limit + 2)]
    await say_all(tapp, *burst)
    assert any("发得有点快" in t for t in channel.texts())
    [o] = await say_all(tapp, say("@家门口助手 3号楼门口电线裸露了，还在冒火花", mention=True))
    assert o.handler == "report"
    assert [r.state for r in reports(tapp)] == ["filed"]
    assert any(t.startswith("已收到，工单号 #1") for t in channel.texts())


async def test_trigger_only_group_files_a_clear_report(
    tapp: App,
    backend,
    channel: RecordingChannel,
    say: Say,
) -> None:
    riders = say.__class__(group="示例社区骑手群", sender="r_ma", sender_name="骑手小马")
    jpeg = b"\xff\xd8\xff\xe0" + b"photo" * 50
    await say_all(tapp, riders("", image=jpeg))
    [o] = await say_all(tapp, riders("5号楼楼道里有人飞线充电，插线板从窗户吊下来"))
    assert o.handler == "report"
    [ack] = channel.texts("示例社区骑手群")
    assert ack.startswith("已收到，工单号 #1")
    await settle(tapp)
    [req] = requests_in(backend[0])
    assert req.service_code == "ebike_fire_safety" and req.media_url
    # and the group's policy still holds for questions: an unaddressed question stays unanswered
    [q] = await say_all(tapp, riders("助老食堂几点开饭？"))
    assert q.status == "ignored"
