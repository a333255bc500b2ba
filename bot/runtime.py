"""Building a ready App for the commands: config, knowledge (ingesting the sample on first start), tickets."""

from __future__ import annotations

from typing import Any

from bot.app import App
from bot.channels import Channel
from bot.clock import Clock
from bot.config import Config


def open_knowledge_for(config: Config) -> Any:
    """The knowledge service, with the bundled sample ingested on first start with an empty index."""
    from knowledge.service import open_knowledge  # imported here: loading it pulls in the embedding model

    return open_knowledge(config, ingest_sample_if_empty=True)


def build_app(
    config: Config,
    *,
    channels: dict[str, Channel] | None = None,
    clock: Clock | None = None,
    with_knowledge: bool = True,
) -> App:
    knowledge = open_knowledge_for(config) if with_knowledge else None
    return App(config, clock=clock, channels=channels, knowledge=knowledge)
