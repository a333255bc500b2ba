"""The report follow-up: one small state machine per reporter (core/conversation.py `Flow`).

    start --no place, daytime, in a group--> awaiting_place --place / location / a short answer--> collecting_media
      |                                        |  photo alone: stays            |  photo or location: joins the report
      +--place known (or quiet hours)----------+--------------------------------+--> collecting_media
                                               |  anything else: file, route it as new   (end)
                                               +--deadline (tickets.place_timeout_seconds): file as it is (end)
    collecting_media --deadline (MEDIA_WINDOW_SECONDS)--> end        --anything else--> end (routed as new)

The state, the report's id and ONE deadline are the conversation's (kept in the store by the Conversations
port), so a restart resumes a report waiting for its place. What the reporter's reply *is* (an event) is decided
in one place, `event_of`, from the classification and the length of the words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.conversation import END, UNCHANGED, Conversation, Flow, Step
from core.message import Reply
from core.ports import Intake
from nlp.extract import extract_place, normalise
from tickets import texts

if TYPE_CHECKING:
    from tickets.desk import ReportDesk

AWAITING_PLACE = "awaiting_place"
COLLECTING_MEDIA = "collecting_media"
MEDIA_WINDOW_SECONDS = 60.0  # photos and locations within this join the report
SHORT_CAPTION = 10  # a photo or location with at most this many characters of words is still just media
PLACE_ANSWER_SLACK = (
    6  # a reply naming a place with this many more characters is the answer, not a new report
)
MAX_PLACE_ANSWER = 40  # a short reply to "where?" is the place, as written

# events: what a reply is
PHOTO = "photo"  # a picture alone, while the place is awaited
MEDIA = "media"  # a picture or a location after filing
PLACE = "place"  # the answer to "where?"
OTHER = "other"  # not part of the follow-up: file what there is, route the message as new
TIMEOUT = "timeout"


def report_flow(place_timeout_seconds: float) -> Flow:
    return Flow(
        name="report",
        transitions={
            (AWAITING_PLACE, PHOTO): AWAITING_PLACE,
            (AWAITING_PLACE, PLACE): COLLECTING_MEDIA,
            (AWAITING_PLACE, OTHER): END,
            (AWAITING_PLACE, TIMEOUT): END,
            (COLLECTING_MEDIA, MEDIA): COLLECTING_MEDIA,
            (COLLECTING_MEDIA, OTHER): END,
            (COLLECTING_MEDIA, TIMEOUT): END,
        },
        waits={AWAITING_PLACE: place_timeout_seconds, COLLECTING_MEDIA: MEDIA_WINDOW_SECONDS},
    )


@dataclass(frozen=True)
class Reading:
    event: str
    place: str = ""  # for PLACE: the place as named ("" with a location only)
    names_problem: bool = False  # for PLACE: the answer also names the problem ("楼道灯不亮，3号楼")


def event_of(state: str, intake: Intake) -> Reading:
    """What the reporter's reply is, in the state the follow-up is in."""
    msg, c = intake.message, intake.classification
    text = normalise(intake.text)
    if state == COLLECTING_MEDIA:
        return Reading(MEDIA if (msg.images or msg.location) and len(text) <= SHORT_CAPTION else OTHER)
    if msg.images and not text and msg.location is None:
        return Reading(PHOTO)
    place = c.location or extract_place(text) or ""
    if msg.location is not None:
        return Reading(PLACE, place)
    if place and (not c.needs_ticket or len(text) <= len(place) + PLACE_ANSWER_SLACK):
        return Reading(PLACE, place, names_problem=c.needs_ticket)
    if (
        text
        and len(text) <= MAX_PLACE_ANSWER
        and not c.needs_ticket
        and c.intent not in ("question", "command")
    ):
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
        if report_id is None or conv.state not in (AWAITING_PLACE, COLLECTING_MEDIA):
            return Step(state=END, taken=False)
        reading = event_of(conv.state, intake)
        if reading.event in (PHOTO, MEDIA):
            desk.add_media(report_id, msg)
            desk.forget_buffered(msg.group, msg.sender, msg.id)
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
        return self._step(conv.state, reading.event, intake, report_id, [])

    def expire(self, conv: Conversation) -> None:
        report_id = conv.get_int("report_id")
        self.flow.next(conv.state, TIMEOUT)  # only a state of this flow times out
        if report_id is not None and conv.state == AWAITING_PLACE:
            self.desk.file_and_flush(report_id)  # no place given in time: file anyway, the grid follows up


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
