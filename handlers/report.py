"""Complaints and hazards become tickets (tickets/desk.py and its follow-up flow, tickets/followup.py).

The report is committed before anything is said. Photos and a WeChat location from the same person in the
same group within a minute (before or after the words) join it. Without a place the bot asks once
("请问具体位置在哪里？") and files anyway when the wait is over. The acknowledgement ("已收到，工单号 #123，
已转交【市政设施】") or the merge notice is owed durably and sent by the desk.
"""

from __future__ import annotations

from core.conversation import Conversation
from core.handler import Context, Handler, Rule
from core.message import Reply
from core.ports import Intake
from core.registry import register


def _needs_ticket(c: Context) -> bool:
    return c.classification.needs_ticket


def _intake(ctx: Context) -> Intake:
    return Intake(ctx.message, ctx.classification, ctx.text, ctx.quiet_until)


@register
class ReportHandler(Handler):
    name = "report"
    priority = 40
    rule = Rule(_needs_ticket, "needs a ticket")
    usage = "反映问题：说清楚什么问题、在哪里，可以带照片或位置，如“3号楼门口井盖松了”，我会登记工单并告诉您工单号，处理好了会在群里通知"
    usage_rank = 2

    async def observe(self, ctx: Context) -> None:
        self.services.tickets.observe(ctx.message)

    async def handle(self, ctx: Context) -> list[Reply]:
        return self.advance(ctx.message, self.services.tickets.take(_intake(ctx))) or []

    async def followup(self, ctx: Context, conv: Conversation) -> list[Reply] | None:
        return self.advance(ctx.message, self.services.tickets.follow(_intake(ctx), conv), conv)

    async def expire(self, conv: Conversation) -> list[Reply]:
        return self.services.tickets.expire(conv)
