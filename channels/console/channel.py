"""The console channel, for quick trials: each line typed is a message in one group; replies are printed."""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Sequence
from typing import TextIO

from core.channel import BaseChannel
from core.message import Message, run_prefix
from core.ports import Inbox, Joined


class ConsoleChannel(BaseChannel):
    name = "console"

    def __init__(
        self,
        account: str,
        group: str = "幸福里3号楼",
        sender: str = "u_console",
        sender_name: str = "居民",
        out: TextIO | None = None,
    ) -> None:
        super().__init__(account)
        self.group, self.sender, self.sender_name = group, sender, sender_name
        self.out = out or sys.stdout
        self._run = run_prefix()  # ids stay unique across restarts on the same store
        self._ids = itertools.count(1)
        self._inbox: Inbox | None = None

    async def start(self, inbox: Inbox, joined: Joined | None = None) -> None:
        self._inbox = inbox

    async def stop(self) -> None:
        self._inbox = None

    async def say(self, text: str) -> None:
        """One line from the person at the keyboard; '@' at the start addresses the bot."""
        assert self._inbox is not None, "console channel is not started"
        mentioned = text.startswith("@")
        msg = Message(
            id=f"console-{self._run}-{next(self._ids)}",
            channel=self.name,
            group=self.group,
            group_name=self.group,
            sender=self.sender,
            sender_name=self.sender_name,
            text=text.lstrip("@").strip(),
            mentions_bot=mentioned,
        )
        await self._inbox(msg)

    async def read_stdin(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            if line.strip():
                await self.say(line.strip())

    async def send_text(
        self, group: str, text: str, mentions: Sequence[str] = (), in_reply_to: str = ""
    ) -> None:
        at = " ".join(f"@{m}" for m in mentions)
        print(f"[{group}] 家门口助手: {at + ' ' if at else ''}{text}", file=self.out, flush=True)

    async def send_image(self, group: str, image: bytes, name: str = "image.png") -> None:
        print(f"[{group}] 家门口助手: [图片 {name}, {len(image)} 字节]", file=self.out, flush=True)
