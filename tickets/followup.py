"""The report follow-up: one small state machine per reporter (core/conversation.py `Flow`).

    start --no place, daytime, in a group--> awaiting_place --place / location / a short answer--> collecting_media
      |                                        |  photo alone: stays                   |  photo or location: joins
      |                                        |  the problem, no place: joins, stays  |
      +--place known (or quiet hours)----------+---------------------------------------+--> collecting_media
                                               |  anything else: file, route it as new --+
                                               +--deadline (tickets.place_timeout_seconds): file as it is
                                                                                         v
                                               place_overdue (filed without a place) --a place / location--> collecting_media
                                                 |  photo: joins, stays     anything else: end (routed as new)
                                                 +--deadline (LATE_PLACE_SECONDS): end
    collecting_media --deadline (MEDIA_WINDOW_SECONDS)--> end        --anything else--> end (routed as new)

A quoted reply (引用) to a ticket's acknowledgement adds to that ticket (`supplement`) and opens collecting_media
for the photos that follow it.

The state, the report's id and ONE deadline are the conversation's (kept in the store by the Conversations
port), so a restart resumes a report waiting for its place. What the reporter's reply *is* (an event) is decided
in one place, `event_of`, from the classification, the words and the report it would join.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.conversation import END, UNCHANGED, Conversation, Flow, Step
from core.message import Reply
from core.ports import Intake
from nlp.extract import extract_place, names_problem, normalise
from tickets import texts

if TYPE_CHECKING:
    from store.models import TicketReport
    from tickets.desk import ReportDesk

AWAITING_PLACE = "awaiting_place"
COLLECTING_MEDIA = "collecting_media"
PLACE_OVERDUE = (
    "place_overdue"  # filed without a place: the answer to "where?" still joins when it comes late
)
MEDIA_WINDOW_SECONDS = 60.0  # photos and locations within this join the report
LATE_PLACE_SECONDS = 600.0  # how long after filing without a place a late answer to "where?" still joins
SHORT_CAPTION = 10  # a photo or location with at most this many characters of words is still just media
PLACE_ANSWER_SLACK = (
    6  # a reply naming a place with this many more characters is the answer, not a new report
)
MAX_PLACE_ANSWER = 40  # a short reply to "where?" is the place, as written
# a question asks: a short answer the model calls a question ("402") is still a place without one of these
_QUESTION_CUE = re.compile(
    r"[?？]|吗|呢|怎么|什么|多少|几[点时号天个次]|哪|谁|能不能|可不可以|是不是|有没有|要不要"
)
_WORDS = re.compile(r"[\u4e00-\u9fff\d]")  # a place is written in Chinese or numbers ("402"), not "ok"

# events: what a reply is
PHOTO = "photo"  # a picture alone, while the place is awaited
MEDIA = "media"  # a picture or a location after filing
PLACE = "place"  # the answer to "where?"
PROBLEM = "problem"  # the problem itself, answered to "where?" after a first message that named none
OTHER = "other"  # not part of the follow-up: file what there is, route the message as new
TIMEOUT = "timeout"


def report_flow(place_timeout_seconds: float) -> Flow:
    return Flow(
        name="report",
        transitions={
            (AWAITING_PLACE, PHOTO): AWAITING_PLACE,
            (AWAITING_PLACE, PROBLEM): AWAITING_PLACE,
            (AWAITING_PLACE, PLACE): COLLECTING_MEDIA,
            (AWAITING_PLACE, OTHER): PLACE_OVERDUE,
            (AWAITING_PLACE, TIMEOUT): PLACE_OVERDUE,
            (PLACE_OVERDUE, PLACE): COLLECTING_MEDIA,
            (PLACE_OVERDUE, MEDIA): PLACE_OVERDUE,
            (PLACE_OVERDUE, OTHER): END,
            (PLACE_OVERDUE, TIMEOUT): END,
            (COLLECTING_MEDIA, MEDIA): COLLECTING_MEDIA,
            (COLLECTING_MEDIA, OTHER): END,
            (COLLECTING_MEDIA, TIMEOUT): END,
        },
        waits={
            AWAITING_PLACE: place_timeout_seconds,
            PLACE_OVERDUE: LATE_PLACE_SECONDS,
            COLLECTING_MEDIA: MEDIA_WINDOW_SECONDS,
        },
    )


@dataclass(frozen=True)
class Reading:
    event: str
    place: str = ""  # for PLACE: the place as named ("" with a location only)
    names_problem: bool = False  # for PLACE: the answer also names the problem ("楼道灯不亮，3号楼")


def event_of(state: str, intake: Intake, report: TicketReport | None = None) -> Reading:
    """What the reporter's reply is, in the state the follow-up is in, for the report it would join.

    The answer to "where?" is read for what it says, whatever the model makes of it: a short reply is the place
    ("3号楼2单元5楼", "5楼", "就在我家楼下" are all "reports" to a model trained on reports); it joins the
    report with its words when it names the problem too ("楼道灯不亮"); only a reply that names a *different*
    problem than the report already did, or asks something, is a message of its own."""
    msg, c = intake.message, intake.classification
    text = normalise(intake.text)
    media_only = bool(msg.images or msg.location) and len(text) <= SHORT_CAPTION
    if state == COLLECTING_MEDIA:
        return Reading(MEDIA if media_only else OTHER)
    place = c.location or extract_place(text) or ""
    if state == PLACE_OVERDUE:  # time has passed: only a plain place (or a location, a photo) is the answer
        if msg.location is not None and media_only:
            return Reading(PLACE, place)
        if msg.images and not text:
            return Reading(MEDIA)
        if place and not c.names_problem and len(text) <= len(place) + PLACE_ANSWER_SLACK:
            return Reading(PLACE, place)
        return Reading(OTHER)
    if msg.images and not text and msg.location is None:
        return Reading(PHOTO)
    if msg.location is not None:
        return Reading(PLACE, place)
    if c.small_talk or c.intent == "command" or (c.intent == "question" and _QUESTION_CUE.search(text)):
        return Reading(OTHER)
    # a report that already named its problem, and a reply naming another one: a new report of its own
    told = report is not None and names_problem(report.text)
    other_problem = (
        c.names_problem and told and report is not None and c.service_code not in (None, report.service_code)
    )
    if other_problem:
        return Reading(OTHER)
    if place:
        return Reading(PLACE, place, names_problem=c.names_problem)
    if c.names_problem:
        return Reading(PROBLEM)
    if text and len(text) <= MAX_PLACE_ANSWER and _WORDS.search(text) and c.intent != "chitchat":
        return Reading(PLACE, text)
    return Reading(OTHER)


class ReportFollowup:
    """The flow, run on the desk's reports."""

    def __init__(self, desk: ReportDesk, place_timeout_seconds: float) -> None:
        self.desk = desk
        self.flow = report_flow(place_timeout_seconds)

    def _step(self, state: str, event: str, intake: Intake, report_id: int, replies: list[str]) -> Step:
        nxt = self.flow.next(state, event)
        now = self.desk.clock.now()
        msg = intake.message
        if nxt == COLLECTING_MEDIA and msg.private:
            nxt = END  # in a private chat nothing joins a report later
        stays = nxt == state
        return Step(
            replies=[intake_reply(intake, t) for t in replies],
            state=nxt,
            deadline=None if stays or nxt == END else self.flow.deadline(nxt, now),
            data={"report_id": report_id},
            taken=event != OTHER,
        )

    def take(self, intake: Intake) -> Step:
        desk, msg = self.desk, intake.message
        report = desk.open_report(
            msg, intake.classification, intake.text, place_timeout=self.flow.waits[AWAITING_PLACE]
        )
        if report is None:  # this message was already taken as a report
            return Step(state=UNCHANGED)
        # at night nobody is asked "where?": the report is filed as it is and the grid follows up
        if not report.place and report.lat is None and not msg.private and intake.quiet_until is None:
            now = desk.clock.now()
            return Step(
                replies=[intake_reply(intake, texts.ASK_PLACE)],
                state=AWAITING_PLACE,
                deadline=self.flow.deadline(AWAITING_PLACE, now),
                data={"report_id": report.id},
            )
        desk.file_and_flush(report.id, hold_until=intake.quiet_until)
        if msg.private:
            return Step(state=END)
        return Step(
            state=COLLECTING_MEDIA,
            deadline=self.flow.deadline(COLLECTING_MEDIA, desk.clock.now()),
            data={"report_id": report.id},
        )

    def follow(self, intake: Intake, conv: Conversation) -> Step:
        desk, msg = self.desk, intake.message
        report_id = conv.get_int("report_id")
        if report_id is None or conv.state not in (AWAITING_PLACE, COLLECTING_MEDIA, PLACE_OVERDUE):
            return Step(state=END, taken=False)
        reading = event_of(conv.state, intake, desk.report(report_id))
        replies: list[str] = []
        if reading.event in (PHOTO, MEDIA):
            desk.add_media(report_id, msg)
            desk.forget_buffered(msg.group, msg.sender, msg.id)
        elif reading.event == PROBLEM:
            desk.join_answer(report_id, intake.text)
            replies.append(texts.ASK_PLACE_AGAIN)
        elif reading.event == PLACE and conv.state == PLACE_OVERDUE:
            desk.forget_buffered(msg.group, msg.sender, msg.id)
            late = desk.place_given_late(report_id, reading.place, msg)
            if late is not None:
                replies.append(late.text())
        elif reading.event == PLACE:
            if msg.location is not None:
                desk.add_media(report_id, msg)
                desk.forget_buffered(msg.group, msg.sender, msg.id)
            desk.set_place(report_id, reading.place, msg.location)
            if reading.names_problem:
                desk.join_answer(report_id, intake.text)
            desk.file_and_flush(report_id)
        elif conv.state == AWAITING_PLACE:  # not an answer to "where?": file what we have
            desk.file_and_flush(report_id)
        return self._step(conv.state, reading.event, intake, report_id, replies)

    def supplement(self, intake: Intake, ticket_id: int) -> Step:
        """A quoted reply to a message about a ticket: its words, photos and place join the ticket; photos sent
        in the next minute join it too."""
        desk, msg = self.desk, intake.message
        done = desk.add_to_ticket(ticket_id, msg, intake.text)
        if done is None:  # no such ticket, or this message was taken before
            return Step(state=UNCHANGED)
        reply = intake_reply(intake, done.text())
        if msg.private:
            return Step(replies=[reply], state=END)
        return Step(
            replies=[reply],
            state=COLLECTING_MEDIA,
            deadline=self.flow.deadline(COLLECTING_MEDIA, desk.clock.now()),
            data={"report_id": done.report_id},
        )

    def expire(self, conv: Conversation) -> None:
        report_id = conv.get_int("report_id")
        nxt = self.flow.next(conv.state, TIMEOUT)  # only a state of this flow times out
        if report_id is None:
            return
        if conv.state == AWAITING_PLACE:
            self.desk.file_and_flush(report_id)  # no place given in time: file anyway, the grid follows up
        if nxt != END:  # filed without a place: the answer may still come
            self.desk.conversations.open(
                conv.handler,
                conv.group,
                conv.sender,
                state=nxt,
                deadline=self.flow.deadline(nxt, self.desk.clock.now()),
                data=conv.data,
            )


def intake_reply(intake: Intake, text: str) -> Reply:
    m = intake.message
    return Reply(
        group=m.group,
        text=text,
        mentions=() if m.private else (m.sender,),
        in_reply_to=m.id,
        channel=m.channel,
        kind="ack",
    )
