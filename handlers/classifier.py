"""Intent classification. INTERIM: a small keyword baseline so the foundation routes messages;
the tickets issue replaces it with a trained model (see handlers/intent.py for the interface)."""

from __future__ import annotations

import re

from bot.config import Config
from handlers.intent import Classification, IntentClassifier

_QUESTION = re.compile(r"[?？]|吗|呢|怎么|如何|哪里|哪儿|几点|多少|什么|能不能|可以不|是否|请问")
_HAZARD = ("井盖", "电线", "燃气", "煤气", "着火", "冒烟", "塌", "漏电", "坠物")
_COMPLAINT = ("坏了", "不亮", "堵", "漏水", "太吵", "噪音", "乱停", "没人管", "垃圾", "投诉", "报修")


class KeywordClassifier:
    def classify(self, text: str) -> Classification:
        t = text.strip()
        if t.startswith(("/", "／", "帮助", "查询工单", "我的工单")):
            return Classification(intent="command")
        if any(k in t for k in _HAZARD):
            return Classification(intent="hazard", needs_ticket=True, service_code="public_safety")
        if any(k in t for k in _COMPLAINT):
            return Classification(intent="complaint", needs_ticket=True, service_code="other")
        if _QUESTION.search(t):
            return Classification(intent="question")
        return Classification(intent="chitchat", confidence=0.5)


def load_classifier(config: Config) -> IntentClassifier:
    return KeywordClassifier()
