"""Channels, each one module behind `bot.channels.base.Channel`. Add a channel by writing a module and
naming it here; the router does not change."""

from __future__ import annotations

import importlib

from bot.channels.base import Channel, ChannelError, Inbox

# name -> "module:Class"; imported lazily so a channel's heavy SDK loads only when it is used
CHANNELS: dict[str, str] = {
    "simulator": "bot.channels.simulator:SimulatorChannel",
    "console": "bot.channels.console:ConsoleChannel",
    "wechaty": "bot.channels.wechaty:WechatyChannel",
    "wecom_bot": "channels.wecom_bot.channel:WecomBotChannel",  # docs/wecom.md
    "wecom_kf": "channels.wecom_kf.channel:WecomKfChannel",
}


def channel_class(name: str) -> type[Channel]:
    module, _, cls = CHANNELS[name].partition(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


__all__ = ["CHANNELS", "Channel", "ChannelError", "Inbox", "channel_class"]
