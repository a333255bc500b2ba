"""The console channel: a line typed is a message; the reply is printed."""

from __future__ import annotations

import io

from bot.app import App
from channels.console.channel import ConsoleChannel


async def test_console_round_trip(config, clock) -> None:
    out = io.StringIO()
    console = ConsoleChannel(config.main.bot.account, "幸福里3号楼", "u_console", "居民", out=out)
    app = App(config, clock=clock, channels={"console": console})
    await app.start(background=False)
    try:
        await console.say("@帮助")
        await app.settle()
    finally:
        await app.stop()
    printed = out.getvalue()
    assert printed.startswith("[幸福里3号楼] 家门口助手: @u_console 我是家门口助手")
