"""Message identity across restarts (issue 10, item 1), UTF-8 form bodies (item 6) and the answer while the
knowledge base is still being prepared (item 3), in-process; tests/test_processes.py runs the same through
real `serve` processes."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Form
from sqlalchemy import select

from backend.utf8form import Utf8FormMiddleware
from bot.app import App
from bot.clock import ManualClock
from bot.config import Config
from bot.knowledge_loading import KnowledgeLoading
from channels.console.channel import ConsoleChannel
from channels.simulator.channel import SimulatorChannel
from store.models import InboundMessage
from tests.support import RecordingChannel, Say


def stored(app: App) -> list[tuple[str, str, str]]:
    with app.store.session() as s:
        rows = s.scalars(select(InboundMessage).order_by(InboundMessage.id)).all()
        return [(r.message_id, r.sender, r.status) for r in rows]


async def test_a_reused_id_on_a_different_message_is_recorded_and_handled(
    app: App, channel: RecordingChannel, say: Say
) -> None:
    # a channel that numbered its messages again after a restart: the same id, another message
    before = say("帮助", mention=True, id="sim-000001")
    after = say("帮助", mention=True, id="sim-000001", sender="u_liu", sender_name="刘阿姨")
    o1, o2 = await app.handle(before), await app.handle(after)
    await app.sender.drain()
    assert (o1.status, o2.status) == ("handled", "handled")
    assert [m for m in channel.sent if "u_liu" in m.mentions], "the second resident was answered"
    assert stored(app) == [("sim-000001", "u_zhang", "handled"), ("sim-000001#2", "u_liu", "handled")]


async def test_the_same_message_delivered_again_is_a_duplicate(app: App, say: Say) -> None:
    m = say("帮助", mention=True, id="wx-42")
    o1, o2, o3 = [await app.handle(x) for x in (m, m, m)]
    assert o1.status == "handled" and o2.reason == o3.reason == "duplicate"
    assert stored(app) == [("wx-42", "u_zhang", "handled")]


async def test_a_resend_is_recorded_before_it_is_ignored(app: App, say: Say) -> None:
    o1, o2 = await app.handle(say("帮助", mention=True)), await app.handle(say("帮助", mention=True))
    assert o1.status == "handled"
    assert o2.reason == "duplicate"
    assert [(who, st) for _, who, st in stored(app)] == [("u_zhang", "handled"), ("u_zhang", "ignored")]


async def test_inbox_records_the_message_before_the_channel_acknowledges_it(config: Config) -> None:
    sim = SimulatorChannel("doorstep-bot")
    app = App(config, clock=ManualClock(), channels={"simulator": sim})
    await app.start(background=False)
    try:
        mid = await sim.post("幸福里3号楼", "u_zhang", "张师傅", "3号楼门口井盖松了")
        # `post` returned (the HTTP side answers 202 now); the group worker has not run yet
        assert stored(app) == [(mid, "u_zhang", "received")]
        await app.settle()
        assert stored(app)[0][2] == "handled"
    finally:
        await app.stop()


def test_simulator_and_console_ids_never_repeat_across_runs(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    seen: set[str] = set()
    for _ in range(3):  # three runs of the process on one data directory
        sim = SimulatorChannel("doorstep-bot", history=history)
        ids = {sim._next_id() for _ in range(50)}
        assert not ids & seen
        seen |= ids
    consoles = [ConsoleChannel("doorstep-bot") for _ in range(2)]
    assert consoles[0]._run != consoles[1]._run


async def test_simulator_history_outlives_the_process(tmp_path: Path) -> None:
    history = tmp_path / "simulator" / "history.jsonl"
    sim = SimulatorChannel("doorstep-bot", history=history)
    got: list[Any] = []

    async def inbox(m: Any) -> None:
        got.append(m)

    await sim.start(inbox)
    mid = await sim.post("幸福里3号楼", "u_zhang", "张师傅", "电梯坏了")
    await sim.send_text("幸福里3号楼", "已收到，工单号 #1", ["u_zhang"])
    with history.open("ab") as f:
        f.write(b'{"group": "\xe5\xb9\xb8')  # a writer killed mid-line
    again = SimulatorChannel("doorstep-bot", history=history)  # the next run
    assert [(e["message_id"], e["from_bot"]) for e in again.messages("幸福里3号楼")][0] == (mid, False)
    assert again.messages("幸福里3号楼")[1]["text"].endswith("已收到，工单号 #1")
    assert again.messages("幸福里3号楼", after=mid)[0]["from_bot"] is True


# --- UTF-8 form bodies ---------------------------------------------------------------------------------------


async def test_form_bodies_are_utf8_raw_or_escaped_or_declared() -> None:
    web = FastAPI()
    web.add_middleware(Utf8FormMiddleware)

    @web.post("/f")
    async def f(note: str = Form()) -> dict[str, str]:
        return {"note": note}

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://t") as c:
        raw = await c.post("/f", content="note=已补装新井盖+好".encode(), headers=form)
        escaped = await c.post("/f", data={"note": "已补装新井盖 好"})
        gbk = await c.post(
            "/f",
            content="note=已补装新井盖".encode("gbk"),
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=GBK"},
        )
    assert raw.json() == {"note": "已补装新井盖 好"}
    assert escaped.json() == {"note": "已补装新井盖 好"}
    assert gbk.json() == {"note": "已补装新井盖"}


# --- a question while the knowledge base is being prepared -----------------------------------------------


async def test_a_question_during_ingestion_says_how_far_it_is(
    app: App, channel: RecordingChannel, say: Say, config: Config
) -> None:
    release = threading.Event()

    def open_service() -> Any:  # the real loader, held at its start by the test
        release.wait(30)
        raise RuntimeError("stop here: this test needs no index")

    loading = KnowledgeLoading(config, open_service=open_service)
    loading.state, loading.chunks_done, loading.chunks_total = "ingesting", 40, 100
    app.knowledge.loading = loading
    loading.start(lambda _: None)
    try:
        [o] = [await app.handle(say("小门 请问助老食堂几点开饭？"))]
        await app.sender.drain()
        assert o.handler == "ask"
        assert channel.sent[-1].text.endswith("知识库正在准备中（已完成 40%），请稍后再问。")
        assert app.health()["parts"]["index"]["ingesting"]["progress"] == 40
    finally:
        release.set()
        await asyncio.to_thread(loading.wait, 10)
    assert loading.state == "failed" and "stop here" in app.health()["parts"]["index"]["error"]
