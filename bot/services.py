"""What handlers may use, wired once by the app. Parts that are not configured are None."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.clock import Clock
from bot.config import Config
from bot.conversations import Conversations
from bot.sender import ThrottledSender
from bot.store import Store
from handlers.intent import IntentClassifier
from knowledge.types import Answerer


@dataclass
class Services:
    config: Config
    store: Store
    clock: Clock
    classifier: IntentClassifier
    sender: ThrottledSender
    conversations: Conversations = field(default_factory=Conversations)
    knowledge: Answerer | None = None
    knowledge_loading: Any = None  # bot.knowledge_loading.KnowledgeLoading while `serve` opens the index
    tickets: Any = None  # handlers.tickets: the report desk (issue: tickets)
    notices: Any = None  # handlers.notices: the broadcaster (issue: staff)
    group_channels: dict[str, str] = field(
        default_factory=dict
    )  # group id -> the channel it was last seen on
