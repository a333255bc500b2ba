"""Shared fixtures: every test gets its own data directory, a manual clock and a recording channel."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.app import App
from bot.clock import ManualClock
from bot.config import Config, load_config
from tests.support import RecordingChannel, Say

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "data"
    monkeypatch.setenv("DOORSTEP_DATA", str(d))
    return d


@pytest.fixture
def config(data_dir: Path) -> Config:
    return load_config(ROOT / "config" / "doorstep.yaml")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def channel() -> RecordingChannel:
    return RecordingChannel()


@pytest.fixture
async def app(config: Config, clock: ManualClock, channel: RecordingChannel) -> AsyncIterator[App]:
    a = App(config, clock=clock, channels={"rec": channel})
    await a.start(background=False)
    yield a
    await a.stop()


@pytest.fixture
def say() -> Iterator[Say]:
    yield Say()
