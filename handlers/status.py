"""查询工单 #123 and 我的工单: answered from the backend (the local record when it cannot be reached)."""

from __future__ import annotations

import re

from bot.message import Reply
from bot.store.models import Ticket
from bot.tickets import texts
from bot.tickets.desk import ReportDesk
from handlers.base import Context, Handler, Rule, register

_LOOKUP = re.compile(
    r"^[/／]?(?:(?:查询|查一下|查下|查)\s*工单\s*[#＃]?\s*(\d{1,9})"
    r"|工单\s*[#＃]?\s*(\d{1,9})\s*(?:的)?(?:进度|怎么样|到哪|处理到|状态|好了没|处理了吗))"
)
_MINE = re.compile(r"^[/／]?(?:查询?|查一下|查下)?\s*我的工单")


def _is_status(c: Context) -> bool:
    t = c.text.strip()
    return bool(_MINE.match(t) or _LOOKUP.match(t))


def _status_text(t: Ticket) -> str:
    return texts.STATUS_CLOSED if t.status == "closed" else texts.STATUS_OPEN


@register
class StatusHandler(Handler):
    name = "status"
    priority = 30
    rule = Rule(_is_status, "ticket status")

    async def handle(self, ctx: Context) -> list[Reply]:
        desk = self.services.tickets
        if not isinstance(desk, ReportDesk):
            return [ctx.reply("抱歉，工单查询暂时不可用。", kind="error")]
        t = ctx.text.strip()
        if _MINE.match(t):
            return [await self._mine(desk, ctx)]
        m = _LOOKUP.match(t)
        assert m is not None
        return [await self._lookup(desk, ctx, int(m.group(1) or m.group(2)))]

    async def _lookup(self, desk: ReportDesk, ctx: Context, ticket_id: int) -> Reply:
        found = desk.ticket(ticket_id)
        if found is None:
            return ctx.reply(texts.NOT_FOUND.format(id=ticket_id), kind="status")
        reached = await desk.refresh([found[0]])
        t, n = desk.ticket(ticket_id) or found
        sync = (
            texts.SYNC_PARKED
            if t.sync == "parked"
            else texts.SYNC_PENDING
            if t.sync == "pending" or not reached
            else ""
        )
        return ctx.reply(
            texts.LOOKUP.format(
                id=t.id,
                title=t.title,
                status=_status_text(t),
                service=t.service_name,
                n=n,
                sync=sync,
                agency=f"，负责单位：{t.agency}" if t.agency else "",
                notes=f"，说明：{t.status_notes}" if t.status_notes else "",
            ),
            kind="status",
        )

    async def _mine(self, desk: ReportDesk, ctx: Context) -> Reply:
        tickets = desk.tickets_of(ctx.message.sender)
        if not tickets:
            return ctx.reply(texts.NONE_OF_MINE, kind="status")
        await desk.refresh(tickets)
        tickets = desk.tickets_of(ctx.message.sender)
        lines = [texts.MINE_HEAD.format(n=len(tickets))]
        lines += [texts.MINE_LINE.format(id=t.id, title=t.title, status=_status_text(t)) for t in tickets]
        return ctx.reply("\n".join(lines), kind="status")
