"""The report follow-up as a state machine (tickets/followup.py): its table, and its state kept in the store so a
restart resumes it (before, the wait for the place lived in the process's memory and was lost)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from backend import Backend
from bot.app import App
from bot.clock import ManualClock
from bot.config import load_config
from core.conversation import END, FlowError
from store.models import ConversationRow, TicketReport
from tests.conftest import ROOT, TICKETS_API_KEY
from tests.support import RecordingChannel, Say
from tickets.followup import (
    AWAITING_PLACE,
    COLLECTING_MEDIA,
    OTHER,
    PHOTO,
    PLACE,
    PLACE_OVERDUE,
    PROBLEM,
    TIMEOUT,
    report_flow,
)

AppMaker = Callable[[], App]


@pytest.fixture
async def make_app(
    data_dir: Path,
    backend: tuple[Backend, str],
    clock: ManualClock,
    channel: RecordingChannel,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[AppMaker]:
    """Apps on one data directory and store, one after the other, as a process and its restart."""
    monkeypatch.setenv("DOORSTEP_OPEN311_URL", backend[1])
    monkeypatch.setenv("DOORSTEP_OPEN311_API_KEY", TICKETS_API_KEY)
    made: list[App] = []

    def make() -> App:
        app = App(load_config(ROOT / "config" / "doorstep.yaml"), clock=clock, channels={"rec": channel})
        made.append(app)
        return app

    yield make
    for app in made:
        if app.started:
            await app.stop()


def test_the_table_says_where_a_report_can_go() -> None:
    flow = report_flow(120)
    assert flow.next(AWAITING_PLACE, PHOTO) == AWAITING_PLACE  # a photo alone: still waiting for the place
    assert flow.next(AWAITING_PLACE, PLACE) == COLLECTING_MEDIA
    assert flow.next(AWAITING_PLACE, PROBLEM) == AWAITING_PLACE  # the problem told: the place still awaited
    # filed without a place (the wait is over, or the reply was something else): a late answer still joins
    assert (
        flow.next(AWAITING_PLACE, TIMEOUT) == PLACE_OVERDUE
        and flow.next(AWAITING_PLACE, OTHER) == PLACE_OVERDUE
    )
    assert flow.next(PLACE_OVERDUE, PLACE) == COLLECTING_MEDIA and flow.next(PLACE_OVERDUE, TIMEOUT) == END
    assert flow.next(COLLECTING_MEDIA, OTHER) == END
    with pytest.raises(FlowError):
        flow.next(COLLECTING_MEDIA, PLACE)  # filed with its place: a place is no longer asked for
    with pytest.raises(FlowError):
        flow.next(PLACE_OVERDUE, PROBLEM)  # too late for words to join: a new report
    assert flow.states == {AWAITING_PLACE, PLACE_OVERDUE, COLLECTING_MEDIA, END}


async def test_a_restart_resumes_the_wait_for_the_place(
    make_app: AppMaker, channel: RecordingChannel, say: Say
) -> None:
    first = make_app()
    await first.start(background=False)
    await first.handle(say("电梯又坏了，爬楼累死了"))
    await first.sender.drain()
    assert channel.texts()[-1].startswith("请问具体位置在哪里？")
    await first.stop()  # the process stops while the resident is typing the answer

    again = make_app()
    await again.start(background=False)
    [o] = [await again.handle(say("5号楼2单元"))]
    await again.sender.drain()
    assert o.reason == "followup" and o.handler == "report"  # taken as the answer, not as a new message
    assert "工单号 #1" in channel.texts()[-1] and "5号楼2单元" in channel.texts()[-1]
    with again.store.session() as s:
        [report] = s.scalars(select(TicketReport)).all()
        assert report.place == "5号楼2单元" and report.state == "filed"
        [conv] = s.scalars(select(ConversationRow)).all()  # now the minute in which photos still join
        assert conv.state == COLLECTING_MEDIA


async def test_the_deadline_fires_after_a_restart(
    make_app: AppMaker, channel: RecordingChannel, clock: ManualClock, say: Say
) -> None:
    first = make_app()
    await first.start(background=False)
    await first.handle(say("楼道灯不亮好几天了"))
    await first.sender.drain()
    await first.stop()

    again = make_app()
    await again.start(background=False)
    clock.advance(again.config.main.tickets.place_timeout_seconds + 1)
    await again.tick()
    await again.sender.drain()
    assert "已收到，工单号 #1" in channel.texts()[-1]  # no place given in time: filed as it is
    with again.store.session() as s:
        assert s.scalars(select(ConversationRow)).all() == []
