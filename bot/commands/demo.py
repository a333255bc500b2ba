"""`doorstep demo`: a scripted, offline scenario through the whole pipeline, the transcript on stdout.

Nothing here is canned: the messages go through the simulator channel, the router, the classifier, the
knowledge index, the report desk and its outbox into the built-in Open311 backend over HTTP, and the staff
notice service, exactly as under `serve`. Only the store is fresh for each run (a temporary directory); the
knowledge index is the configured one, so the bundled sample is ingested once and reused.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import uvicorn
from PIL import Image
from sqlalchemy import select

from bot.app import App
from bot.clock import OffsetClock
from bot.config import load_config
from bot.runtime import build_app
from bot.web.app import create_web_app
from channels.simulator.channel import SimulatorChannel
from core.message import Location
from store.models import Ticket

# Demo pace: the scenario's replies are spaced 0.1 s apart instead of WeChat's one a second, so that it
# finishes in seconds; every other limit is the configured one.
DEMO_ACCOUNT_INTERVAL = "0.1"
DEMO_TIME = dtime(10, 0)  # the local time of day the scenario runs at


def _photo() -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", (64, 48), (90, 90, 90))
    for x in range(20, 44):
        for y in range(14, 34):
            img.putpixel((x, y), (30, 30, 30))  # a dark square: the loose manhole cover
    img.save(buf, format="JPEG")
    return buf.getvalue()


class Scenario:
    def __init__(self, app: App, sim: SimulatorChannel, base_url: str) -> None:
        self.app, self.sim, self.base = app, sim, base_url
        self.shown: dict[str, int] = {}

    def show(self, *groups: str) -> None:
        for g in groups:
            entries = self.sim.groups.get(g, [])
            for e in entries[self.shown.get(g, 0) :]:
                text = e.text
                if e.image and not e.from_bot:
                    text = (text + " " if text else "") + "[图片]"
                if e.location:
                    text = (text + " " if text else "") + f"[位置] {e.location.get('address', '')}"
                print(f"  [{g}] {e.sender_name}: {text}")
            self.shown[g] = len(entries)

    async def say(self, group: str, sender: str, name: str, text: str, **kw: Any) -> None:
        await self.sim.post(group, sender, name, text, **kw)
        await self.app.settle()
        self.show(group)

    async def wait_for(
        self, what: str, check: Callable[[], Awaitable[bool] | bool], timeout: float = 60
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = check()
            if isinstance(got, Awaitable):
                got = await got
            if got:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"demo: timed out waiting for {what}")


def step(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


async def _scenario(app: App, sim: SimulatorChannel, base: str) -> None:
    sc = Scenario(app, sim, base)
    home, home5, riders = "幸福里3号楼", "幸福里5号楼", "示例社区骑手群"

    step("1. 居民提问：从政策和服务清单里找答案，并注明出处")
    await sc.say(home, "u_liu", "刘阿姨", "@家门口助手 电动车能放楼道里充电吗？", mentions_bot=True)
    await sc.say(home, "u_zhang", "张师傅", "小门 助老食堂几点开饭？")

    step("2. 同一个问题几分钟内再问：指向刚才的回答，不刷屏")
    await sc.say(home, "u_chen", "小陈", "小门 助老食堂几点开饭")

    step("3. 知识库里没有的问题：如实说不知道，可转人工")
    await sc.say(home, "u_chen", "小陈", "小门 小区游泳池夏天几点开门？")
    await sc.say(home, "u_chen", "小陈", "转人工")

    step("4. 骑手带照片和位置反映隐患：登记工单")
    loc = Location(39.1601, 117.2102, "幸福里小区3号楼门口")
    await sim.post(riders, "r_ma", "骑手小马", "", image=_photo(), location=loc)
    await sc.say(riders, "r_ma", "骑手小马", "小门 3号楼门口井盖松了，电动车差点翻了，电话13812345678")

    step("5. 另一位居民反映同一个问题：合并到同一工单")
    await sc.say(home, "u_zhang", "张师傅", "3号楼门口的井盖松动了，晚上很危险，赶紧修一下")

    def sent() -> str | None:
        with app.store.session() as s:
            t = s.scalars(select(Ticket).order_by(Ticket.id)).first()
            return t.remote_id if t is not None and t.sync == "sent" else None

    await sc.wait_for("the ticket to reach the backend", lambda: sent() is not None)
    rid = sent()
    print(f"  （工单已通过 Open311 接口送达工单系统，service_request_id={rid}）")

    step("6. 网格员发布停水通知：预览、确认、限速发送到网格3的两个群")
    staff = dict(group="s_wang", sender="s_wang", name="王网格员")
    for text in ("/通知 网格3 明天9点到12点停水，请提前储水", "确认"):
        await sim.post(staff["group"], staff["sender"], staff["name"], text, private=True)
        await app.settle()
        sc.show(staff["group"])
    await app.tick()
    await app.notices.drain()
    await app.settle()
    sc.show(home, home5)
    await sim.post(staff["group"], staff["sender"], staff["name"], "/通知 状态", private=True)
    await app.settle()
    sc.show(staff["group"])

    step("7. 工作人员在工单系统里办结工单：群里通知并@反映人")
    async with httpx.AsyncClient(base_url=base) as http:
        key = app.config.api_keys[0]
        r = await http.post(
            f"/open311/v2/requests/{rid}/status.json",
            data={
                "api_key": key,
                "status": "closed",
                "status_notes": "已更换井盖",
                "agency_responsible": "街道城管科",
            },
        )
        r.raise_for_status()
    await app.desk.poll_once()  # the webhook usually arrives first; polling is the fallback
    await sc.wait_for(
        "the groups to be told",
        lambda: any("处理完毕" in e.text for e in sim.groups.get(riders, []) if e.from_bot),
        timeout=30,
    )
    await app.settle()
    sc.show(riders, home)

    step("8. 居民查询工单")
    await sc.say(home, "u_zhang", "张师傅", "我的工单")


async def _main() -> None:
    config = load_config()
    sim = SimulatorChannel.from_config(config)
    # The scenario happens at 10:00 local whatever the hour it is run: at night quiet hours would (rightly)
    # hold back the acknowledgements the transcript shows.
    clock = OffsetClock.pinned_at(DEMO_TIME, ZoneInfo(config.main.timezone))
    app = build_app(config, channels={"simulator": sim}, clock=clock)
    server = uvicorn.Server(
        uvicorn.Config(
            create_web_app(app, manage_lifecycle=False),
            host="127.0.0.1",
            port=config.http_port,
            log_level="warning",
        )
    )
    await app.start()
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():
                raise RuntimeError("demo: the web server did not start")
            await asyncio.sleep(0.05)
        await _scenario(app, sim, f"http://127.0.0.1:{config.http_port}")
    finally:
        server.should_exit = True
        await serving
        await app.stop()


def run(args: argparse.Namespace) -> int:
    import socket

    # The index is the configured one (ingested once); the store and the backend's tickets are fresh.
    index_dir = load_config().index_dir
    os.environ.setdefault("DOORSTEP_INDEX", str(index_dir))
    with tempfile.TemporaryDirectory(prefix="doorstep-demo-") as data, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        os.environ["DOORSTEP_DATA"] = data
        os.environ["DOORSTEP_PORT"] = str(port)
        os.environ["DOORSTEP_SEND_LIMITS__ACCOUNT_INTERVAL_SECONDS"] = DEMO_ACCOUNT_INTERVAL
        os.environ["DOORSTEP_SEND_LIMITS__JITTER_SECONDS"] = "0.05"
        print("Doorstep 演示：模拟器里的几个居民群，真实的消息处理流程（知识库、工单系统、通知）。")
        print("（演示按当天上午10点的时间运行，不受夜间免打扰影响。）")
        asyncio.run(_main())
    print("\n演示结束。")
    return 0
