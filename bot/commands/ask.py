"""`doorstep ask [QUESTION] [--index DIR] [--json] [--community NAME]`: answer one question, or with no
QUESTION one per line from stdin, one answer per line (the model and index are loaded once)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from bot.cli import UserError
from bot.config import load_config
from knowledge.cli import open_for_command
from knowledge.service import KnowledgeService
from knowledge.types import Answer

log = logging.getLogger(__name__)


def _answer(service: KnowledgeService, question: str, community: str | None) -> Answer:
    try:
        return service.answer(question, community)
    except Exception as e:  # one bad question must not end a batch of thousands
        log.exception("answering %r failed", question[:80])
        return Answer(
            question=question,
            found=False,
            answer=f"抱歉，处理这个问题时出错了（{type(e).__name__}）。",
            via="none",
        )


def _show(a: Answer, as_json: bool) -> str:
    if as_json:
        return json.dumps(a.contract_dict(), ensure_ascii=False)
    return f"{a.answer}\n（{'已找到' if a.found else '未找到'}，{a.latency_ms:.0f} ms）"


def run(args: argparse.Namespace) -> int:
    if args.question is not None and not args.question.strip():
        raise UserError("the question is empty")
    _, service = open_for_command(load_config(), args.index, ingest_sample_if_empty=True)
    community = args.community or None
    try:
        service.warm_up()  # latency_ms then reports a warm answer, as the bot gives them
        if args.question is not None:
            print(_show(_answer(service, args.question, community), args.json))
            return 0
        for line in sys.stdin:
            print(_show(_answer(service, line.rstrip("\r\n"), community), args.json), flush=True)
        return 0
    finally:
        service.close()
