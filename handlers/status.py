"""查询工单 #123 and 我的工单: answered from the backend (the local record when it cannot be reached)."""

from __future__ import annotations

import re

from core.handler import Context, Handler, Rule
from core.message import Reply
from core.ports import TicketDesk, TicketView
from core.registry import register

STATUS_OPEN = "处理中"
STATUS_CLOSED = "已处理完毕"
NOT_FOUND = "没有找到工单 #{id}，请核对工单号。"
LOOKUP = "工单 #{id}（{title}）：{status}{agency}{notes}\n服务类别：{service}；反映人数：{n}{sync}"
SYNC_PENDING = "\n（工单系统暂时连不上，已在本地登记，恢复后会自动提交）"
SYNC_PARKED = "\n（工单提交多次未成功，已通知工作人员跟进）"
NONE_OF_MINE = "您还没有反映过问题。遇到问题直接在群里说，比如“3号楼门口井盖松了”，我会登记工单。"
MINE_HEAD = "您反映过的工单（最近{n}个）："
MINE_LINE = "#{id} {title}：{status}"

_LOOKUP = re.compile(
    r"^[/／]?(?:(?:查询|查一下|查下|查)\s*工单\s*[#＃]?\s*(\d{1,9})"
    r"|工单\s*[#＃]?\s*(\d{1,9})\s*(?:的)?(?:进度|怎么样|到哪|处理到|状态|好了没|处理了吗))"
)
_MINE = re.compile(r"^[/／]?(?:查询?|查一下|查下)?\s*我的工单")


def _is_status(c: Context) -> bool:
    t = c.text.strip()
    return bool(_MINE.match(t) or _LOOKUP.match(t))


def _status_text(t: TicketView) -> str:
    return STATUS_CLOSED if t.status == "closed" else STATUS_OPEN


@register
class StatusHandler(Handler):
    name = "status"
    priority = 30
    rule = Rule(_is_status, "ticket status")
    usage = "查工单：发“查询工单 #123”或“我的工单”"
    usage_rank = 3

    async def handle(self, ctx: Context) -> list[Reply]:
        desk = self.services.tickets
        t = ctx.text.strip()
        if _MINE.match(t):
            return [await self._mine(desk, ctx)]
        m = _LOOKUP.match(t)
        assert m is not None
        return [await self._lookup(desk, ctx, int(m.group(1) or m.group(2)))]

    async def _lookup(self, desk: TicketDesk, ctx: Context, ticket_id: int) -> Reply:
        found = desk.ticket(ticket_id)
        if found is None:
            return ctx.reply(NOT_FOUND.format(id=ticket_id), kind="status")
        reached = await desk.refresh([found.id])
        t = desk.ticket(ticket_id) or found
        sync = (
            SYNC_PARKED if t.sync == "parked" else SYNC_PENDING if t.sync == "pending" or not reached else ""
        )
        return ctx.reply(
            LOOKUP.format(
                id=t.id,
                title=t.title,
                status=_status_text(t),
                service=t.service_name,
                n=t.reporters,
                sync=sync,
                agency=f"，负责单位：{t.agency}" if t.agency else "",
                notes=f"，说明：{t.status_notes}" if t.status_notes else "",
            ),
            kind="status",
        )

    async def _mine(self, desk: TicketDesk, ctx: Context) -> Reply:
        tickets = desk.tickets_of(ctx.message.sender)
        if not tickets:
            return ctx.reply(NONE_OF_MINE, kind="status")
        await desk.refresh([t.id for t in tickets])
        tickets = desk.tickets_of(ctx.message.sender)
        lines = [MINE_HEAD.format(n=len(tickets))]
        lines += [MINE_LINE.format(id=t.id, title=t.title, status=_status_text(t)) for t in tickets]
        return ctx.reply("\n".join(lines), kind="status")
