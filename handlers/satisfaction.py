"""Answers to "请对处理结果评价": 满意 / 基本满意 / 不满意 (with the reason) from a reporter of a closed ticket.

The question and its state live with the ticket desk (tickets/satisfaction.py), reached through the
`TicketDesk` port. This handler claims the answer before the group's policy (`Handler.claims`), since a bare
"满意" is not addressed to the bot and would otherwise be ignored, and a "不满意，井盖还是松的" would be filed as
a new report.
"""

from __future__ import annotations

from core.handler import Context, Handler
from core.message import Reply
from core.registry import register


def _where(ctx: Context) -> str:
    """Where the question was asked: the group, or the private chat (the person's id)."""
    msg = ctx.message
    return msg.sender if msg.private else msg.group


@register
class SatisfactionHandler(Handler):
    name = "satisfaction"
    priority = 5

    def claims(self, ctx: Context) -> bool:
        text = ctx.text.strip()
        if not text or text.startswith(("/", "／")):
            return False
        return self.services.tickets.surveyed(_where(ctx), ctx.message.sender, text)

    def check(self, ctx: Context) -> bool:
        return False  # only ever reached through `claims`

    async def handle(self, ctx: Context) -> list[Reply]:
        said = await self.services.tickets.answer_survey(_where(ctx), ctx.message.sender, ctx.text.strip())
        return [] if said is None else [ctx.reply(said, kind="ack")]
