"""The report desk: from a resident's report to a ticket, and from the ticket's progress back to the groups.

- `open_report` commits the report (a draft) before anything is said; `file` turns it into a new ticket (with
  its outbox row and the acknowledgement owed, in one transaction) or merges it into an open ticket about the
  same problem at the same place (every reporter linked);
- photos and WeChat locations from the same person in the same group within a minute join the report;
- `apply_remote` records a status change from the backend (webhook or polling) and owes one message to every
  group the reports came from, mentioning the reporters there;
- `tick` files drafts whose wait for a place is over, recovers reports cut off by a crash, runs the outbox,
  polls the backend and flushes owed messages. The app calls it every second; tests call it by hand.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.community import Service
from core.conversation import Conversation, Conversations, Step
from core.errors import StatusError
from core.intent import Classification
from core.message import Attachment, Location, Message, Reply
from core.ports import (
    JSON,
    Classifier,
    Clock,
    CommunityConfig,
    Corrected,
    Groups,
    Intake,
    RemoteRequest,
    Sender,
    TicketBackend,
    TicketBackendError,
    TicketView,
)
from nlp.extract import (
    clean_description,
    dangers,
    extract_place,
    names_problem,
    normalise,
    place_key,
    ticket_title,
)
from pii import mask_pii, phone_numbers
from store import Store
from store.models import (
    InboundMessage,
    Ticket,
    TicketEvent,
    TicketMedia,
    TicketNotice,
    TicketOutbox,
    TicketReport,
)
from tickets import satisfaction, texts
from tickets.corrections import correct
from tickets.followup import MEDIA_WINDOW_SECONDS, PLACE_ANSWER_SLACK, ReportFollowup
from tickets.merge import TEXT_SIMILARITY, Sighting, same_place, same_problem, similarity
from tickets.notify import Notifier, owe
from tickets.outbox import Outbox
from tickets.summary import AlertGroup, DailySummary

log = logging.getLogger(__name__)
MAX_PHOTOS = 6
# "工单号 #3", "工单 #3（…）", "合并到工单 #3": the ticket a quoted message of the bot's is about
_QUOTED_TICKET = re.compile(r"工单号?\s*[#＃]\s*(\d{1,9})")
_SUPPLEMENT_LEAD = re.compile(r"^(?:再|还要|我)?补充(?:一下|一点|说明|下)?[\s:：,，。]*")
ASKED_PLACE_WITHIN = timedelta(days=1)  # a quote of "where?" finds the sender's report of the last day
CLOCK_SKEW_SECONDS = 300.0  # an update stamped further ahead of our clock than this is refused


@dataclass
class Filed:
    report_id: int
    ticket_id: int
    merged: bool


@dataclass(frozen=True)
class Supplemented:
    """What a reply added to a filed ticket (a quoted 补充, or the place given after the wait for it)."""

    ticket_id: int
    report_id: int  # the report the words and photos were kept under
    words: bool = False  # the ticket's description has the new words
    photos: int = 0
    place: str = ""  # the ticket's place, when this reply gave it
    located: bool = False  # the reply gave the ticket its coordinates (a location)
    urgent: bool = False  # the reply told of danger: the ticket became urgent and staff were alerted
    closed: bool = False  # the ticket was closed already

    def text(self) -> str:
        what = [
            w for w in ("补充说明" if self.words else "", f"{self.photos}张照片" if self.photos else "") if w
        ]
        if self.place:
            what.append(f"地点：{mask_pii(self.place)}")
        elif self.located:
            what.append("位置")
        out = texts.SUPPLEMENTED.format(id=self.ticket_id, what="、".join(what) or "补充说明")
        if self.urgent:
            out += texts.SUPPLEMENTED_URGENT
        if self.closed:
            out += texts.SUPPLEMENTED_CLOSED
        return out


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


class BadRemoteTime(ValueError):
    """An update whose updated_datetime cannot be read or lies in the future: it is refused, never applied."""


def remote_time(value: str, now: datetime) -> datetime | None:
    """The backend's updated_datetime (W3C) in UTC; None when missing (the spec makes it optional).

    Raises BadRemoteTime when it is unreadable or ahead of `now` by more than the clock skew allowed: applied,
    such a stamp would skip the ordering check, or pin the ticket (`2099-...`) against every later real update."""
    if not value:
        return None
    try:
        stamp = _utc(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
    except ValueError:
        raise BadRemoteTime(f"updated_datetime {value[:40]!r} is not a W3C date-time") from None
    if stamp > _utc(now) + timedelta(seconds=CLOCK_SKEW_SECONDS):
        raise BadRemoteTime(f"updated_datetime {value[:40]!r} is in the future")
    return stamp


@dataclass(frozen=True)
class DeskSettings:
    """The desk's timing (from `tickets:` in the config)."""

    merge_window_hours: float = 72.0
    place_timeout_seconds: float = 120.0  # how long a report without a place waits for one
    poll_interval_seconds: float = 60.0  # how often the backend is asked about open tickets
    inflight_grace_seconds: float = 30.0  # a recorded but unhandled message older than this was cut off
    surveys: satisfaction.SurveySettings = satisfaction.SurveySettings()  # asked when a ticket is closed
    # staff groups that also get a community's urgent alerts: (group, channel, community or "" for all)
    alert_groups: tuple[tuple[str, str, str], ...] = ()
    summary_at: time | None = None  # the local time the alert groups get the daily summary; None: never


class Lifecycle(Protocol):
    """Something that starts and stops with the desk (the built-in backend `serve` mounts)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class ReportDesk:
    """Implements core.ports.TicketDesk."""

    def __init__(
        self,
        config: CommunityConfig,
        store: Store,
        clock: Clock,
        sender: Sender,
        groups: Groups,
        classifier: Classifier,
        conversations: Conversations,
        backend: TicketBackend,
        settings: DeskSettings | None = None,
        *,
        outbox: Outbox | None = None,
    ) -> None:
        self.settings = settings or DeskSettings()
        self.config = config
        self.store = store
        self.clock = clock
        self.classifier = classifier
        self.conversations = conversations  # the reporters' follow-ups: the crash net leaves theirs alone
        self.client = backend
        self.notifier = Notifier(store, sender, clock, groups)
        self.notifier.owns = config.owns  # a process sends only to the groups its account owns
        self.summary = DailySummary(
            store, config.tz, self.settings.summary_at, [AlertGroup(*g) for g in self.settings.alert_groups]
        )
        self.outbox = outbox or Outbox(store, backend, clock, on_parked=self._alert_parked)
        if self.outbox.on_parked is None:
            self.outbox.on_parked = self._alert_parked
        self.poll_interval_seconds = self.settings.poll_interval_seconds
        self.inflight_grace_seconds = self.settings.inflight_grace_seconds
        self.followup = ReportFollowup(self, self.settings.place_timeout_seconds)
        self._next_poll: datetime | None = None
        self._buffer: dict[tuple[str, str], list[tuple[datetime, Message]]] = defaultdict(list)
        self.last_poll_ok: bool | None = None
        self.embedded_backend: Lifecycle | None = None  # the built-in backend when `serve` mounts it

    async def start(self) -> None:
        if self.embedded_backend is not None:
            await self.embedded_backend.start()
        self.notifier.reconcile()  # what was in flight when the process stopped
        self.notifier.flush()  # and what was owed

    # --- configuration helpers ---------------------------------------------------------------------

    def service(self, code: str | None) -> Service:
        svcs = {s.service_code: s for s in self.config.service_list}
        return svcs.get(code or "") or svcs.get("other") or self.config.service_list[0]

    # --- the report follow-up (tickets/followup.py) --------------------------------------------------

    def take(self, intake: Intake) -> Step:
        return self.followup.take(intake)

    def follow(self, intake: Intake, conv: Conversation) -> Step:
        return self.followup.follow(intake, conv)

    def expire(self, conv: Conversation) -> list[Reply]:
        self.followup.expire(conv)
        return []

    def supplement(self, intake: Intake, ticket_id: int) -> Step:
        return self.followup.supplement(intake, ticket_id)

    def file_and_flush(self, report_id: int, *, hold_until: datetime | None = None) -> None:
        self.file(report_id, hold_until=hold_until)
        self.notifier.flush()

    def join_answer(self, report_id: int, answer: str) -> None:
        """The report is the first words and the answer together, classified again as a whole, so that the chat
        files what `doorstep classify` says of the problem (not what the vague first message suggested)."""
        with self.store.session() as s:
            r = s.get(TicketReport, report_id)
            if r is None:
                return
            joined = f"{r.text}，{answer.strip()}"
            c = self.classifier.classify(joined)
            if not c.needs_ticket:
                return
            r.text = joined[:4000]
            r.description = (c.description or clean_description(joined))[:2000]
            r.service_code = self.service(c.service_code).service_code
            r.intent = c.intent
            if r.urgency != "urgent":  # a danger in either message stays a danger
                r.urgency = c.urgency

    def _group_info(self, group: str) -> tuple[str, str, str]:
        g = self.config.group(group)
        return (g.community, g.grid, g.name) if g else ("", "", group)

    # --- photos and locations sent around a report ----------------------------------------------------

    def observe(self, msg: Message) -> None:
        """Keep a photo or location for a minute: the words of a report may follow."""
        if msg.private or not (msg.images or msg.location):
            return
        now = self.clock.now()
        key = (msg.group, msg.sender)
        kept = [(t, m) for t, m in self._buffer[key] if (now - t).total_seconds() <= MEDIA_WINDOW_SECONDS]
        kept.append((now, msg))
        self._buffer[key] = kept[-MAX_PHOTOS:]

    def take_buffered(self, group: str, sender: str, exclude: str = "") -> list[Message]:
        now = self.clock.now()
        items = self._buffer.pop((group, sender), [])
        return [m for t, m in items if (now - t).total_seconds() <= MEDIA_WINDOW_SECONDS and m.id != exclude]

    def forget_buffered(self, group: str, sender: str, message_id: str) -> None:
        key = (group, sender)
        self._buffer[key] = [(t, m) for t, m in self._buffer.get(key, []) if m.id != message_id]

    # --- intake ----------------------------------------------------------------------------------------

    def open_report(
        self, msg: Message, c: Classification, text: str, *, place_timeout: float
    ) -> TicketReport | None:
        """Commit the report before anything is said. None if this message was already taken as a report."""
        extras = self.take_buffered(msg.group, msg.sender, exclude=msg.id)
        report = self._new_report(msg, c, text, place_timeout=place_timeout, extras=extras)
        try:
            with self.store.session() as s:
                s.add(report)
                s.flush()
                for m in [msg, *extras]:
                    self._add_photos(s, report.id, m)
        except IntegrityError:
            return None
        return report

    def _new_report(
        self, msg: Message, c: Classification, text: str, *, place_timeout: float, extras: list[Message]
    ) -> TicketReport:
        now = self.clock.now()
        location = msg.location or next((m.location for m in reversed(extras) if m.location), None)
        place = c.location or ""
        desc = c.description or clean_description(text)
        report = TicketReport(
            channel=msg.channel,
            message_id=msg.id[:128],
            group_id=msg.group[:128],
            sender=msg.sender[:128],
            sender_name=msg.sender_name[:128],
            text=mask_pii(text)[:4000],  # stored masked; the numbers staff may call are in `contact`
            description=mask_pii(desc)[:2000],
            contact=", ".join(phone_numbers(text))[:255],
            service_code=self.service(c.service_code).service_code,
            intent=c.intent,
            place=mask_pii(place)[:255],
            lat=location.lat if location else None,
            lon=location.lon if location else None,
            urgency=c.urgency,
            state="draft",
            created_at=now,
            place_deadline=now + timedelta(seconds=place_timeout),
        )
        if not report.place and location is not None and location.address:
            report.place = mask_pii(location.address)[:255]
        return report

    @staticmethod
    def _add_photos(s: Any, report_id: int, m: Message) -> int:
        added = 0
        for a in m.images[:MAX_PHOTOS]:
            if a.data:
                added += 1
                s.add(
                    TicketMedia(
                        report_id=report_id,
                        message_id=m.id[:128],
                        name=a.name or "photo.jpg",
                        mime=a.mime or "image/jpeg",
                        data=a.data,
                        sha256=a.sha256,
                    )
                )
        return added

    def add_media(self, report_id: int, msg: Message) -> None:
        """A photo or location that followed the report."""
        with self.store.session() as s:
            r = s.get(TicketReport, report_id)
            if r is None:
                return
            self._add_photos(s, report_id, msg)
            if msg.location is not None and r.lat is None:
                r.lat, r.lon = msg.location.lat, msg.location.lon
                if not r.place and msg.location.address:
                    r.place = mask_pii(msg.location.address)[:255]
                if r.ticket_id is not None:
                    t = s.get(Ticket, r.ticket_id)
                    if t is not None and t.lat is None:
                        t.lat, t.lon = r.lat, r.lon

    def set_place(self, report_id: int, place: str, location: Location | None = None) -> None:
        with self.store.session() as s:
            r = s.get(TicketReport, report_id)
            if r is None:
                return
            if place:
                r.place = mask_pii(place)[:255]
            if location is not None:
                r.lat, r.lon = location.lat, location.lon
                if not r.place and location.address:
                    r.place = mask_pii(location.address)[:255]

    # --- what is added to a filed ticket ----------------------------------------------------------------

    def quoted_ticket(self, msg: Message) -> int | None:
        """The ticket a quoted reply (引用) is about: the number in a message about that ticket the bot sent to
        this group (so no one adds to a ticket by typing its number), or, for a quote of the bot's "where?",
        the sender's latest report here."""
        if not msg.quoted:
            return None
        m = _QUOTED_TICKET.search(msg.quoted)
        with self.store.session() as s:
            if m:
                number = int(m.group(1))
                told = s.scalars(
                    select(TicketNotice.id).where(
                        TicketNotice.group_id == msg.group[:128], TicketNotice.ticket_id == number
                    )
                ).first()
                return number if told is not None else None
            if texts.ASK_PLACE.split("？")[0] in msg.quoted:
                since = self.clock.now() - ASKED_PLACE_WITHIN
                latest = s.scalars(
                    select(TicketReport.ticket_id)
                    .where(
                        TicketReport.group_id == msg.group[:128],
                        TicketReport.sender == msg.sender[:128],
                        TicketReport.ticket_id.is_not(None),
                        TicketReport.created_at >= since,
                    )
                    .order_by(TicketReport.id.desc())
                ).first()
                return latest
        return None

    def add_to_ticket(self, ticket_id: int, msg: Message, text: str) -> Supplemented | None:
        """A reply that adds to a filed ticket: kept as a report of the ticket (state `supplement`, with its photos
        and the sender's contact), its words appended to the ticket's description, its place and location given to
        a ticket that had none, and a danger it tells of makes the ticket urgent (staff alerted).

        GeoReport v2 has no call to change a request, so the ticket backend hears of it only while the ticket is
        still in the outbox (it goes out with the words, place and first photo); afterwards it is recorded here,
        where the admin API and the workbench show it (docs/conversation.md)."""
        now = self.clock.now()
        words = _SUPPLEMENT_LEAD.sub("", normalise(text)).strip()
        place = extract_place(words) or (msg.location.address if msg.location else "") or ""
        only_place = (
            bool(place) and len(words) <= len(place) + PLACE_ANSWER_SLACK and not names_problem(words)
        )
        urgent = bool(words) and bool(dangers(words))
        try:
            with self.store.session() as s:
                t = s.get(Ticket, ticket_id)
                if t is None:
                    return None
                r = TicketReport(
                    ticket_id=t.id,
                    channel=msg.channel,
                    message_id=msg.id[:128],
                    group_id=msg.group[:128],
                    sender=msg.sender[:128],
                    sender_name=msg.sender_name[:128],
                    text=mask_pii(text)[:4000],
                    description=mask_pii(clean_description(words))[:2000] if words else "",
                    contact=", ".join(phone_numbers(text))[:255],
                    service_code=t.service_code,
                    intent="hazard" if urgent else "complaint",
                    place=mask_pii(place)[:255],
                    lat=msg.location.lat if msg.location else None,
                    lon=msg.location.lon if msg.location else None,
                    urgency="urgent" if urgent else "normal",
                    state="supplement",
                    created_at=now,
                )
                s.add(r)
                s.flush()
                photos = self._add_photos(s, r.id, msg)
                added = bool(words) and not only_place
                if added:
                    who = f"（{msg.sender_name}）" if msg.sender_name else ""
                    t.description = f"{t.description}\n补充{who}：{r.description}"[:4000]
                given, located = self._give_place(t, r.place, msg.location)
                became_urgent = urgent and t.urgency != "urgent" and t.status == "open"
                if became_urgent:
                    t.urgency = "urgent"
                    self._owe_urgent_alerts(s, t, r)
                done = Supplemented(
                    t.id,
                    r.id,
                    words=added,
                    photos=photos,
                    place=given,
                    located=located,
                    urgent=became_urgent,
                    closed=t.status == "closed",
                )
                if t.remote_id is not None:
                    log.info(
                        "ticket #%s: a supplement recorded locally (the backend has the request already)",
                        t.id,
                    )
        except IntegrityError:  # this very message was taken before (a redelivery)
            return None
        self.notifier.flush()
        return done

    def place_given_late(self, report_id: int, place: str, msg: Message) -> Supplemented | None:
        """The place, answered after the report was filed without it: the report's and its ticket's."""
        with self.store.session() as s:
            r = s.get(TicketReport, report_id)
            if r is None or r.ticket_id is None:
                return None
            t = s.get(Ticket, r.ticket_id)
            if t is None:
                return None
            if place:
                r.place = mask_pii(place)[:255]
            if msg.location is not None and r.lat is None:
                r.lat, r.lon = msg.location.lat, msg.location.lon
            photos = self._add_photos(s, r.id, msg)
            given, located = self._give_place(
                t, r.place or (msg.location.address if msg.location else ""), msg.location
            )
            return Supplemented(
                t.id, r.id, photos=photos, place=given, located=located, closed=t.status == "closed"
            )

    @staticmethod
    def _give_place(t: Ticket, place: str, location: Location | None) -> tuple[str, bool]:
        """A ticket without a place or coordinates takes those given: (the place it took or "", whether it took
        the coordinates)."""
        located = location is not None and location.lat is not None and t.lat is None
        if located and location is not None:
            t.lat, t.lon = location.lat, location.lon
        if not place or t.place:
            return "", located
        t.place = mask_pii(place)[:255]
        t.place_key = place_key(t.place)
        return t.place, located

    def report(self, report_id: int) -> TicketReport | None:
        with self.store.session() as s:
            return s.get(TicketReport, report_id)

    # --- filing and merging ----------------------------------------------------------------------------

    def file(self, report_id: int, *, hold_until: datetime | None = None) -> Filed | None:
        """Draft -> a new ticket or a merge into an open one. Idempotent: a filed report is returned as is.
        `hold_until`: the report came in quiet hours, so what it owes the group waits until then (unless
        the problem is urgent)."""
        now = self.clock.now()
        window = timedelta(hours=self.settings.merge_window_hours)
        with self.store.session() as s:
            r = s.get(TicketReport, report_id)
            if r is None:
                return None
            if r.state != "draft":
                return Filed(r.id, r.ticket_id or 0, r.state == "merged")
            # claim the draft: only one caller (followup, timeout, recovery) files it
            claimed = getattr(
                s.execute(
                    update(TicketReport)
                    .where(TicketReport.id == r.id, TicketReport.state == "draft")
                    .values(state="filing")
                ),
                "rowcount",
                0,
            )
            if not claimed:
                return None
            community, grid, group_name = self._group_info(r.group_id)
            if r.urgency == "urgent":
                hold_until = None
            match = self._find_duplicate(s, r, community, now - window)
            mention = [r.sender]
            if match is not None:
                r.ticket_id, r.state = match.id, "merged"
                if match.status_version == 0:  # afterwards updated_at is the backend's time (apply_remote)
                    match.updated_at = now
                s.flush()
                n = (
                    s.scalar(
                        select(func.count(func.distinct(TicketReport.sender))).where(
                            TicketReport.ticket_id == match.id
                        )
                    )
                    or 1
                )
                owe(
                    s,
                    key=f"merge:{r.id}",
                    kind="merge",
                    group=r.group_id,
                    channel=r.channel,
                    ticket_id=match.id,
                    text=texts.MERGED.format(id=match.id, n=n),
                    mentions=mention,
                    in_reply_to=r.message_id,
                    not_before=hold_until,
                )
                return Filed(r.id, match.id, True)
            t = self._open_ticket(s, r, community, grid, now, hold_until, split_from=None)
            return Filed(r.id, t.id, False)

    def _open_ticket(
        self,
        s: Any,
        r: TicketReport,
        community: str,
        grid: str,
        now: datetime,
        hold_until: datetime | None,
        *,
        split_from: int | None,
    ) -> Ticket:
        """A new ticket for this report, with its outbox row and what it owes (the acknowledgement, the alerts of
        an urgent one), in the caller's transaction. `split_from`: staff split the report off that ticket."""
        svc = self.service(r.service_code)
        mention = [r.sender]
        title = ticket_title(r.description or "居民反映的问题", r.place)
        t = Ticket(
            service_code=svc.service_code,
            service_name=svc.service_name,
            title=title,
            description=mask_pii(r.description),
            place=r.place,
            place_key=place_key(r.place) if r.place else "",
            lat=r.lat,
            lon=r.lon,
            community=community,
            grid=grid,
            urgency=r.urgency,
            status="open",
            sync="pending",
            created_at=now,
            updated_at=now,
        )
        s.add(t)
        s.flush()
        r.ticket_id, r.state = t.id, "filed"
        s.add(
            TicketOutbox(
                ticket_id=t.id,
                idempotency_key=f"doorstep-{uuid.uuid4().hex}",
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )
        )
        grid_text = f"（{community}{grid}负责跟进）" if grid else ""
        place_text = f"\n地点：{mask_pii(r.place)}" if r.place else ""
        ack = texts.ACK.format(
            id=t.id, service=svc.service_name, grid=grid_text, title=mask_pii(title), place=place_text
        )
        if r.urgency == "urgent":
            ack += texts.ACK_URGENT
        if split_from is not None:
            ack = texts.SPLIT.format(old=split_from) + ack
        owe(
            s,
            key=f"ack:{r.id}" if split_from is None else f"split:{r.id}:{t.id}",
            kind="ack",
            group=r.group_id,
            channel=r.channel,
            ticket_id=t.id,
            text=ack,
            mentions=mention,
            in_reply_to=r.message_id,
            not_before=hold_until,
        )
        if r.urgency == "urgent":
            self._owe_urgent_alerts(s, t, r)
        return t

    def _owe_urgent_alerts(self, s: Session, t: Ticket, r: TicketReport) -> None:
        """Tell the grid's staff, and the staff groups configured for the community, of an urgent ticket."""
        community, grid, group_name = self._group_info(r.group_id)
        alert = texts.ALERT_URGENT.format(
            id=t.id,
            group=group_name,
            title=mask_pii(t.title),
            who=r.sender_name or "居民",
            place=f"，地点：{mask_pii(t.place)}" if t.place else "",
        ) + texts.ALERT_SOURCE.format(source=texts.CHANNEL_NAMES.get(r.channel, r.channel))
        for staff in self._staff_for(community, grid):
            owe(
                s,
                key=f"urgent:{t.id}:{staff}",
                kind="alert",
                group=staff,
                channel=r.channel,
                ticket_id=t.id,
                text=alert,
            )
        # and the staff groups configured for the community (a WeCom staff group: docs/wecom.md)
        for ag_group, ag_channel, ag_community in self.settings.alert_groups:
            if not ag_community or ag_community == community:
                owe(
                    s,
                    key=f"urgent:{t.id}:{ag_channel}:{ag_group}"[:160],
                    kind="alert",
                    group=ag_group,
                    channel=ag_channel,
                    ticket_id=t.id,
                    text=alert,
                )

    def _find_duplicate(self, s: Any, r: TicketReport, community: str, since: datetime) -> Ticket | None:
        """An open ticket about the same problem at the same place (see tickets/merge.py)."""
        candidates = s.scalars(
            select(Ticket)
            .where(Ticket.service_code == r.service_code, Ticket.status == "open", Ticket.created_at >= since)
            .order_by(Ticket.id.desc())
            .limit(200)
        ).all()
        new = Sighting(r.place, r.lat, r.lon, r.description)
        things = self.service(r.service_code).keywords
        for t in candidates:
            if community and t.community and t.community != community:
                continue
            if not same_problem(r.description, t.description, things):
                continue
            place = same_place(new, Sighting(t.place, t.lat, t.lon, t.description))
            if place is None:
                # no place on one side: only the same problem told again in the same group
                place = (
                    s.scalars(
                        select(TicketReport.id).where(
                            TicketReport.ticket_id == t.id, TicketReport.group_id == r.group_id
                        )
                    ).first()
                    is not None
                    and similarity(r.description, t.description) >= TEXT_SIMILARITY
                )
            if place:
                return t
        return None

    def _staff_for(self, community: str, grid: str) -> list[str]:
        staff = self.config.staff_list
        by_grid = [
            m.id for m in staff if grid and grid in m.grids and (not community or m.community == community)
        ]
        if by_grid:
            return by_grid
        return [m.id for m in staff if community and m.community == community and "社区工作者" in m.roles][:2]

    def _is_staff(self, sender: str) -> bool:
        return self.config.staff_member(sender) is not None

    def _alert_parked(self, ticket_id: int, error: str) -> None:
        with self.store.session() as s:
            t = s.get(Ticket, ticket_id)
            first = s.scalars(
                select(TicketReport).where(TicketReport.ticket_id == ticket_id).order_by(TicketReport.id)
            ).first()
            if t is None:
                return
            staff = self._staff_for(t.community, t.grid) or [
                m.id for m in self.config.staff_list if "管理员" in m.roles
            ]
            for sid in staff:
                owe(
                    s,
                    key=f"parked:{t.id}:{sid}",
                    kind="alert",
                    group=sid,
                    channel=first.channel if first else "",
                    ticket_id=t.id,
                    text=texts.ALERT_PARKED.format(id=t.id, title=mask_pii(t.title), error=error[:200]),
                )
        log.error("ticket #%s parked after repeated failures: %s", ticket_id, error)

    # --- status from the backend -----------------------------------------------------------------------

    def apply_remote(self, remote: RemoteRequest, *, by_id: str = "", by_name: str = "") -> bool:
        """Record the backend's view of a ticket; owe one message per group if its status changed. The change
        goes into the ticket's history (`by_id`/`by_name`: the staff member who made it in the workbench); a
        closing asks the reporters how satisfied they are (tickets/satisfaction.py), a reopening voids
        those questions.

        Webhooks and polls can arrive out of order (the creation's "open" event delivered after a poll saw the
        ticket closed; a poll's answer read before a webhook and applied after it). Updates are ordered by the
        backend's `updated_datetime`: once a change has been applied (`status_version` > 0) the ticket's
        `updated_at` holds the backend's time of it, and anything older is ignored, so a ticket never moves
        backwards and groups hear of each real change once. Before the first change there is nothing to undo
        (the ticket is open and an older "open" changes nothing). Equal times are applied (a server that keeps
        whole seconds may make two changes in one second; what it says last wins when polled again).
        An unreadable `updated_datetime`, or one in the future, is refused (see `remote_time`).
        """
        now = self.clock.now()
        try:
            stamp = remote_time(remote.updated_datetime, now)
        except BadRemoteTime as e:
            log.warning("refused an update of ticket %s: %s", remote.service_request_id[:64], e)
            return False
        with self.store.session() as s:
            t = s.scalars(select(Ticket).where(Ticket.remote_id == remote.service_request_id)).first()
            if t is None:
                return False
            applied = _utc(t.updated_at)
            # a time in the future stored before such stamps were refused must not pin the ticket
            pinned = applied > _utc(now) + timedelta(seconds=CLOCK_SKEW_SECONDS)
            if stamp is not None and t.status_version > 0 and not pinned and stamp < applied:
                log.info(
                    "ignored a stale update of ticket #%s (%s at %s, already applied %s)",
                    t.id,
                    remote.status,
                    remote.updated_datetime,
                    t.updated_at.isoformat(),
                )
                return False
            status = "closed" if remote.status == "closed" else "open"
            changed = status != t.status
            t.status_notes = mask_pii(remote.status_notes)  # shown to residents by "查询工单"
            if remote.agency_responsible:
                t.agency = remote.agency_responsible
            if not changed:
                if stamp is not None and t.status_version > 0:
                    t.updated_at = stamp
                return False
            t.status = status
            t.status_version += 1
            t.updated_at = stamp or now
            reports = s.scalars(
                select(TicketReport).where(TicketReport.ticket_id == t.id).order_by(TicketReport.id)
            ).all()
            by_group: dict[str, list[TicketReport]] = defaultdict(list)
            for r in reports:
                by_group[r.group_id].append(r)
            notes = ""
            if remote.status_notes:
                notes = f"（{mask_pii(remote.status_notes)[:100]}"
                notes += f"，{t.agency}）" if t.agency else "）"
            template = texts.CLOSED if status == "closed" else texts.REOPENED
            _history(s, t.id, "status", remote.status_notes, by_id, by_name, now, status=status)
            asked_in: set[str] = set()
            if status == "closed":
                asked_in = satisfaction.ask_reporters(
                    s, self.settings.surveys, self._is_staff, t, list(reports), now
                )
            else:
                satisfaction.supersede(s, t.id)
            for group, rs in by_group.items():
                owe(
                    s,
                    key=f"status:{t.id}:{t.status_version}:{group}",
                    kind="status",
                    group=group,
                    channel=rs[0].channel,
                    ticket_id=t.id,
                    text=template.format(id=t.id, title=mask_pii(t.title), notes=notes)
                    + (satisfaction.ASK_IN_GROUP if group in asked_in else ""),
                    mentions=[r.sender for r in rs],
                )
            return True

    async def poll_once(self) -> int:
        """Ask the backend about every open ticket it knows; returns how many changed."""
        with self.store.session() as s:
            open_ids = [
                str(x)
                for x in s.scalars(
                    select(Ticket.remote_id).where(Ticket.status == "open", Ticket.remote_id.is_not(None))
                ).all()
            ]
            tokens = s.execute(
                select(Ticket.id, Ticket.remote_token).where(
                    Ticket.remote_id.is_(None), Ticket.remote_token.is_not(None)
                )
            ).all()
        changed = 0
        try:
            for tid, token in tokens:  # servers that answer POST with a token only
                rid = await self.client.token(str(token))
                if rid:
                    with self.store.session() as s:
                        s.execute(update(Ticket).where(Ticket.id == tid).values(remote_id=rid))
                    open_ids.append(rid)
            if open_ids:
                for remote in await self.client.get_many(open_ids):
                    changed += self.apply_remote(remote)
            self.last_poll_ok = True
        except TicketBackendError as e:
            self.last_poll_ok = False
            log.warning("polling the ticket backend failed: %s", e)
        return changed

    # --- recovery --------------------------------------------------------------------------------------

    def recover_inflight(self) -> int:
        """Reports whose message was recorded but whose handling was cut off (a crash): take them now.

        Safe with several processes: each message is claimed by a conditional UPDATE (received -> handled) in the
        transaction that records its report; one process wins, the others skip it."""
        now = self.clock.now()
        cutoff = now - timedelta(seconds=self.inflight_grace_seconds)
        since = now - timedelta(days=2)
        with self.store.session() as s:
            rows = s.scalars(
                select(InboundMessage)
                .where(
                    InboundMessage.status == "received",
                    InboundMessage.received_at <= cutoff,
                    InboundMessage.received_at >= since,
                )
                .limit(200)
            ).all()
            taken = (
                {
                    (c, m)
                    for c, m in s.execute(
                        select(TicketReport.channel, TicketReport.message_id).where(
                            TicketReport.message_id.in_([r.message_id for r in rows])
                        )
                    ).all()
                }
                if rows
                else set()
            )
        recovered = 0
        for row in rows:
            already = (row.channel, row.message_id) in taken  # the handler committed the report, then stopped
            c = self.classifier.classify(row.text)
            report: TicketReport | None = None
            try:
                with self.store.session() as s:
                    # the claim: one process wins the message (received -> handled), in the same transaction as
                    # the report it makes of it, so a process killed here leaves the message for the next round
                    won = s.execute(
                        update(InboundMessage)
                        .where(InboundMessage.id == row.id, InboundMessage.status == "received")
                        .values(
                            status="handled",
                            reason="recovered:taken"
                            if already
                            else ("recovered" if c.needs_ticket else "recovered:skip"),
                            intent=c.intent,
                        )
                    )
                    if getattr(won, "rowcount", 0) != 1:
                        continue  # another process recovered it, or its handler finished meanwhile
                    if c.needs_ticket and not already:
                        msg = Message(
                            id=row.message_id,
                            channel=row.channel,
                            group=row.group_id,
                            sender=row.sender,
                            sender_name=row.sender_name,
                            text=row.text,
                            time=row.received_at,
                        )
                        report = self._new_report(msg, c, row.text, place_timeout=0, extras=[])
                        s.add(report)
            except IntegrityError:  # its handler committed the report meanwhile: that one stands
                continue
            if report is not None:
                # a crash before this leaves an overdue draft, which file_overdue_drafts files
                self.file(report.id)
                recovered += 1
        if recovered:
            log.warning("recovered %d reports cut off by a restart", recovered)
        return recovered

    def file_overdue_drafts(self) -> int:
        """The crash net: drafts past their deadline (and a grace) whose reporter has no follow-up conversation,
        because a crash came between committing the report and opening it. The follow-up's own deadline
        (tickets/followup.py) files every other draft: it is the one timer of the wait for a place.

        Safe with several processes: `file` claims each draft (draft -> filing) in the transaction that files it,
        so exactly one process files a draft, and a process killed while filing leaves it a draft."""
        cutoff = self.clock.now() - timedelta(seconds=self.inflight_grace_seconds)
        with self.store.session() as s:
            drafts = s.execute(
                select(TicketReport.id, TicketReport.group_id, TicketReport.sender).where(
                    TicketReport.state == "draft", TicketReport.place_deadline <= cutoff
                )
            ).all()
        orphans = [i for i, group, sender in drafts if not self.conversations.held(group, sender)]
        return sum(1 for i in orphans if self.file(i) is not None)

    # --- the heartbeat ---------------------------------------------------------------------------------

    async def tick(self) -> None:
        try:
            self.recover_inflight()
            self.file_overdue_drafts()
            self.notifier.reconcile()
            self.summary.due(self.clock.now())
            self.notifier.flush()
            await self.outbox.run_due()
            await self.satisfaction_tick()
            now = self.clock.now()
            if self.poll_interval_seconds > 0 and (self._next_poll is None or now >= self._next_poll):
                self._next_poll = now + timedelta(seconds=self.poll_interval_seconds)
                await self.poll_once()
            self.notifier.flush()
        except Exception as e:  # logged once, then with backoff (a damaged store fails every tick)
            self.store.failed("ticket desk tick", e, self.clock.now())

    async def stop(self) -> None:
        await self.client.aclose()
        if self.embedded_backend is not None:
            await self.embedded_backend.stop()

    # --- questions about tickets -----------------------------------------------------------------------

    @staticmethod
    def _view(s: Session, t: Ticket) -> TicketView:
        n = s.scalar(
            select(func.count(func.distinct(TicketReport.sender))).where(TicketReport.ticket_id == t.id)
        )
        return TicketView(
            id=t.id,
            title=t.title,
            status=t.status,
            service_name=t.service_name,
            sync=t.sync,
            agency=t.agency,
            status_notes=t.status_notes,
            reporters=int(n or 0),
        )

    def ticket(self, ticket_id: int) -> TicketView | None:
        with self.store.session() as s:
            t = s.get(Ticket, ticket_id)
            return None if t is None else self._view(s, t)

    def tickets_of(self, sender: str, limit: int = 5) -> list[TicketView]:
        with self.store.session() as s:
            tickets = s.scalars(
                select(Ticket)
                .join(TicketReport, TicketReport.ticket_id == Ticket.id)
                .where(TicketReport.sender == sender)
                .group_by(Ticket.id)
                .order_by(Ticket.id.desc())
                .limit(limit)
            ).all()
            return [self._view(s, t) for t in tickets]

    async def refresh(self, ticket_ids: Sequence[int]) -> bool:
        """Ask the backend about these tickets now; False if it could not be reached."""
        with self.store.session() as s:
            ids = [
                str(r)
                for r in s.scalars(
                    select(Ticket.remote_id).where(
                        Ticket.id.in_(list(ticket_ids)), Ticket.remote_id.is_not(None)
                    )
                )
            ]
        if not ids:
            return True
        try:
            for remote in await self.client.get_many(ids):
                self.apply_remote(remote)
        except TicketBackendError as e:
            log.info("refreshing tickets from the backend failed: %s", e)
            return False
        self.notifier.flush()
        return True

    # --- staff actions (the workbench; a resident's 不满意) ----------------------------------------------

    async def set_status(
        self, ticket_id: int, status: str, note: str = "", *, by_id: str = "", by_name: str = ""
    ) -> bool:
        """Close or reopen a ticket through the ticket backend, as a staff system would; the groups are told
        at once (not only when the webhook comes). False if it had that status already.
        Raises StatusError (Chinese, for staff) when the backend does not have it yet or refuses."""
        if status not in ("open", "closed"):
            raise StatusError("状态只能是“处理中”或“已办结”")
        with self.store.session() as s:
            t = s.get(Ticket, ticket_id)
            if t is None:
                raise StatusError(f"没有找到工单#{ticket_id}")
            remote_id, agency = t.remote_id, t.agency
        if not remote_id:
            raise StatusError(f"工单#{ticket_id}还没有送到工单系统（正在重试），请稍后再改状态")
        try:
            remote = await self.client.update_status(remote_id, status, mask_pii(note)[:4000], agency)
        except TicketBackendError as e:
            log.warning("status change of ticket #%s refused by the backend: %s", ticket_id, e)
            raise StatusError(f"工单系统没有接受这次修改：{str(e)[:120]}") from None
        changed = self.apply_remote(remote, by_id=by_id, by_name=by_name)
        self.notifier.flush()
        return changed

    def split_report(self, report_id: int, *, by_id: str = "", by_name: str = "") -> int:
        """A report merged into a ticket it does not belong to becomes a ticket of its own (sent to the
        backend through the outbox; its reporter is told the new number). Returns the new ticket's number.
        Raises StatusError."""
        now = self.clock.now()
        with self.store.session() as s:
            r = s.get(TicketReport, report_id)
            if r is None or r.ticket_id is None:
                raise StatusError(f"没有找到反映#{report_id}")
            if r.state != "merged":
                raise StatusError("这条是最先报的反映，工单就是它开的；请拆分后来合并进来的反映")
            old = r.ticket_id
            community, grid, _ = self._group_info(r.group_id)
            t = self._open_ticket(s, r, community, grid, now, None, split_from=old)
            _history(s, old, "split", f"拆分出反映#{r.id}，另立为工单#{t.id}", by_id, by_name, now)
            _history(s, t.id, "split", f"从工单#{old}拆分出来", by_id, by_name, now)
            new_id = t.id
        log.info("report %s split off ticket #%s into #%s by %s", report_id, old, new_id, by_id or "?")
        self.notifier.flush()
        return new_id

    def note(
        self, ticket_id: int, text: str, *, kind: str = "note", by_id: str = "", by_name: str = ""
    ) -> None:
        """Add to the ticket's history what staff wrote or did (`note`: for staff only; `reroute`)."""
        with self.store.session() as s:
            if s.get(Ticket, ticket_id) is None:
                raise StatusError(f"没有找到工单#{ticket_id}")
            _history(s, ticket_id, kind, text, by_id, by_name, self.clock.now())

    def tell(
        self,
        key: str,
        *,
        group: str,
        channel: str,
        text: str,
        mentions: Sequence[str] = (),
        kind: str = "answer",
        ticket_id: int | None = None,
    ) -> bool:
        """Owe a message (tickets/notify.py): sent once through the Sender, surviving a restart."""
        with self.store.session() as s:
            fresh = owe(
                s,
                key=key[:160],
                kind=kind,
                group=group,
                channel=channel,
                text=text,
                mentions=list(mentions),
                ticket_id=ticket_id,
            )
        self.notifier.flush()
        return fresh

    # --- satisfaction (tickets/satisfaction.py) ------------------------------------------------------

    def surveyed(self, group: str, sender: str, text: str) -> bool:
        return satisfaction.answer_to(self.store, group, sender, text, self.clock.now()) is not None

    async def answer_survey(self, group: str, sender: str, text: str) -> str | None:
        now = self.clock.now()
        found = satisfaction.answer_to(self.store, group, sender, text, now)
        if found is None:
            return None
        survey_id, rating, reason = found
        done = satisfaction.record(self.store, survey_id, rating, reason, now, self._staff_for)
        if done is not None and done.reopen:
            await self.satisfaction_tick()
        self.notifier.flush()
        return None if done is None else done.reply

    async def satisfaction_tick(self) -> None:
        """Surveys past their deadline, and reopens a 不满意 owes that the backend has not taken yet."""
        now = self.clock.now()
        satisfaction.expire_due(self.store, now, self._staff_for)
        for survey_id, ticket_id, reason in satisfaction.owed_reopens(self.store):
            try:
                await self.set_status(
                    ticket_id, "open", satisfaction.REOPEN_NOTE.format(reason=reason), by_name="居民评价"
                )
            except StatusError as e:
                log.info("reopening ticket #%s after a 不满意 waits: %s", ticket_id, e)
                continue
            satisfaction.reopened(self.store, survey_id)

    def correct(
        self,
        ticket_id: int,
        *,
        service_code: str | None = None,
        urgency: str | None = None,
        staff_id: str = "",
    ) -> Corrected:
        return correct(
            self.store,
            self.config,
            self.clock,
            ticket_id,
            service_code=service_code,
            urgency=urgency,
            staff_id=staff_id,
        )

    def health(self) -> JSON:
        counts = self.outbox.counts()
        ok = self.outbox.last_ok is not False and self.last_poll_ok is not False
        return {
            "status": "up" if ok else "down",
            "url": self.client.base_url,
            "outbox": {
                "pending": counts.get("pending", 0),
                "parked": counts.get("parked", 0),
                "sent": counts.get("done", 0),
            },
            "last_error": self.outbox.last_error,
            "owed_messages": self.notifier.pending(),
        }


def _history(
    s: Session,
    ticket_id: int,
    kind: str,
    text: str,
    by_id: str,
    by_name: str,
    now: datetime,
    *,
    status: str = "",
) -> None:
    """One line of a ticket's history (`ticket_events`), in the caller's transaction."""
    s.add(
        TicketEvent(
            ticket_id=ticket_id,
            kind=kind[:16],
            status=status,
            staff_id=by_id[:128],
            staff_name=by_name[:128],
            text=mask_pii(text)[:2000],
            created_at=now,
        )
    )


def attachments_of(msgs: list[Message]) -> list[Attachment]:
    return [a for m in msgs for a in m.images]
