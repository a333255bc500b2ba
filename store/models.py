"""Tables. Every schema change is an Alembic migration in migrations/versions/ so an upgrade keeps data."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC; SQLite forgets the zone, so it is put back on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class InboundMessage(Base):
    """Every message the router accepted, written before anything is acknowledged."""

    __tablename__ = "inbound_messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(32))
    message_id: Mapped[str] = mapped_column(String(128))
    group_id: Mapped[str] = mapped_column(String(128), index=True)
    sender: Mapped[str] = mapped_column(String(128))
    sender_name: Mapped[str] = mapped_column(String(128), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    intent: Mapped[str] = mapped_column(String(32), default="")
    status: Mapped[str] = mapped_column(
        String(16), default="received"
    )  # received | handled | ignored | failed
    reason: Mapped[str] = mapped_column(String(64), default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    __table_args__ = (Index("ux_inbound_channel_message", "channel", "message_id", unique=True),)


class AnsweredQuestion(Base):
    """Recent answers per group, so the same question within minutes gets a pointer, not a copy."""

    __tablename__ = "answered_questions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_id: Mapped[str] = mapped_column(String(128))
    question_key: Mapped[str] = mapped_column(String(64))
    question: Mapped[str] = mapped_column(Text)
    asker_name: Mapped[str] = mapped_column(String(128), default="")
    answered_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    __table_args__ = (Index("ix_answered_group_key", "group_id", "question_key"),)


class Delivery(Base):
    """Every reply the bot sent or tried to send: the delivery record."""

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(32))
    group_id: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="answer")
    text: Mapped[str] = mapped_column(Text, default="")
    in_reply_to: Mapped[str] = mapped_column(String(128), default="")
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued | sent | failed
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


# --- groups and staff notices (issue 6) --------------------------------------------------------------


class ChatGroup(Base):
    """A group the bot has seen or was told about: its channel, and the binding staff gave it (`/绑定`).

    Groups in config/groups.yaml are bound by the config; a group the bot is added to is unbound (`bound`
    false) until staff binds it. A binding here overrides the config (see bot/groups.py)."""

    __tablename__ = "chat_groups"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_id: Mapped[str] = mapped_column(String(128), unique=True)
    channel: Mapped[str] = mapped_column(String(32), default="")
    name: Mapped[str] = mapped_column(String(128), default="")
    community: Mapped[str] = mapped_column(String(64), default="")
    grid: Mapped[str] = mapped_column(String(64), default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    bound: Mapped[bool] = mapped_column(Boolean, default=False)
    bound_by: Mapped[str] = mapped_column(String(128), default="")
    bound_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    greeted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Notice(Base):
    """A staff notice: what to say, to which targets, when (now, once, or a cron repeat)."""

    __tablename__ = "notices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    text: Mapped[str] = mapped_column(Text)
    targets: Mapped[list[str]] = mapped_column(JSON, default=list)  # as the sender wrote them
    group_ids: Mapped[list[str]] = mapped_column(JSON, default=list)  # the groups the preview showed
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_by_name: Mapped[str] = mapped_column(String(128), default="")
    source: Mapped[str] = mapped_column(String(16), default="chat")  # chat | api
    origin_channel: Mapped[str] = mapped_column(String(32), default="")
    origin_group: Mapped[str] = mapped_column(String(128), default="")
    ask_ack: Mapped[bool] = mapped_column(Boolean, default=False)
    repeat: Mapped[str] = mapped_column(String(64), default="")  # a cron expression; empty: once
    schedule_label: Mapped[str] = mapped_column(String(64), default="")  # 立即 | 11月24日 08:00 | 每天 08:00
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # null: nothing more
    runs: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(
        String(16), default="scheduled"
    )  # scheduled | sending | done | cancelled
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    __table_args__ = (Index("ix_notices_due", "status", "next_run_at"),)


class NoticeDelivery(Base):
    """One notice to one group for one run: claimed before the send, marked after (see bot/notices.py)."""

    __tablename__ = "notice_deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id"), index=True)
    occurrence: Mapped[datetime] = mapped_column(UTCDateTime())  # the run's scheduled time
    group_id: Mapped[str] = mapped_column(String(128))
    group_name: Mapped[str] = mapped_column(String(128), default="")
    channel: Mapped[str] = mapped_column(String(32), default="")
    status: Mapped[str] = mapped_column(
        String(16), default="queued"
    )  # queued|sending|sent|failed|unknown|cancelled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    claimed_by: Mapped[str] = mapped_column(String(64), default="")
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    __table_args__ = (
        Index("ux_notice_delivery_run_group", "notice_id", "occurrence", "group_id", unique=True),
        Index("ix_notice_deliveries_ready", "status", "next_attempt_at"),
    )


class KnowledgeGap(Base):
    """A question the knowledge could not answer: for staff to answer and to add to the knowledge."""

    __tablename__ = "knowledge_gaps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_id: Mapped[str] = mapped_column(String(128), index=True)
    community: Mapped[str] = mapped_column(String(64), default="")
    sender: Mapped[str] = mapped_column(String(128), default="")
    sender_name: Mapped[str] = mapped_column(String(128), default="")
    question: Mapped[str] = mapped_column(Text)
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now, index=True)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | forwarded | answered
    forwarded_to: Mapped[str] = mapped_column(String(256), default="")
    forwarded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


# --- tickets (issue: tickets): reports, the local ticket mirror, the durable outbox, owed group messages ----


class Ticket(Base):
    """A ticket as residents know it: `id` is the number in "工单号 #123", assigned before the backend is
    reached; `remote_id` is the backend's service_request_id once the outbox has delivered it."""

    __tablename__ = "tickets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_code: Mapped[str] = mapped_column(String(64))
    service_name: Mapped[str] = mapped_column(String(64), default="")
    title: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    place: Mapped[str] = mapped_column(String(255), default="")
    place_key: Mapped[str] = mapped_column(String(255), default="")
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    community: Mapped[str] = mapped_column(String(64), default="")
    grid: Mapped[str] = mapped_column(String(64), default="")
    urgency: Mapped[str] = mapped_column(String(16), default="normal")
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | closed, as the backend says
    status_notes: Mapped[str] = mapped_column(Text, default="")
    agency: Mapped[str] = mapped_column(String(128), default="")
    status_version: Mapped[int] = mapped_column(Integer, default=0)  # bumped on every change told to groups
    remote_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    remote_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sync: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sent | parked
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    __table_args__ = (
        Index("ix_tickets_merge", "service_code", "status", "created_at"),
        Index("ix_tickets_remote", "remote_id"),
    )


class TicketReport(Base):
    """One resident's report: committed before the acknowledgement; linked to the ticket it filed or joined."""

    __tablename__ = "ticket_reports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), nullable=True, index=True)
    channel: Mapped[str] = mapped_column(String(32))
    message_id: Mapped[str] = mapped_column(String(128))
    group_id: Mapped[str] = mapped_column(String(128), index=True)
    sender: Mapped[str] = mapped_column(String(128), index=True)
    sender_name: Mapped[str] = mapped_column(String(128), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    service_code: Mapped[str] = mapped_column(String(64), default="other")
    intent: Mapped[str] = mapped_column(String(16), default="complaint")
    place: Mapped[str] = mapped_column(String(255), default="")
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    # the phone numbers the resident wrote (masked in `text`): for staff to call back, served only behind the
    # admin token and sent to the ticket backend as the GeoReport `phone`, never repeated into a group
    contact: Mapped[str] = mapped_column(String(255), default="")
    urgency: Mapped[str] = mapped_column(String(16), default="normal")
    state: Mapped[str] = mapped_column(String(16), default="draft")  # draft | filed | merged
    place_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    __table_args__ = (
        Index("ux_ticket_reports_message", "channel", "message_id", unique=True),
        Index("ix_ticket_reports_state", "state", "place_deadline"),
    )


class TicketCorrection(Base):
    """A staff member's correction of a ticket's service or urgency: the ticket is re-routed, and the words of its
    reports become a labelled training example of the community (`doorstep train` folds them in)."""

    __tablename__ = "ticket_corrections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    community: Mapped[str] = mapped_column(String(64), default="", index=True)
    text: Mapped[str] = mapped_column(Text, default="")
    intent: Mapped[str] = mapped_column(String(16), default="complaint")
    service_code: Mapped[str] = mapped_column(String(64))
    urgency: Mapped[str] = mapped_column(String(16), default="normal")
    old_service_code: Mapped[str] = mapped_column(String(64), default="")
    old_urgency: Mapped[str] = mapped_column(String(16), default="normal")
    staff_id: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)


class TicketMedia(Base):
    """A photo that joined a report; sent with the ticket and served by the backend as media_url."""

    __tablename__ = "ticket_media"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("ticket_reports.id"), index=True)
    message_id: Mapped[str] = mapped_column(String(128), default="")
    name: Mapped[str] = mapped_column(String(128), default="photo.jpg")
    mime: Mapped[str] = mapped_column(String(64), default="image/jpeg")
    data: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)


# --- claims: work rows that several bot processes may pick up (issue 7; see store/claims.py) ---------


class Claimable:
    """Mixin for work rows claimed through store/claims.py (outbox entries, notice deliveries, pushes).

    `claimed_by` is the worker that holds (or last held) the row; `claim_expires_at` is the end of its lease:
    the row is free when it is null or in the past. Give the table an index that starts with the columns of
    your claim condition, e.g. `Index("ix_outbox_due", "state", "next_attempt_at")`; the lease columns need none.
    """

    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True, default=None)
    claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, default=None)


class TicketOutbox(Claimable, Base):
    """The durable outbox: one row per ticket to create on the backend, with its idempotency key; claimed row by
    row (store/claims.py) so several bot processes share it and never send a row at the same time."""

    __tablename__ = "ticket_outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | done | parked
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    __table_args__ = (Index("ix_ticket_outbox_due", "state", "next_attempt_at"),)


class TicketNotice(Base):
    """A group message the desk owes (acknowledgement, merge, status change, staff alert): written in the same
    transaction as the change it reports, sent through the throttled sender, marked when sent. `key` makes
    each one unique, so a restart re-sends what was owed and never says anything twice."""

    __tablename__ = "ticket_notices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(160), unique=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(16))  # ack | merge | status | alert
    channel: Mapped[str] = mapped_column(String(32), default="")
    group_id: Mapped[str] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)
    mentions: Mapped[list[str]] = mapped_column(JSON, default=list)
    in_reply_to: Mapped[str] = mapped_column(String(128), default="")
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # quiet hours: not sent before this (the end of the group's quiet hours); None: at once
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    __table_args__ = (Index("ix_ticket_notices_state", "state"),)


class WebhookReceipt(Base):
    """A signed webhook already taken (the SHA-256 of its signature), kept until its timestamp is too old to be
    accepted anyway: a replay of the same signed body is refused."""

    __tablename__ = "webhook_receipts"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class ConversationRow(Base):
    """An open conversation (core/conversation.py): one per group and sender, with its state, data and ONE
    deadline, so a restart resumes it."""

    __tablename__ = "conversations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_id: Mapped[str] = mapped_column(String(128))
    sender: Mapped[str] = mapped_column(String(128))
    handler: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    __table_args__ = (Index("ux_conversations_group_sender", "group_id", "sender", unique=True),)
