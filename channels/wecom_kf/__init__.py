"""WeCom customer service (微信客服) for residents: `channels: {wecom_kf: {corpid, secret, token,
encoding_aes_key, accounts: [{open_kfid, community}]}}` (docs/wecom.md)."""

from __future__ import annotations

from channels.wecom_kf.channel import WecomKfChannel
from channels.wecom_kf.settings import WecomKfSettings
from core.ports import Channel, CommunityConfig
from core.registry import ChannelPlugin


def build(settings: WecomKfSettings, config: CommunityConfig) -> Channel:
    return WecomKfChannel.from_config(settings, config)


plugin = ChannelPlugin(name="wecom_kf", settings=WecomKfSettings, build=build, enabled=lambda s: s.enabled)

__all__ = ["WecomKfChannel", "WecomKfSettings", "plugin"]
