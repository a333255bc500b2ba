"""The console channel, for quick trials: each line typed is a message in one group; replies are printed."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from channels.console.channel import ConsoleChannel
from core.ports import Channel, CommunityConfig
from core.registry import ChannelPlugin


class ConsoleSettings(BaseModel):
    """`channels: {console: true}` or `channels: {console: {group: 幸福里3号楼, sender: u_console}}`."""

    model_config = ConfigDict(extra="forbid")

    group: str = "幸福里3号楼"
    sender: str = "u_console"
    sender_name: str = "居民"


def build(settings: ConsoleSettings, config: CommunityConfig) -> Channel:
    return ConsoleChannel(config.bot.account, settings.group, settings.sender, settings.sender_name)


plugin = ChannelPlugin(name="console", settings=ConsoleSettings, build=build)

__all__ = ["ConsoleChannel", "ConsoleSettings", "plugin"]
