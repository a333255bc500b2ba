"""A channel whose platform is two files, for tests that run the bot as a real process they can kill:
the test appends messages to inbox.jsonl; the bot appends what it says to sent.jsonl (fsynced, so nothing the
bot said is lost when the process is killed)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.channel import BaseChannel
from core.message import Message
from core.ports import Capabilities, Inbox, Joined


def read_sent(workdir: Path) -> list[dict[str, Any]]:
    """What the bot has said so far (complete lines only: a killed writer may leave half a line)."""
    p = workdir / "sent.jsonl"
    if not p.exists():
        return []
    data = p.read_bytes()
    data = data[: data.rfind(b"\n") + 1]
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


class SpoolChannel(BaseChannel):
    name = "spool"
    capabilities = Capabilities(keeps_history=True)  # like the simulator: a send in doubt is settled from it

    def __init__(self, workdir: Path, account: str = "doorstep-bot", poll_seconds: float = 0.05) -> None:
        super().__init__(account)
        self.workdir = workdir
        self.inbox_path = workdir / "inbox.jsonl"
        self.sent_path = workdir / "sent.jsonl"
        self.poll_seconds = poll_seconds
        self._task: asyncio.Task[None] | None = None

    async def start(self, inbox: Inbox, joined: Joined | None = None) -> None:
        self._task = asyncio.create_task(self._follow(inbox))

    async def _follow(self, inbox: Inbox) -> None:
        offset = 0
        while True:  # a file is the platform: it is polled, as a real platform's stream would be read
            data = self.inbox_path.read_bytes() if self.inbox_path.exists() else b""
            end = data.rfind(b"\n") + 1
            for line in data[offset:end].splitlines():
                d = json.loads(line)
                await inbox(
                    Message(
                        id=d["id"],
                        channel="spool",
                        group=d["group"],
                        sender=d["sender"],
                        sender_name=d["sender_name"],
                        text=d["text"],
                        mentions_bot=True,
                    )
                )
            offset = end
            await asyncio.sleep(self.poll_seconds)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def send_text(
        self, group: str, text: str, mentions: Sequence[str] = (), in_reply_to: str = ""
    ) -> None:
        line = {"group": group, "text": text, "mentions": list(mentions), "t": time.time()}
        with self.sent_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    async def send_image(self, group: str, image: bytes, name: str = "image.png") -> None:
        pass

    def history(self, group: str) -> list[str]:
        """What the bot said in the group, as the platform keeps it (declared: `keeps_history`)."""
        return [d["text"] for d in read_sent(self.workdir) if d["group"] == group]
