"""How the community is doing, as the 12345 systems judge it, over the tickets a staff member reaches.

- tickets per service per week (by the week a ticket was filed, Monday to Sunday, local time);
- time to first response: from filing to the first thing staff did about it (a note, a status change, a
  re-route, a split: the ticket's history), median per week, in hours;
- time to closing: from filing to its (latest) closing, median per week, in hours;
- share resolved: tickets filed that week that are closed now;
- 满意率: (满意 + 基本满意) / the answers given; questions nobody answered within the time are shown apart and
  never counted as satisfied;
- hot spots: the places most reported (a ticket counts once per place);
- unanswered questions per week: knowledge gaps recorded, and how many of them are answered by now.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from statistics import median
from typing import Any

from sqlalchemy import select

from core.community import StaffMember
from core.ports import RATINGS
from pii import mask_pii
from store import Store
from store.models import KnowledgeGap, SatisfactionSurvey, Ticket, TicketCorrection, TicketEvent
from workbench import svg
from workbench.roles import reaches

DEFAULT_WEEKS = 8


def week_start(t: datetime, tz: tzinfo) -> datetime:
    local = t.astimezone(tz)
    day = local - timedelta(days=local.weekday())
    return day.replace(hour=0, minute=0, second=0, microsecond=0)


def _label(w: datetime) -> str:
    return f"{w.month}/{w.day}"


@dataclass
class Figures:
    weeks: list[str]
    per_service: list[tuple[str, list[float]]]
    first_response_h: list[float | None]
    closing_h: list[float | None]
    resolved: float | None
    resolved_n: tuple[int, int]
    satisfaction: float | None
    ratings: dict[str, int]
    hot_spots: list[tuple[str, float]]
    gaps: list[tuple[str, list[float]]]
    table: list[dict[str, Any]] = field(default_factory=list)

    def charts(self) -> dict[str, str]:
        return {
            "per_service": svg.stacked_bars("每周工单数（按类别）", self.weeks, self.per_service),
            "times": svg.lines(
                "首次响应与办结用时（中位数）",
                self.weeks,
                [("首次响应", self.first_response_h), ("办结", self.closing_h)],
                "h",
            ),
            "resolved": svg.gauge(
                "解决率", self.resolved, f"已办结 {self.resolved_n[0]}/{self.resolved_n[1]}"
            ),
            "satisfaction": svg.gauge(
                "满意率",
                self.satisfaction,
                f"评价 {self.ratings['satisfied'] + self.ratings['basic'] + self.ratings['unsatisfied']} 条",
            ),
            "hot_spots": svg.hbars("反映最多的地点", self.hot_spots),
            "gaps": svg.stacked_bars("每周没答上的问题", self.weeks, self.gaps),
        }


def scoped_tickets(store: Store, staff: StaffMember, since: datetime | None = None) -> list[Ticket]:
    with store.session() as s:
        q = select(Ticket).order_by(Ticket.id)
        if since is not None:
            q = q.where(Ticket.created_at >= since)
        return [t for t in s.scalars(q) if reaches(staff, t.community, t.grid)]


def _hours(a: datetime, b: datetime) -> float:
    return max(0.0, (b - a).total_seconds() / 3600)


def compute(
    store: Store,
    staff: StaffMember,
    now: datetime,
    tz: tzinfo,
    grid_of: Callable[[str], str],
    weeks: int = DEFAULT_WEEKS,
) -> Figures:
    """`grid_of(group_id)`: the grid a group is bound to (questions are kept with their group and community)."""
    first_week = week_start(now, tz) - timedelta(weeks=weeks - 1)
    starts = [first_week + timedelta(weeks=i) for i in range(weeks)]
    labels = [_label(w) for w in starts]
    tickets = scoped_tickets(store, staff, first_week)
    ids = [t.id for t in tickets]
    events: dict[int, list[TicketEvent]] = defaultdict(list)
    corrections: dict[int, list[datetime]] = defaultdict(list)
    surveys: list[SatisfactionSurvey] = []
    with store.session() as s:
        if ids:
            for e in s.scalars(
                select(TicketEvent).where(TicketEvent.ticket_id.in_(ids)).order_by(TicketEvent.id)
            ):
                events[e.ticket_id].append(e)
            for c in s.scalars(select(TicketCorrection).where(TicketCorrection.ticket_id.in_(ids))):
                corrections[c.ticket_id].append(c.created_at)
            surveys = list(s.scalars(select(SatisfactionSurvey).where(SatisfactionSurvey.ticket_id.in_(ids))))
        gaps = [
            g
            for g in s.scalars(select(KnowledgeGap).where(KnowledgeGap.asked_at >= first_week))
            if reaches(staff, g.community, grid_of(g.group_id))
        ]

    def week_of(t: datetime) -> int | None:
        i = (week_start(t, tz) - first_week).days // 7
        return i if 0 <= i < weeks else None

    names: dict[str, str] = {}
    counts: dict[str, list[float]] = defaultdict(lambda: [0.0] * weeks)
    first: list[list[float]] = [[] for _ in range(weeks)]
    closing: list[list[float]] = [[] for _ in range(weeks)]
    places: Counter[str] = Counter()
    closed = 0
    table = []
    for t in tickets:
        w = week_of(t.created_at)
        if w is None:
            continue
        names[t.service_code] = t.service_name or t.service_code
        counts[t.service_code][w] += 1
        acted = [e.created_at for e in events[t.id] if e.staff_id or e.kind == "status"]
        acted += corrections[t.id]
        fr = min(acted) if acted else None
        if fr is not None:
            first[w].append(_hours(t.created_at, fr))
        closes = [e.created_at for e in events[t.id] if e.kind == "status" and e.status == "closed"]
        closed_at = max(closes) if closes else (t.updated_at if t.status == "closed" else None)
        if t.status == "closed":
            closed += 1
            if closed_at is not None:
                closing[w].append(_hours(t.created_at, closed_at))
        if t.place_key or t.place:
            places[mask_pii(t.place or t.place_key)] += 1
        table.append(
            {
                "id": t.id,
                "created_at": t.created_at,
                "first_response_at": fr,
                "closed_at": closed_at if t.status == "closed" else None,
            }
        )
    order = sorted(counts, key=lambda c: -sum(counts[c]))
    per_service = [(names[c], counts[c]) for c in order[:6]]
    if len(order) > 6:
        rest = [sum(counts[c][i] for c in order[6:]) for i in range(weeks)]
        per_service.append(("其他类别", rest))
    ratings = Counter(sv.rating or "pending" for sv in surveys)
    given = ratings["satisfied"] + ratings["basic"] + ratings["unsatisfied"]
    gap_open = [0.0] * weeks
    gap_done = [0.0] * weeks
    for g in gaps:
        w = week_of(g.asked_at)
        if w is not None:
            (gap_done if g.status == "answered" else gap_open)[w] += 1
    return Figures(
        weeks=labels,
        per_service=per_service,
        first_response_h=[round(median(x), 1) if x else None for x in first],
        closing_h=[round(median(x), 1) if x else None for x in closing],
        resolved=closed / len(tickets) if tickets else None,
        resolved_n=(closed, len(tickets)),
        satisfaction=(ratings["satisfied"] + ratings["basic"]) / given if given else None,
        ratings={k: ratings.get(k, 0) for k in (*RATINGS, "pending")},
        hot_spots=[(p, float(n)) for p, n in places.most_common(10)],
        gaps=[("还没答复", gap_open), ("已答复", gap_done)],
        table=table,
    )


_CSV_FIELDS = [
    ("id", "工单号"),
    ("created_at", "登记时间"),
    ("community", "社区"),
    ("grid", "网格"),
    ("service", "类别"),
    ("urgency", "紧急程度"),
    ("status", "状态"),
    ("title", "问题"),
    ("place", "地点"),
    ("reports", "反映次数"),
    ("status_notes", "处理说明"),
    ("updated_at", "最后更新"),
]


def _cell(v: Any) -> str:
    """Spreadsheets run a cell that starts with = + - @ as a formula: such text gets a leading apostrophe."""
    text = "" if v is None else str(v)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def tickets_csv(rows: list[dict[str, Any]], tz: tzinfo) -> str:
    """UTF-8 with a BOM (Excel opens Chinese text right), one ticket a row, personal data masked."""
    out = io.StringIO()
    out.write("\ufeff")
    w = csv.writer(out)
    w.writerow([label for _, label in _CSV_FIELDS])
    for r in rows:
        line = []
        for key, _ in _CSV_FIELDS:
            v = r.get(key)
            if isinstance(v, datetime):
                v = v.astimezone(tz).strftime("%Y-%m-%d %H:%M")
            line.append(_cell(v))
        w.writerow(line)
    return out.getvalue()
