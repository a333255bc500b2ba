"""Clocks: the demo's pinned clock reads the pinned time of day whatever the hour it runs at."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.clock import OffsetClock

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_pinned_clock_reads_the_pinned_hour_at_night_and_by_day() -> None:
    for real in (
        datetime(2026, 12, 1, 15, 30, tzinfo=UTC),  # 23:30 in Shanghai: quiet hours
        datetime(2026, 12, 1, 20, 0, tzinfo=UTC),  # 04:00 in Shanghai
        datetime(2026, 12, 1, 3, 0, tzinfo=UTC),  # 11:00 in Shanghai
    ):
        clock = OffsetClock.pinned_at(time(10, 0), SHANGHAI, now=real)
        local = (real + clock.offset).astimezone(SHANGHAI)
        assert (local.hour, local.minute) == (10, 0)
        assert local.date() == real.astimezone(SHANGHAI).date()


def test_pinned_clock_keeps_real_pace() -> None:
    clock = OffsetClock(timedelta(hours=-5))
    a = clock.now()
    b = clock.now()
    assert b >= a and abs((datetime.now(UTC) - timedelta(hours=5)) - b) < timedelta(seconds=5)
