"""Groups joining and binding (/绑定), target selection, and the schedule expressions staff write."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.app import App
from bot.clock import ManualClock
from bot.config import Config
from bot.groups import resolve_group, select_groups
from bot.router import NOT_PERMITTED
from bot.schedules import ScheduleError, parse_when, split_schedule
from core.community import Scope
from core.errors import GroupError
from tests.support import RecordingChannel, Say

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
NEW = "焕玉里6号楼新群"


@pytest.fixture
async def bot(config: Config, clock: ManualClock, channel: RecordingChannel) -> AsyncIterator[App]:
    a = App(config, clock=clock, channels={"rec": channel})
    await a.start(background=False)
    yield a
    await a.stop()


async def idle(app: App) -> None:
    await app.tick()
    await app.services.notices.drain()
    await app.settle()


async def test_new_group_is_greeted_once_and_unbound_until_staff_binds_it(
    bot: App, channel: RecordingChannel, say: Say
) -> None:
    await bot.handle(say("大家好", group=NEW, sender="u_1"))
    await idle(bot)
    await bot.handle(say("请问垃圾几点收？", group=NEW, sender="u_2"))
    await idle(bot)
    greetings = [t for t in channel.texts(NEW) if "还没有绑定社区和网格" in t]
    assert len(greetings) == 1
    info = resolve_group(bot.services, NEW)
    assert not info.bound and info.source == "unbound" and info.channel == "rec"

    # residents cannot bind; staff of another community cannot either
    out = await bot.handle(say("/绑定 焕玉里社区 网格A", group=NEW, sender="u_1"))
    assert out.replies[0].text == NOT_PERMITTED
    out = await bot.handle(say("/绑定 焕玉里社区 网格A", group=NEW, sender="s_wang"))
    assert "只能把群绑定到示例社区网格3" in out.replies[0].text
    out = await bot.handle(say("/绑定 焕玉里社区 网格Z", group=NEW, sender="s_sun"))
    assert "可选的网格：网格A、网格B" in out.replies[0].text
    assert not resolve_group(bot.services, NEW).bound

    out = await bot.handle(say("/绑定 焕玉里社区 网格A", group=NEW, sender="s_sun", sender_name="孙主任"))
    assert "本群已绑定到焕玉里社区网格A" in out.replies[0].text
    info = resolve_group(bot.services, NEW)
    assert (info.bound, info.community, info.grid, info.source) == (True, "焕玉里社区", "网格A", "binding")

    # the grid's notices now reach the new group too
    await bot.handle(
        say("/通知 网格A 周三上午有线电视检修", group="私聊-s_sun", sender="s_sun", private=True)
    )
    await bot.handle(say("确认", group="私聊-s_sun", sender="s_sun", private=True))
    await idle(bot)
    assert {s.group for s in channel.sent if s.text.startswith("【社区通知】")} == {"焕玉里2号院", NEW}

    out = await bot.handle(say("/绑定", group=NEW, sender="s_sun"))
    assert "焕玉里社区网格A（群内绑定）" in out.replies[0].text
    out = await bot.handle(say("/解绑", group=NEW, sender="s_sun"))
    assert "已解除绑定" in out.replies[0].text and not resolve_group(bot.services, NEW).bound


async def test_config_groups_are_bound_and_not_greeted(bot: App, channel: RecordingChannel, say: Say) -> None:
    await bot.handle(say("大家好", group="幸福里3号楼", sender="u_1"))
    await idle(bot)
    assert not any("还没有绑定" in t for t in channel.texts())
    info = resolve_group(bot.services, "幸福里3号楼")
    assert (info.bound, info.community, info.grid, info.tags) == (True, "示例社区", "网格3", ("楼栋群",))
    # a staff binding overrides the config
    await bot.handle(say("/绑定 示例社区网格1", group="幸福里3号楼", sender="s_li"))
    assert resolve_group(bot.services, "幸福里3号楼").grid == "网格1"


def test_target_selection(config: Config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = App(config, clock=ManualClock(), channels={"rec": RecordingChannel()})
    svc = app.services
    wang = config.staff_member("s_wang")
    admin = Scope.of(config.staff_member("s_li"))
    sel = select_groups(svc, "网格3、示例社区骑手群 明天停水", admin)
    assert sel.targets == ["网格3", "示例社区骑手群"] and sel.rest == "明天停水"
    assert [g.id for g in sel.groups] == ["幸福里3号楼", "幸福里5号楼", "示例社区骑手群"]
    assert [g.id for g in select_groups(svc, "楼栋群 x", admin).groups] == ["幸福里3号楼", "幸福里5号楼"]
    assert len(select_groups(svc, "全部 x", admin).groups) == 5
    assert len(select_groups(svc, "全部 x", Scope.of(wang)).groups) == 2
    assert [g.id for g in select_groups(svc, "焕玉里社区网格A x", admin).groups] == ["焕玉里2号院"]
    with pytest.raises(GroupError, match="请先写发给哪些群"):
        select_groups(svc, "明天停水", admin)
    with pytest.raises(GroupError, match="不在您可以发通知的范围内"):
        select_groups(svc, "示例社区 停水", Scope.of(wang))
    with pytest.raises(GroupError, match="还没有群"):
        select_groups(svc, "网格B 停水", admin)
    app.store.close()


@pytest.mark.parametrize(
    ("text", "label", "rest"),
    [
        ("明天9点到12点停水，请提前储水", "立即发送", "明天9点到12点停水，请提前储水"),
        ("明天8:00 明天9点到12点停水", "11月24日 08:00", "明天9点到12点停水"),
        ("定时 明天下午3点半 开会", "11月24日 15:30", "开会"),
        ("后天上午9点，义诊", "11月25日 09:00", "义诊"),
        ("2026-12-01 08:30 消防检查", "12月1日 08:30", "消防检查"),
        ("12月5日 9:00 年终大扫除", "12月5日 09:00", "年终大扫除"),
        ("今天15:00 停电", "11月23日 15:00", "停电"),
        ("每天8:00 垃圾清运", "每天 08:00", "垃圾清运"),
        ("工作日7点半 早餐", "工作日 07:30", "早餐"),
        ("每周一、周四 18:00 广场舞时间调整", "每周一、四 18:00", "广场舞时间调整"),
        ("每月1日 9:00 缴费提醒", "每月1日 09:00", "缴费提醒"),
        ('cron "0 8 * * 1-5" 提醒', "按规则 0 8 * * 1-5", "提醒"),
    ],
)
def test_schedules(text: str, label: str, rest: str) -> None:
    schedule, body = split_schedule(text, NOW, TZ)
    assert (schedule.label, body) == (label, rest)


def test_schedule_errors_and_api_form() -> None:
    with pytest.raises(ScheduleError, match="已经过去"):
        split_schedule("今天8:00 停水", NOW, TZ)
    with pytest.raises(ScheduleError):
        split_schedule("明天25:00 停水", NOW, TZ)
    with pytest.raises(ScheduleError):
        parse_when("下周吧", NOW, TZ)
    assert parse_when("", NOW, TZ).at is None
    assert parse_when("2026-11-24T08:00:00+08:00", NOW, TZ).at == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    assert parse_when("2026-11-24 08:00", NOW, TZ).at == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    every = parse_when("每周一 8:00", NOW, TZ)
    assert every.cron == "0 8 * * 1" and every.at == datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
