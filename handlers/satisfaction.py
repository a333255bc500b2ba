"""Answers to "请对处理结果评价": 满意 / 基本满意 / 不满意 (with the reason) from a reporter of a closed ticket.

The question and its state live in the store (bot/tickets/satisfaction.py); this handler claims the answer
before the group's policy, since a bare "满意" is not addressed to the bot and would otherwise be ignored, and
a "不满意，井盖还是松的" would be filed as a new report.
"""

from __future__ import annotations

import logging
from typing import cast

from bot.message import Reply
from bot.tickets import satisfaction
from handlers.base import Context, Handler, register

log = logging.getLogger(__name__)


@register
class SatisfactionHandler(Handler):
    name = "satisfaction"
    priority = 5

    def claims(self, ctx: Context) -> bool:
        msg = ctx.message
        if not ctx.text.strip() or ctx.text.lstrip().startswith(("/", "／")):
            return False
        where = msg.sender if msg.private else msg.group
        now = self.services.clock.now()
        rating = satisfaction.parse_rating(ctx.text)
        survey = satisfaction.open_survey(
            self.services.store, where, msg.sender, now, rating.ticket_id if rating else None
        )
        if survey is None or (rating is None and survey.state != "reason"):
            return False
        ctx.extra["survey"] = (survey.id, survey.state, rating)
        return True

    def check(self, ctx: Context) -> bool:
        return False  # only ever reached through `claims`

    async def handle(self, ctx: Context) -> list[Reply]:
        survey_id, _state, rating = cast(tuple[int, str, satisfaction.Rating | None], ctx.extra["survey"])
        svc = self.services
        if rating is None:  # the words after a bare 不满意: the reason
            value, reason = "unsatisfied", ctx.text.strip()[:500]
        else:
            value, reason = rating.rating, rating.reason
        if svc.tickets is None:
            return []
        done = await svc.tickets.rate(survey_id, value, reason)
        return [] if done is None else [ctx.reply(done.reply, kind="ack")]
