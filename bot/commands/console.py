"""`doorstep console`: talk to the bot in the terminal, as one person in one group."""

from __future__ import annotations

import argparse
import asyncio

from bot.config import load_config
from bot.runtime import build_app
from channels.console.channel import ConsoleChannel


async def _main(args: argparse.Namespace) -> None:
    config = load_config()
    console = ConsoleChannel(config.main.bot.account, args.group, args.sender, args.name)
    app = build_app(config, channels={"console": console})
    await app.start()
    print(f"在【{args.group}】群里以“{args.name}”的身份说话；以 @ 开头表示@机器人，Ctrl-D 退出。", flush=True)
    try:
        await console.read_stdin()
        await app.settle()
    finally:
        await app.stop()


def run(args: argparse.Namespace) -> int:
    asyncio.run(_main(args))
    return 0
