"""WeChat groups through a Wechaty puppet service (see channel.py for the SDK and its workarounds).

Runs when a puppet token is set: `channels: {wechaty: {token: ..., endpoint: host:port}}`, or the contract's
`$WECHATY_PUPPET_SERVICE_TOKEN` / `$WECHATY_PUPPET_SERVICE_ENDPOINT` (the config's older keys
`channels.wechaty_token` / `channels.wechaty_endpoint` still work)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from channels.wechaty.channel import WechatyChannel
from core.ports import Channel, CommunityConfig
from core.registry import ChannelPlugin


class WechatySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = ""  # the puppet service token; empty: the channel does not run
    endpoint: str = ""  # host:port of the puppet service; empty: discovered from the token
    connect_timeout: float = Field(10.0, gt=0)
    rpc_timeout: float = Field(15.0, gt=0)
    keepalive_seconds: float = Field(30.0, gt=0)


def build(settings: WechatySettings, config: CommunityConfig) -> Channel:
    return WechatyChannel(
        config.bot.account,
        endpoint=settings.endpoint,
        token=settings.token,
        bot_name=config.bot.name,
        aliases=config.bot.aliases,
        groups=config.group_list,
        connect_timeout=settings.connect_timeout,
        rpc_timeout=settings.rpc_timeout,
        keepalive_seconds=settings.keepalive_seconds,
    )


plugin = ChannelPlugin(
    name="wechaty", settings=WechatySettings, build=build, enabled=lambda s: bool(s.token.strip())
)

__all__ = ["WechatyChannel", "WechatySettings", "plugin"]
