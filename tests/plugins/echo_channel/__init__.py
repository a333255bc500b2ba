"""A channel in one package, added by configuration alone:

    channels:
      echo: {module: tests.plugins.echo_channel, group: 回声群}

Its platform is a list: what the bot said, in order. `say` is a person speaking in the channel's group;
`add_bot_to` is the platform telling the channel the bot was added to a group (it `greets_on_join`)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from core.channel import BaseChannel
from core.message import Message, run_prefix
from core.ports import Capabilities, Channel, CommunityConfig, Inbox, Joined
from core.registry import ChannelPlugin


class EchoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group: str = "回声群"


class EchoChannel(BaseChannel):
    name = "echo"
    capabilities = Capabilities(greets_on_join=True, keeps_history=True)

    def __init__(self, account: str, group: str) -> None:
        super().__init__(account)
        self.group = group
        self.said: list[tuple[str, str, tuple[str, ...]]] = []  # (group, text, mentions)
        self._inbox: Inbox | None = None
        self._joined: Joined | None = None
        self._ids = itertools.count(1)
        self._run = run_prefix()

    async def start(self, inbox: Inbox, joined: Joined | None = None) -> None:
        self._inbox, self._joined = inbox, joined

    async def stop(self) -> None:
        self._inbox = self._joined = None

    async def say(self, sender: str, text: str) -> None:
        assert self._inbox is not None, "the echo channel is not started"
        await self._inbox(
            Message(
                id=f"echo-{self._run}-{next(self._ids)}",
                channel=self.name,
                group=self.group,
                sender=sender,
                text=text,
                mentions_bot=True,
            )
        )

    async def add_bot_to(self, group: str) -> None:
        assert self._joined is not None
        await self._joined(group, self.name)

    async def send_text(
        self, group: str, text: str, mentions: Sequence[str] = (), in_reply_to: str = ""
    ) -> None:
        self.said.append((group, text, tuple(mentions)))

    async def send_image(self, group: str, image: bytes, name: str = "image.png") -> None:
        self.said.append((group, f"[图片 {name}]", ()))

    def history(self, group: str) -> list[str]:
        return [text for g, text, _ in self.said if g == group]


def build(settings: EchoSettings, config: CommunityConfig) -> Channel:
    return EchoChannel(config.bot.account, settings.group)


plugin = ChannelPlugin(name="echo", settings=EchoSettings, build=build)
