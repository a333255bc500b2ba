"""The simulator channel (the embedded default): a web page of several groups, at `/` and `/sim/...`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from channels.simulator.channel import SimulatorChannel
from core.ports import Channel, CommunityConfig
from core.registry import ChannelPlugin


class SimulatorSettings(BaseModel):
    """`channels: {simulator: true}` or `channels: {simulator: {}}`."""

    model_config = ConfigDict(extra="forbid")


def build(settings: SimulatorSettings, config: CommunityConfig) -> Channel:
    return SimulatorChannel.from_config(config)


plugin = ChannelPlugin(name="simulator", settings=SimulatorSettings, build=build)

__all__ = ["SimulatorChannel", "SimulatorSettings", "plugin"]
