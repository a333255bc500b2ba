"""Clocks (the `Clock` port, core/ports.py): time as a dependency, so tests drive the clock instead of sleeping."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta, tzinfo


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class OffsetClock:
    """Wall time moved by a fixed offset: time still passes at its real pace, but the day starts where the
    caller pins it. The demo runs at 10:00 local whatever the hour, so quiet hours never silence it."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    @classmethod
    def pinned_at(cls, local: time, tz: tzinfo, now: datetime | None = None) -> OffsetClock:
        """A clock that reads `local` o'clock today (in `tz`) right now."""
        real = now or datetime.now(UTC)
        today = real.astimezone(tz).date()
        return cls(datetime.combine(today, local, tzinfo=tz) - real)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """Virtual time for tests: `sleep` advances the clock at once; `advance` moves it by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
        self.slept = 0.0

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.slept += seconds
            self.advance(seconds)
        await asyncio.sleep(0)  # still yield, so other tasks run
