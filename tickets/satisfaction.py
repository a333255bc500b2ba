"""Satisfaction, as 12345 asks it: when a ticket is closed, each of its reporters is asked 满意 / 基本满意 /
不满意, in the group the report came from (or 1:1 where the channel has private chats and the config says so).

Everything is a row of `satisfaction_surveys`, written in the transaction that records the closing, so a
restart loses no question and no answer:

    asked --满意/基本满意--> answered
    asked --不满意 + reason--> reopen --the backend reopened the ticket--> answered
    asked --不满意--> reason --the next words of that person there--> reopen ...
    asked --deadline (satisfaction_days)--> expired (rating `none`: no answer is never counted as satisfied)
    reason --deadline--> answered (unsatisfied, no reason; the grid worker is told)
    asked | reason --the ticket reopened meanwhile--> superseded

A 不满意 with its reason reopens the ticket through the ticket backend (`ReportDesk.set_status`, retried from
the desk's tick until the backend takes it) and tells the grid worker in their private chat. Time is the
desk's clock throughout.

`tickets.satisfaction: private` asks 1:1 only on a channel that declares private chats
(`Capabilities.private_chats`); a reporter who came through another channel is asked in the group.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.ports import RATINGS
from pii import mask_pii
from store import Store
from store.models import SatisfactionSurvey, Ticket, TicketEvent, TicketReport
from tickets.notify import owe

log = logging.getLogger(__name__)

StaffFor = Callable[[str, str], list[str]]  # (community, grid) -> the staff ids to tell
IsStaff = Callable[[str], bool]  # a sender id -> whether staff.yaml names them
REASON_WAIT = timedelta(hours=24)  # after a bare 不满意, how long the person's next words count as the reason

ASK_IN_GROUP = "\n请对处理结果评价：直接回复“满意”“基本满意”或“不满意”（不满意请说明原因，我们会重新处理）。"
ASK_PRIVATE = (
    "您反映的工单 #{id}（{title}）已处理完毕。请对处理结果评价：回复“满意”“基本满意”或“不满意”"
    "（不满意请说明原因，我们会重新处理）。"
)
THANKS = "收到您对工单 #{id} 的评价：{rating}。谢谢！"
ASK_REASON = "收到您对工单 #{id} 的评价：不满意。请问哪里不满意？直接回复原因，我们会重新处理。"
REOPENING = "收到：工单 #{id} 您不满意（{reason}）。已重新打开，并已告诉网格员尽快跟进。"
WORKER_REOPENED = "【工单被退回】工单 #{id}（{title}）居民{who}不满意：{reason}。工单已重新打开，请尽快跟进。"
WORKER_NO_REASON = "【居民不满意】工单 #{id}（{title}）居民{who}评价不满意，未说明原因，请联系了解。"
REOPEN_NOTE = "居民不满意：{reason}"

_SPACE = re.compile(r"[\s\u3000]+")
_LEAD = re.compile(r"^[\s,，.。!！:：、~～]+")
_RATING = re.compile(
    r"^(?P<word>非常不满意|很不满意|不太满意|不满意|基本满意|还算满意|比较满意|非常满意|很满意|挺满意|满意)"
    r"(?P<rest>.*)$",
    re.S,
)
_WORDS = {
    "非常不满意": "unsatisfied",
    "很不满意": "unsatisfied",
    "不太满意": "unsatisfied",
    "不满意": "unsatisfied",
    "基本满意": "basic",
    "还算满意": "basic",
    "比较满意": "basic",
}
_AFTER_WORD = set("了啊呀的吧哦谢感，。！")  # what may follow the answer word in the same breath
_TICKET = re.compile(r"^[#＃]\s*(\d{1,9})\s*")


@dataclass(frozen=True)
class SurveySettings:
    """`tickets.satisfaction` and `tickets.satisfaction_days`, and which channels can ask 1:1."""

    mode: str = "group"  # group | private | off
    days: float = 3.0
    private_channels: frozenset[str] = frozenset()  # channels whose capabilities declare private chats


@dataclass(frozen=True)
class Rating:
    rating: str  # satisfied | basic | unsatisfied
    reason: str
    ticket_id: int | None = None  # "#12 满意": the ticket named


def parse_rating(text: str) -> Rating | None:
    """满意 / 基本满意 / 不满意 (and their common variants) at the start of a message, the reason after it;
    None for anything else (a message that merely contains 满意 is not an answer)."""
    t = unicodedata.normalize("NFKC", text).strip()
    ticket_id = None
    m = _TICKET.match(t)
    if m:
        ticket_id, t = int(m.group(1)), t[m.end() :]
    m = _RATING.match(t)
    if m is None:
        return None
    word = m.group("word")
    raw = m.group("rest")
    rest = _LEAD.sub("", raw).strip()
    rating = _WORDS.get(word, "satisfied")
    nxt = raw[:1]
    if rating != "unsatisfied" and nxt and "\u4e00" <= nxt <= "\u9fff" and nxt not in _AFTER_WORD:
        return None  # the word goes on ("满意度…"): a sentence, not an answer
    if "吗" in raw or "?" in raw or "？" in raw or (rating != "unsatisfied" and len(rest) > 12):
        return None
    return Rating(rating, mask_pii(_SPACE.sub(" ", rest))[:500] if rating == "unsatisfied" else "", ticket_id)


# --- asking (in the transaction that records the closing) -------------------------------------------------------


def ask_reporters(
    s: Session,
    settings: SurveySettings,
    is_staff: IsStaff,
    t: Ticket,
    reports: list[TicketReport],
    now: datetime,
) -> set[str]:
    """Write one survey per reporter of this closing; returns the groups whose closing message asks the
    question (ASK_IN_GROUP), none of them when every reporter is asked privately or nobody is asked."""
    if settings.mode == "off" or not reports:
        return set()
    deadline = now + timedelta(days=settings.days)
    seen: set[str] = set()
    in_group: set[str] = set()
    for r in reports:
        if r.sender in seen or is_staff(r.sender):
            continue  # one question per person; staff reporting on a round are not surveyed
        seen.add(r.sender)
        private = settings.mode == "private" and r.channel in settings.private_channels
        where = r.sender if private else r.group_id
        if not private:
            in_group.add(r.group_id)
        s.add(
            SatisfactionSurvey(
                ticket_id=t.id,
                round=t.status_version,
                channel=r.channel,
                group_id=where,
                sender=r.sender,
                sender_name=r.sender_name,
                state="asked",
                asked_at=now,
                deadline_at=deadline,
            )
        )
        if private:
            owe(
                s,
                key=f"survey:{t.id}:{t.status_version}:{r.sender}",
                kind="survey",
                group=r.sender,
                channel=r.channel,
                ticket_id=t.id,
                text=ASK_PRIVATE.format(id=t.id, title=mask_pii(t.title)),
            )
    return in_group


def supersede(s: Session, ticket_id: int) -> None:
    """The ticket reopened: questions about its earlier closing are void."""
    s.execute(
        update(SatisfactionSurvey)
        .where(SatisfactionSurvey.ticket_id == ticket_id, SatisfactionSurvey.state.in_(("asked", "reason")))
        .values(state="superseded")
    )


# --- answers -------------------------------------------------------------------------------------------------


def open_survey(
    store: Store, group: str, sender: str, now: datetime, ticket_id: int | None = None
) -> SatisfactionSurvey | None:
    """The survey this person may be answering here: the newest one asked (or awaiting a reason)."""
    with store.session() as s:
        q = (
            select(SatisfactionSurvey)
            .where(
                SatisfactionSurvey.group_id == group,
                SatisfactionSurvey.sender == sender,
                SatisfactionSurvey.state.in_(("asked", "reason")),
                SatisfactionSurvey.deadline_at > now,
            )
            .order_by(SatisfactionSurvey.id.desc())
        )
        if ticket_id is not None:
            q = q.where(SatisfactionSurvey.ticket_id == ticket_id)
        return s.scalars(q).first()


def answer_to(store: Store, group: str, sender: str, text: str, now: datetime) -> tuple[int, str, str] | None:
    """What this message answers: (survey id, rating, reason), or None when it answers no open survey of this
    person here (a 满意 nobody asked for, any other words while no reason is awaited)."""
    rating = parse_rating(text)
    survey = open_survey(store, group, sender, now, rating.ticket_id if rating else None)
    if survey is None:
        return None
    if rating is None:  # the words after a bare 不满意: the reason
        if survey.state != "reason":
            return None
        return survey.id, "unsatisfied", mask_pii(_SPACE.sub(" ", text.strip()))[:500]
    return survey.id, rating.rating, rating.reason


@dataclass(frozen=True)
class Answered:
    ticket_id: int
    reply: str  # what the resident is told
    reopen: bool  # a reopen is owed (the desk does it now and retries from its tick)


def record(
    store: Store, survey_id: int, rating: str, reason: str, now: datetime, staff_for: StaffFor
) -> Answered | None:
    """Record an answer (or the reason after a bare 不满意); None if the survey was answered meanwhile."""
    with store.session() as s:
        sv = s.get(SatisfactionSurvey, survey_id)
        if sv is None or sv.state not in ("asked", "reason"):
            return None
        t = s.get(Ticket, sv.ticket_id)
        if t is None:
            return None
        sv.answered_at = now
        sv.rating = rating
        if rating != "unsatisfied":
            sv.state = "answered"
            _event(s, t.id, f"{sv.sender_name or '居民'}评价：{RATINGS[rating]}", now)
            return Answered(t.id, THANKS.format(id=t.id, rating=RATINGS[rating]), False)
        if not reason:
            sv.state = "reason"
            sv.deadline_at = max(sv.deadline_at, now + REASON_WAIT)
            _event(s, t.id, f"{sv.sender_name or '居民'}评价：不满意（等待说明原因）", now)
            return Answered(t.id, ASK_REASON.format(id=t.id), False)
        sv.state, sv.reason = "reopen", reason
        _event(s, t.id, f"{sv.sender_name or '居民'}评价：不满意，原因：{reason}", now)
        _tell_workers(s, sv, t, WORKER_REOPENED, staff_for, reason=reason[:200])
        log.info("ticket #%s: a reporter is not satisfied; reopen owed", t.id)
        return Answered(t.id, REOPENING.format(id=t.id, reason=reason[:60]), True)


def owed_reopens(store: Store) -> list[tuple[int, int, str]]:
    """(survey id, ticket id, reason) of every 不满意 whose reopen the backend has not taken yet."""
    with store.session() as s:
        rows = s.scalars(select(SatisfactionSurvey).where(SatisfactionSurvey.state == "reopen")).all()
        return [(r.id, r.ticket_id, r.reason) for r in rows]


def reopened(store: Store, survey_id: int) -> None:
    with store.session() as s:
        s.execute(
            update(SatisfactionSurvey)
            .where(SatisfactionSurvey.id == survey_id, SatisfactionSurvey.state == "reopen")
            .values(state="answered")
        )


def expire_due(store: Store, now: datetime, staff_for: StaffFor) -> int:
    """Questions past their deadline: no answer is `none` (never satisfied); a 不满意 whose reason never came
    stays unsatisfied and the grid worker is told."""
    n = 0
    with store.session() as s:
        due = s.scalars(
            select(SatisfactionSurvey).where(
                SatisfactionSurvey.state.in_(("asked", "reason")), SatisfactionSurvey.deadline_at <= now
            )
        ).all()
        for sv in due:
            n += 1
            if sv.state == "asked":
                sv.state, sv.rating = "expired", "none"
                continue
            sv.state = "answered"
            t = s.get(Ticket, sv.ticket_id)
            if t is not None:
                _tell_workers(s, sv, t, WORKER_NO_REASON, staff_for)
    return n


def _tell_workers(
    s: Session, sv: SatisfactionSurvey, t: Ticket, template: str, staff_for: StaffFor, reason: str = ""
) -> None:
    """Owe the ticket's grid workers (their private chats) a word about this 不满意, once each."""
    text = template.format(id=t.id, title=mask_pii(t.title), who=sv.sender_name or "", reason=reason)
    for staff in staff_for(t.community, t.grid):
        owe(
            s,
            key=f"unsatisfied:{sv.id}:{staff}",
            kind="alert",
            group=staff,
            channel=sv.channel,
            ticket_id=t.id,
            text=text,
        )


def _event(s: Session, ticket_id: int, text: str, now: datetime) -> None:
    s.add(TicketEvent(ticket_id=ticket_id, kind="satisfaction", text=text[:1000], created_at=now))
