"""Staff notices through the real pipeline: router -> /通知 handler -> confirm -> notice service -> throttled
sender -> channel, under a manual clock (no sleeping, no wall time)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.clock import ManualClock
from bot.config import Config
from bot.notices import CLAIM_LEASE_SECONDS, NoticeService
from bot.router import NOT_PERMITTED
from store.models import Notice, NoticeDelivery
from tests.support import RecordingChannel, Say

SHANGHAI = ZoneInfo("Asia/Shanghai")
GRID3 = {"幸福里3号楼", "幸福里5号楼"}
COMMUNITY = {"幸福里3号楼", "幸福里5号楼", "示例社区居民群", "示例社区骑手群"}


class TimedChannel(RecordingChannel):
    """Records the virtual time of every send."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(name="rec")
        self.clock = clock
        self.times: list[tuple[str, datetime, str]] = []
        self.fail_group: dict[str, int] = {}  # group -> how many sends to it fail

    async def send_text(
        self, group: str, text: str, mentions: Sequence[str] = (), in_reply_to: str = ""
    ) -> None:
        if self.fail_group.get(group, 0) > 0:
            self.fail_group[group] -= 1
            raise ConnectionError("platform refused the send")
        await super().send_text(group, text, mentions)
        self.times.append((group, self.clock.now(), text))

    def notices(self) -> list[tuple[str, datetime, str]]:
        return [t for t in self.times if t[2].startswith("【社区通知】")]


@pytest.fixture
def timed(clock: ManualClock) -> TimedChannel:
    return TimedChannel(clock)


@pytest.fixture
async def bot(config: Config, clock: ManualClock, timed: TimedChannel) -> AsyncIterator[App]:
    a = App(config, clock=clock, channels={"rec": timed})
    await a.start(background=False)
    yield a
    await a.stop()


def staff_says(say: Say, text: str, sender: str = "s_wang", name: str = "王网格员"):  # type: ignore[no-untyped-def]
    return say(text, group=f"私聊-{sender}", sender=sender, sender_name=name, private=True)


async def run_until_idle(app: App) -> None:
    """One tick's work to the end: due notices fired, the pump drained, every reply sent."""
    await app.tick()
    await app.services.notices.drain()
    await app.settle()


async def confirmed_notice(
    app: App, say: Say, command: str, sender: str = "s_wang", name: str = "王网格员"
) -> str:
    preview = await app.handle(staff_says(say, command, sender, name))
    assert preview.handler == "notice", preview
    assert "【通知预览】" in preview.replies[0].text, preview.replies[0].text
    done = await app.handle(staff_says(say, "确认", sender, name))
    assert done.reason == "followup" and "已确认" in done.replies[0].text, done
    return done.replies[0].text


def notice_ids(app: App) -> list[int]:
    with app.store.session() as s:
        return list(s.scalars(select(Notice.id).order_by(Notice.id)))


# --- the musts ---------------------------------------------------------------------------------------------


async def test_grid_notice_reaches_exactly_that_grids_groups_once_within_the_throttle(
    bot: App, timed: TimedChannel, say: Say, clock: ManualClock
) -> None:
    preview = await bot.handle(staff_says(say, "/通知 网格3 明天9点到12点停水，请提前储水"))
    text = preview.replies[0].text
    assert "共2个群" in text and "幸福里3号楼" in text and "幸福里5号楼" in text
    # the time in the text is not a schedule
    assert "明天9点到12点停水，请提前储水" in text and "立即发送" in text
    await bot.settle()
    assert not timed.notices()  # nothing goes out before the sender confirms

    await bot.handle(staff_says(say, "确认"))
    await run_until_idle(bot)
    # a second tick, and a third much later, must not send anything again
    await run_until_idle(bot)
    clock.advance(3600)
    await run_until_idle(bot)

    sent = timed.notices()
    assert Counter(g for g, _, _ in sent) == Counter(GRID3)  # exactly that grid's groups, once each
    assert all(t.endswith("明天9点到12点停水，请提前储水\n——王网格员") for _, _, t in sent)
    limits = bot.config.main.send_limits
    times = [t for _, t, _ in timed.times]  # every send on the account, the replies to staff included
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert all(g >= limits.account_interval_seconds for g in gaps), gaps

    report = bot.services.notices.report(notice_ids(bot)[0])
    assert report is not None and report.status == "done"
    assert report.counts["sent"] == 2 and {d.group_id for d in report.deliveries} == GRID3
    assert all(d.sent_at is not None and d.attempts == 1 for d in report.deliveries)


async def test_notice_to_many_groups_keeps_the_account_interval_and_jitter(
    bot: App, timed: TimedChannel, say: Say
) -> None:
    await confirmed_notice(bot, say, "/通知 全部 本周六上午9点社区义诊", sender="s_li", name="李书记")
    await run_until_idle(bot)
    sent = timed.notices()
    assert Counter(g for g, _, _ in sent) == Counter(COMMUNITY | {"焕玉里2号院"})
    gaps = [(b[1] - a[1]).total_seconds() for a, b in zip(sent, sent[1:], strict=False)]
    limits = bot.config.main.send_limits
    assert all(
        limits.account_interval_seconds <= g <= limits.account_interval_seconds + 2 * limits.jitter_seconds
        for g in gaps
    ), gaps
    assert len({round(g, 4) for g in gaps}) > 1  # jittered, not a fixed beat


async def test_non_staff_notice_is_refused_and_logged(
    bot: App, timed: TimedChannel, say: Say, caplog: pytest.LogCaptureFixture
) -> None:
    out = await bot.handle(say("/通知 网格3 明天停水", sender="u_zhang", sender_name="张师傅"))
    assert out.reason == "not permitted" and out.replies[0].text == NOT_PERMITTED
    assert "refused notice for sender u_zhang" in caplog.text
    out = await bot.handle(say("确认", sender="u_zhang", sender_name="张师傅"))
    assert out.handler != "notice"
    await run_until_idle(bot)
    assert not timed.notices() and notice_ids(bot) == []
    # a resident merely talking about a notice is not a command
    out = await bot.handle(say("小门，通知说明天停水是真的吗？", sender="u_li"))
    assert out.handler != "notice"


async def test_staff_cannot_send_outside_their_scope(bot: App, timed: TimedChannel, say: Say) -> None:
    out = await bot.handle(staff_says(say, "/通知 网格1 明天停水"))
    assert "不在您可以发通知的范围内" in out.replies[0].text
    out = await bot.handle(staff_says(say, "/通知 焕玉里2号院 明天停水"))
    assert "不在您可以发通知的范围内" in out.replies[0].text
    # 全部 means all of the sender's own groups
    out = await bot.handle(staff_says(say, "/通知 全部 明天停水"))
    assert "共2个群" in out.replies[0].text
    await bot.handle(staff_says(say, "取消"))
    await run_until_idle(bot)
    assert not timed.notices() and notice_ids(bot) == []


async def test_scheduled_notice_fires_at_its_time(
    bot: App, timed: TimedChannel, say: Say, clock: ManualClock
) -> None:
    # the manual clock starts at 2026-11-23 10:00 in Shanghai
    await confirmed_notice(bot, say, "/通知 网格3 明天8:00 今天9点到12点停水，请提前储水")
    due = datetime(2026, 11, 24, 8, 0, tzinfo=SHANGHAI)
    await run_until_idle(bot)
    assert not timed.notices()
    clock.advance((due - clock.now()).total_seconds() - 1)  # 07:59:59
    await run_until_idle(bot)
    assert not timed.notices()
    clock.advance(1)
    await run_until_idle(bot)
    sent = timed.notices()
    assert Counter(g for g, _, _ in sent) == Counter(GRID3)
    assert all(due <= t < due + timedelta(seconds=10) for _, t, _ in sent)
    assert sent[0][2].startswith("【社区通知】今天9点到12点停水")


async def test_repeating_notice_fires_each_day_once(
    bot: App, timed: TimedChannel, say: Say, clock: ManualClock
) -> None:
    text = await confirmed_notice(bot, say, "/通知 幸福里3号楼 每天8:00 今日垃圾清运时间为上午10点")
    assert "11月24日" not in text  # a repeat states its rule, in the preview and the report
    first = datetime(2026, 11, 24, 8, 0, tzinfo=SHANGHAI)
    for day in range(3):
        clock.advance((first + timedelta(days=day) - clock.now()).total_seconds())
        await run_until_idle(bot)
        await run_until_idle(bot)
        assert len(timed.notices()) == day + 1
    report = bot.services.notices.report(notice_ids(bot)[0])
    assert report is not None and report.runs == 3 and report.status == "scheduled"
    assert report.next_run_at == (first + timedelta(days=3)).astimezone(UTC)


async def test_cancelled_scheduled_notice_never_goes_out(
    bot: App, timed: TimedChannel, say: Say, clock: ManualClock
) -> None:
    await confirmed_notice(bot, say, "/通知 网格3 明天8:00 明天停水")
    nid = notice_ids(bot)[0]
    out = await bot.handle(staff_says(say, f"/通知 取消 {nid}"))
    assert f"已取消通知#{nid}" in out.replies[0].text
    clock.advance(86400)
    await run_until_idle(bot)
    assert not timed.notices()


async def test_unconfirmed_preview_expires(
    bot: App, timed: TimedChannel, say: Say, clock: ManualClock
) -> None:
    await bot.handle(staff_says(say, "/通知 网格3 明天停水"))
    clock.advance(301)
    await run_until_idle(bot)
    assert any("没有确认" in t for t in timed.texts("私聊-s_wang"))
    out = await bot.handle(staff_says(say, "确认"))
    assert out.handler != "notice" or "已确认" not in out.replies[0].text
    await run_until_idle(bot)
    assert not timed.notices() and notice_ids(bot) == []


async def test_failed_send_is_retried_later(
    bot: App, timed: TimedChannel, say: Say, clock: ManualClock
) -> None:
    timed.fail_group["幸福里5号楼"] = 3  # the sender's three attempts all fail
    await confirmed_notice(bot, say, "/通知 幸福里5号楼 今晚8点消防演练")
    await run_until_idle(bot)
    assert not timed.notices()
    report = bot.services.notices.report(notice_ids(bot)[0])
    assert report is not None and report.deliveries[0].status == "queued"
    assert "platform refused" in report.deliveries[0].error
    clock.advance(59)
    await run_until_idle(bot)
    assert not timed.notices()
    clock.advance(2)
    await run_until_idle(bot)
    assert [g for g, _, _ in timed.notices()] == ["幸福里5号楼"]
    report = bot.services.notices.report(notice_ids(bot)[0])
    assert report is not None and report.deliveries[0].status == "sent" and report.deliveries[0].attempts == 2


async def test_replies_of_1_are_counted_per_group(
    bot: App, timed: TimedChannel, say: Say, clock: ManualClock
) -> None:
    await bot.handle(say("1", sender="u_early"))  # before the notice: not an answer to it
    await confirmed_notice(bot, say, "/通知 网格3 明晚7点在社区活动室开居民议事会，收到请回复1")
    await run_until_idle(bot)
    clock.advance(60)
    for sender, group, text in [
        ("u_a", "幸福里3号楼", "1"),
        ("u_b", "幸福里3号楼", "１"),
        ("u_a", "幸福里3号楼", "收到"),
        ("u_c", "幸福里3号楼", "好的谢谢"),
        ("u_d", "幸福里5号楼", "收到！"),
    ]:
        clock.advance(5)
        await bot.handle(say(text, group=group, sender=sender))
    out = await bot.handle(staff_says(say, "/通知 状态"))
    text = out.replies[0].text
    assert "幸福里3号楼：已送达" in text and "回复“1”2人" in text and "回复“1”1人" in text, text
    report = bot.services.notices.report(notice_ids(bot)[0])
    assert report is not None and report.acks == 3
    assert {d.group_id: d.acks for d in report.deliveries} == {"幸福里3号楼": 2, "幸福里5号楼": 1}


# --- restarts ----------------------------------------------------------------------------------------------


class CrashingChannel(TimedChannel):
    """The process dies right after the platform accepted the n-th notice, before anything is recorded."""

    def __init__(self, clock: ManualClock, crash_after: int) -> None:
        super().__init__(clock)
        self.crash_after = crash_after

    async def send_text(
        self, group: str, text: str, mentions: Sequence[str] = (), in_reply_to: str = ""
    ) -> None:
        await super().send_text(group, text, mentions)
        if text.startswith("【社区通知】") and len(self.notices()) >= self.crash_after:
            raise asyncio.CancelledError  # like SIGKILL: no except clause runs, the sender never reports


async def _notice_to_community(app: App) -> int:
    svc = app.services.notices
    assert isinstance(svc, NoticeService)
    nid = svc.create(
        svc.draft(["示例社区"], "今晚8点起小区停电检修，请提前做好准备"), created_by="s_li", source="api"
    )
    return nid


async def _crash(app: App) -> None:
    """Stop the first process the hard way: tasks cancelled, nothing marked, store closed."""
    await app.stop()


async def test_restart_right_after_a_send_finishes_without_duplicates(
    config: Config, db_url: str, clock: ManualClock
) -> None:
    config.main.storage.url = db_url  # SQLite and PostgreSQL
    ch1 = CrashingChannel(clock, crash_after=2)
    app1 = App(config, clock=clock, channels={"rec": ch1})
    nid = await _notice_to_community(app1)
    await app1.tick()
    await asyncio.wait_for(_wait_for(lambda: len(ch1.notices()) >= 2), 5)
    await _crash(app1)
    assert len(ch1.notices()) == 2

    ch2 = TimedChannel(clock)
    app2 = App(config, clock=clock, channels={"rec": ch2})  # same database
    try:
        await run_until_idle(app2)  # the queued ones go out at once
        assert len(ch2.notices()) == 2
        clock.advance(CLAIM_LEASE_SECONDS + 1)  # the one in flight when the process died: not resent
        await run_until_idle(app2)
        got = Counter(g for g, _, _ in ch1.notices() + ch2.notices())
        assert got == Counter(COMMUNITY)  # every group exactly once
        report = app2.services.notices.report(nid)
        assert report is not None and report.status == "done"
        states = {d.group_id: d.status for d in report.deliveries}
        assert sorted(states.values()) == ["sent", "sent", "sent", "unknown"]
        assert states[ch1.notices()[1][0]] == "unknown"  # sent, but the dead process never recorded it
    finally:
        await app2.stop()


async def test_restart_between_sends_finishes_every_group_once(
    config: Config, db_url: str, clock: ManualClock
) -> None:
    config.main.storage.url = db_url  # SQLite and PostgreSQL
    ch1 = TimedChannel(clock)
    app1 = App(config, clock=clock, channels={"rec": ch1})
    svc1 = app1.services.notices
    assert isinstance(svc1, NoticeService)
    pace = svc1._pace
    calls = 0

    async def dying_pace(channel: str, group: str) -> None:  # the process dies waiting for the throttle
        nonlocal calls
        calls += 1
        if calls > 2:
            await asyncio.Event().wait()
        await pace(channel, group)

    svc1._pace = dying_pace  # type: ignore[method-assign]
    nid = await _notice_to_community(app1)
    await app1.tick()
    await asyncio.wait_for(_wait_for(lambda: calls > 2), 5)
    await _crash(app1)
    assert len(ch1.notices()) == 2

    ch2 = TimedChannel(clock)
    app2 = App(config, clock=clock, channels={"rec": ch2})
    try:
        await run_until_idle(app2)
        clock.advance(CLAIM_LEASE_SECONDS + 1)
        await run_until_idle(app2)
        assert Counter(g for g, _, _ in ch1.notices() + ch2.notices()) == Counter(COMMUNITY)
        report = app2.services.notices.report(nid)
        assert report is not None and report.counts["sent"] == 4 and report.status == "done"
    finally:
        await app2.stop()


async def test_scheduled_notice_survives_a_restart(
    config: Config, db_url: str, clock: ManualClock, say: Say
) -> None:
    config.main.storage.url = db_url  # SQLite and PostgreSQL
    ch1 = TimedChannel(clock)
    app1 = App(config, clock=clock, channels={"rec": ch1})
    await confirmed_notice(app1, say, "/通知 网格3 明天8:00 明天停水")
    await app1.stop()
    ch2 = TimedChannel(clock)
    app2 = App(config, clock=clock, channels={"rec": ch2})
    try:
        clock.advance(86400)
        await run_until_idle(app2)
        assert Counter(g for g, _, _ in ch2.notices()) == Counter(GRID3)
    finally:
        await app2.stop()


async def test_two_processes_fire_a_due_notice_once(config: Config, db_url: str, clock: ManualClock) -> None:
    config.main.storage.url = db_url  # SQLite and PostgreSQL
    app1 = App(config, clock=clock, channels={"rec": TimedChannel(clock)})
    app2 = App(config, clock=clock, channels={"rec": TimedChannel(clock)})
    try:
        nid = await _notice_to_community(app1)
        svc1, svc2 = app1.services.notices, app2.services.notices
        assert svc1.fire_due() == 4
        assert svc2.fire_due() == 0
        with app1.store.session() as s:
            assert (
                s.scalar(
                    select(func.count()).select_from(NoticeDelivery).where(NoticeDelivery.notice_id == nid)
                )
                == 4
            )
    finally:
        await app1.stop()
        await app2.stop()


async def _wait_for(cond) -> None:  # type: ignore[no-untyped-def]
    while not cond():
        await asyncio.sleep(0)
