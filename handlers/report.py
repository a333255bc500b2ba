"""Complaints and hazards become tickets (tickets/desk.py and its follow-up flow, tickets/followup.py).

The report is committed before anything is said. Photos and a WeChat location from the same person in the
same group within a minute (before or after the words) join it. Without a place the bot asks once
("请问具体位置在哪里？") and files anyway when the wait is over; a late answer still gives the ticket its place.
The acknowledgement ("已收到，工单号 #123，已转交【市政设施】") or the merge notice is owed durably and sent by the
desk. A quoted reply (引用) to the bot's message about a ticket ("补充一下：…", a photo, a location) is claimed
before the group's policy and adds to that ticket ("已补充到工单 #123"); thanks quoting it are left to small talk.
"""

from __future__ import annotations

from pydantic import BaseModel

from core.conversation import Conversation
from core.handler import Context, Handler, Rule
from core.message import Reply
from core.ports import Intake, Services
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

    def __init__(self, services: Services, settings: BaseModel | None = None) -> None:
        super().__init__(services, settings)
        self._supplements: dict[str, int] = {}  # message id -> ticket, from `claims` to `handle`

    async def observe(self, ctx: Context) -> None:
        self.services.tickets.observe(ctx.message)

    def claims(self, ctx: Context) -> bool:
        ticket_id = self._supplemented(ctx)
        if ticket_id is None:
            return False
        self._supplements[ctx.message.id] = ticket_id
        return True

    def _supplemented(self, ctx: Context) -> int | None:
        """The ticket a quoted reply adds to: words, a photo or a location, not a command nor only thanks."""
        msg = ctx.message
        if not msg.quoted or ctx.text.lstrip().startswith(("/", "／")):
            return None
        if not (msg.images or msg.location):
            if not ctx.text.strip():
                return None
            c = self.services.classifier.classify(ctx.text)
            if c.small_talk or (c.intent == "chitchat" and not c.names_problem):
                return None  # "谢谢" quoting the acknowledgement: said to the bot, answered as small talk
        return self.services.tickets.quoted_ticket(msg)

    async def handle(self, ctx: Context) -> list[Reply]:
        desk = self.services.tickets
        ticket_id = self._supplements.pop(ctx.message.id, None)
        if ticket_id is not None:
            return self.advance(ctx.message, desk.supplement(_intake(ctx), ticket_id)) or []
        return self.advance(ctx.message, desk.take(_intake(ctx))) or []

    async def followup(self, ctx: Context, conv: Conversation) -> list[Reply] | None:
        return self.advance(ctx.message, self.services.tickets.follow(_intake(ctx), conv), conv)

    async def expire(self, conv: Conversation) -> list[Reply]:
        return self.services.tickets.expire(conv)
