"""The daily summary for staff groups (issue 15: "urgent-ticket alerts and daily summaries there").

Once a day, at `tickets.summary_at` local time (or within a few hours after it, if the bot was down), every staff group of `tickets.alert_groups` (e.g. a WeCom staff
group) is owed one message about the day before in its community: new tickets (urgent among them), tickets
closed, what is still open (the urgent ones by number), and how many residents' questions the knowledge could
not answer. It is owed like every other desk message (`ticket_notices`, key `summary:<date>:<channel>:<group>`),
so it is sent through the Sender once, also across restarts and several processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, func, select, true
from sqlalchemy.orm import Session

from store import Store
from store.models import KnowledgeGap, Ticket
from tickets.notify import owe

HEAD = "【每日简报】{scope} {since}至{until}"
COUNTS = "新工单 {new} 件（紧急 {urgent} 件），已办结 {closed} 件；目前仍在处理 {open} 件。"
URGENT_OPEN = "紧急未办结：{items}"
GAPS = "居民有 {n} 个问题资料里没有答案，请在工作台“知识缺口”里补充。"
NO_GAPS = "居民的问题都从资料里答上了。"
MAX_LISTED = 5
LATE = timedelta(hours=4)  # a process that was down at summary time still sends it within this


@dataclass(frozen=True)
class AlertGroup:
    group: str
    channel: str
    community: str  # "" for every community


def _in(community: str, column: Any) -> ColumnElement[bool]:
    return true() if not community else column == community


def summary_text(s: Session, community: str, since: datetime, until: datetime, tz: tzinfo) -> str:
    scope = community or "全部社区"
    new = s.scalars(
        select(Ticket).where(
            _in(community, Ticket.community), Ticket.created_at >= since, Ticket.created_at < until
        )
    ).all()
    closed = s.scalar(
        select(func.count(Ticket.id)).where(
            _in(community, Ticket.community),
            Ticket.status == "closed",
            Ticket.updated_at >= since,
            Ticket.updated_at < until,
        )
    )
    still_open = s.scalars(
        select(Ticket)
        .where(_in(community, Ticket.community), Ticket.status == "open", Ticket.created_at < until)
        .order_by(Ticket.id)
    ).all()
    gaps = s.scalar(
        select(func.count(KnowledgeGap.id)).where(
            _in(community, KnowledgeGap.community),
            KnowledgeGap.asked_at >= since,
            KnowledgeGap.asked_at < until,
        )
    )
    lines = [
        HEAD.format(scope=scope, since=_local(since, tz), until=_local(until, tz)),
        COUNTS.format(
            new=len(new),
            urgent=sum(t.urgency == "urgent" for t in new),
            closed=closed or 0,
            open=len(still_open),
        ),
    ]
    urgent = [t for t in still_open if t.urgency == "urgent"]
    if urgent:
        items = "；".join(f"#{t.id} {t.title}" for t in urgent[:MAX_LISTED])
        more = f" 等{len(urgent)}件" if len(urgent) > MAX_LISTED else ""
        lines.append(URGENT_OPEN.format(items=items + more))
    lines.append(GAPS.format(n=gaps) if gaps else NO_GAPS)
    return "\n".join(lines)


def _local(at: datetime, tz: tzinfo) -> str:
    t = at.astimezone(tz)
    return f"{t.month}月{t.day}日{t.hour}:{t.minute:02d}"


class DailySummary:
    """Owes each alert group its summary once the day's `at` has come; `due` is cheap when nothing is owed."""

    def __init__(self, store: Store, tz: tzinfo, at: time | None, groups: Sequence[AlertGroup]) -> None:
        self.store, self.tz, self.at, self.groups = store, tz, at, tuple(groups)
        self._done: date | None = None  # the day whose summaries this process has owed already

    def due(self, now: datetime) -> int:
        """Owe today's summaries if their time has come; how many were newly owed."""
        if self.at is None or not self.groups:
            return 0
        local = now.astimezone(self.tz)
        until = datetime.combine(local.date(), self.at, tzinfo=self.tz)
        if not until <= local < until + LATE or local.date() == self._done:
            return 0  # not yet, done, or too late: a morning summary is not news in the evening
        since = until - timedelta(days=1)
        owed = 0
        with self.store.session() as s:
            for g in self.groups:
                owed += owe(
                    s,
                    key=f"summary:{local.date().isoformat()}:{g.channel}:{g.group}"[:160],
                    kind="alert",
                    group=g.group,
                    channel=g.channel,
                    text=summary_text(s, g.community, since, until, self.tz),
                )
        self._done = local.date()
        return owed
