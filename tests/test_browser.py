"""The simulator page in a real headless browser (Debian's chromium driven by Playwright):
post a message as a resident, see the bot's reply appear."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn

from bot.app import App
from bot.clock import ManualClock
from bot.config import Config
from bot.web.app import create_web_app
from channels.simulator.channel import SimulatorChannel
from tests.browsers import CHROMIUM, CHROMIUM_ARGS, needs_chromium

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(config: Config, clock: ManualClock) -> Iterator[str]:
    """`serve`'s HTTP app with the simulator channel, on a real loopback port in a thread of its own; the
    virtual clock reads 10:00 local, so the test does not depend on the hour it runs at."""
    port = free_port()
    app = App(config, clock=clock, channels={"simulator": SimulatorChannel.from_config(config)})
    server = uvicorn.Server(
        uvicorn.Config(create_web_app(app), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    import time

    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for a real server to bind, not pacing the test
    assert server.started, "the web server did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@needs_chromium
def test_post_in_the_page_and_see_the_reply(server: str, tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
        )
        try:
            page = browser.new_page()
            page.goto(server + "/")
            group = page.locator("section.group", has=page.locator("h2", has_text="幸福里3号楼"))
            expect(group).to_be_visible()
            page.select_option("#persona", "u_liu")
            group.locator("textarea").fill("@家门口助手 帮助")
            group.locator("button[type=submit]").click()
            reply = group.locator(".msg.bot .bubble")
            expect(reply.first).to_contain_text("我是家门口助手", timeout=15_000)
            expect(group.locator(".msg:not(.bot) .who").first).to_have_text("刘阿姨")
            page.screenshot(path=str(tmp_path / "simulator.png"), full_page=True)

            # "发位置" sends coordinates only when the person types them: no default pin for every report
            posted: list[dict] = []
            page.on(
                "request",
                lambda req: posted.append(req.post_data_json) if req.url.endswith("/sim/messages") else None,
            )
            group.locator("textarea").fill("3号楼门口井盖松了")
            group.locator("label", has_text="发位置").locator("input").check()
            group.locator("input[placeholder^='位置']").fill("3号楼门口")
            group.locator("button[type=submit]").click()
            expect(group.locator(".msg:not(.bot) .bubble", has_text="[位置] 3号楼门口")).to_be_visible()
            assert posted[-1]["location"] == {"address": "3号楼门口"}
            group.locator("textarea").fill("南门口井盖没了")
            group.locator("label", has_text="发位置").locator("input").check()
            group.locator("input[placeholder^='位置']").fill("南门口")
            group.locator("input[placeholder^='坐标']").fill("39.1601, 117.2102")
            group.locator("button[type=submit]").click()
            expect(group.locator(".msg:not(.bot) .bubble", has_text="[位置] 南门口")).to_be_visible()
            assert posted[-1]["location"] == {"address": "南门口", "lat": 39.1601, "lon": 117.2102}

            # 引用: a quoted reply to the bot's acknowledgement adds to that ticket
            ack = group.locator(".msg.bot", has_text="已收到，工单号 #1")
            ack.locator(".act", has_text="引用").click()
            expect(group.locator(".quoting")).to_contain_text("引用 家门口助手")
            group.locator("textarea").fill("补充一下：旁边的路面也裂了")
            group.locator("button[type=submit]").click()
            expect(group.locator(".msg.bot .bubble", has_text="已补充到工单 #1")).to_be_visible(
                timeout=15_000
            )
            assert posted[-1]["quoted"].startswith("@刘阿姨 已收到，工单号 #1")
            expect(group.locator(".msg:not(.bot) .quote").first).to_contain_text("已收到，工单号 #1")

            # a non-image file chosen as the photo gets a clear Chinese error under the form
            bad = tmp_path / "not-an-image.jpg"
            bad.write_bytes(b"this is a text file, not a photo")
            group.locator("textarea").fill("看看这张照片")
            group.locator("input[type=file]").set_input_files(str(bad))
            group.locator("button[type=submit]").click()
            expect(group.locator(".err")).to_have_text("这个文件不是图片，请发送照片。", timeout=10_000)
        finally:
            browser.close()
