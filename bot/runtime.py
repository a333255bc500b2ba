"""Building a ready App for the commands: config, knowledge (ingesting the sample on first start), tickets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TextIO

from bot.app import App
from bot.config import Config
from bot.knowledge_loading import KnowledgeLoading
from core.ports import Channel, Clock
from knowledge.types import Answerer

log = logging.getLogger(__name__)


def open_knowledge_for(config: Config) -> Answerer:
    """The knowledge service, with the bundled sample ingested on first start with an empty index."""
    from knowledge.service import open_knowledge  # imported here: loading it pulls in the embedding model

    return open_knowledge(config, ingest_sample_if_empty=True)


def build_app(
    config: Config,
    *,
    channels: Mapping[str, Channel] | None = None,
    clock: Clock | None = None,
    with_knowledge: bool = True,
    train_in_background: bool = False,
) -> App:
    knowledge = open_knowledge_for(config) if with_knowledge else None
    return App(
        config, clock=clock, channels=channels, knowledge=knowledge, train_in_background=train_in_background
    )


def load_knowledge_in_background(app: App, console: TextIO | None = None) -> KnowledgeLoading:
    """Open (and on first start, fill) the index in a thread; the app answers questions once it is ready and
    says how far the preparation is until then. Call from the running event loop."""
    loop = asyncio.get_running_loop()
    loading = KnowledgeLoading(app.config, console=console)
    app.knowledge.loading = loading

    def ready(service: Answerer) -> None:
        try:
            loop.call_soon_threadsafe(setattr, app.knowledge, "service", service)
        except RuntimeError:  # the loop closed: the process is stopping
            log.debug("knowledge ready after the event loop closed")

    loading.start(ready)
    return loading
