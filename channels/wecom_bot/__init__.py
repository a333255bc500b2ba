"""The WeCom AI bot (企业微信智能机器人) in staff groups: `channels: {wecom_bot: {bot_id, secret, ...}}`, or the
contract's DOORSTEP_WECOM_BOT_ID / DOORSTEP_WECOM_BOT_SECRET / DOORSTEP_WECOM_WS_URL (docs/wecom.md)."""

from __future__ import annotations

from channels.wecom_bot.channel import WecomBotChannel
from channels.wecom_bot.settings import WecomBotSettings
from core.ports import Channel, CommunityConfig
from core.registry import ChannelPlugin


def build(settings: WecomBotSettings, config: CommunityConfig) -> Channel:
    return WecomBotChannel.from_config(settings, config)


plugin = ChannelPlugin(name="wecom_bot", settings=WecomBotSettings, build=build, enabled=lambda s: s.enabled)

__all__ = ["WecomBotChannel", "WecomBotSettings", "plugin"]
