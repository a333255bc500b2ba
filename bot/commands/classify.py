"""`doorstep classify [MESSAGE] [--json]`: what the bot would do with a group message.

With no MESSAGE, one message per line from stdin, one answer per line (the model is trained once)."""

from __future__ import annotations

import argparse
import json
import sys

from bot.cli import UserError
from bot.config import load_config
from core.intent import Classification, IntentClassifier
from nlp.classifier import load_classifier

INTENT_NAMES = {
    "question": "提问",
    "complaint": "投诉",
    "hazard": "安全隐患",
    "notice": "通知",
    "chitchat": "闲聊",
    "command": "指令",
}


def _human(c: Classification) -> str:
    parts = [f"意图：{INTENT_NAMES.get(c.intent, c.intent)}（{c.intent}）"]
    if c.needs_ticket:
        parts.append(f"需要工单：是，类别 {c.service_code}")
    else:
        parts.append("需要工单：否")
    parts.append(f"地点：{c.location or '无'}")
    parts.append(f"紧急程度：{'紧急' if c.urgency == 'urgent' else '一般'}")
    return "；".join(parts)


def _answer(model: IntentClassifier, text: str, as_json: bool) -> str:
    c = model.classify(text)
    return json.dumps(c.contract_dict(), ensure_ascii=False) if as_json else _human(c)


def run(args: argparse.Namespace) -> int:
    if args.message is not None and not args.message.strip():
        raise UserError("the message is empty")
    config = load_config()
    if args.retrain:
        from bot.commands.train import retrain

        retrain(config)
    model = load_classifier(config)
    if args.message is not None:
        if not args.message.strip():
            raise UserError("the message is empty")
        print(_answer(model, args.message, args.json), flush=True)
        return 0
    try:
        for line in sys.stdin:
            print(_answer(model, line.rstrip("\r\n"), args.json), flush=True)
    except UnicodeDecodeError:
        raise UserError("stdin is not UTF-8 text") from None
    return 0
