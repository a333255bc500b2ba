"""The daily summary for staff groups (issue 15): once a day at `tickets.summary_at`, each alert group is told
the day before in its community, through the sender, once, also after a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time
from pathlib import Path

import pytest

from backend import Backend
from bot.app import App
from bot.clock import ManualClock
from bot.config import AlertGroup, Config, load_config
from tests.conftest import ROOT, TICKETS_API_KEY
from tests.support import RecordingChannel, Say
from tests.test_tickets import say_all, settle

STAFF_GROUP = "wrk-staff-示例社区"
EVENING = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 20:00 in Shanghai
MORNING = datetime(2026, 11, 24, 0, 0, 1, tzinfo=UTC)  # 08:00:01 the next day


def summary_config(backend_url: str, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DOORSTEP_OPEN311_URL", backend_url)
    monkeypatch.setenv("DOORSTEP_OPEN311_API_KEY", TICKETS_API_KEY)
    cfg = load_config(ROOT / "config" / "doorstep.yaml")
    cfg.main.tickets.alert_groups = [AlertGroup(group=STAFF_GROUP, channel="rec", community="示例社区")]
    cfg.main.tickets.summary_at = time(8, 0)
    return cfg


@pytest.fixture
async def sapp(
    data_dir: Path,
    backend: tuple[Backend, str],
    clock: ManualClock,
    channel: RecordingChannel,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[App]:
    a = App(summary_config(backend[1], monkeypatch), clock=clock, channels={"rec": channel})
    await a.start(background=False)
    yield a
    await a.stop()


async def test_alert_groups_get_one_summary_a_day(
    sapp: App,
    backend: tuple[Backend, str],
    channel: RecordingChannel,
    clock: ManualClock,
    say: Say,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock._now = EVENING
    await say_all(sapp, say("3号楼门口井盖松了"), say("5号楼2单元电梯困人了，里面有人", sender="u_liu"))
    await say_all(sapp, say("焕玉里2号院东门路灯不亮", group="焕玉里2号院", sender="u_chen"))
    await settle(sapp)
    assert channel.texts(STAFF_GROUP) == [
        t for t in channel.texts(STAFF_GROUP) if "紧急工单" in t
    ]  # alerts only
    clock._now = MORNING
    await settle(sapp)
    [summary] = [t for t in channel.texts(STAFF_GROUP) if t.startswith("【每日简报】")]
    assert "示例社区 11月23日8:00至11月24日8:00" in summary
    assert "新工单 2 件（紧急 1 件）" in summary  # 焕玉里社区's ticket is another community's
    assert "目前仍在处理 2 件" in summary and "紧急未办结：#2" in summary
    clock.advance(3600)
    await settle(sapp)
    assert sum(t.startswith("【每日简报】") for t in channel.texts(STAFF_GROUP)) == 1  # once a day
    await sapp.stop()
    again = App(summary_config(backend[1], monkeypatch), clock=clock, channels={"rec": channel})
    await again.start(background=False)
    try:
        await settle(again)
        assert (
            sum(t.startswith("【每日简报】") for t in channel.texts(STAFF_GROUP)) == 1
        )  # not after a restart
    finally:
        await again.stop()
