"""The backend's own tables, on their own metadata, prefixed `open311_`.

The backend is a separate product boundary (in production it is a city 12345 system or a property-management
system), so it keeps its schema to itself: it may live in its own database (the default: open311.db in the data
directory) or share the bot's without either touching the other's tables. The schema is created with
`create_all` and stamped in `open311_schema`; a future change bumps SCHEMA_VERSION and adds an upgrade step in
`ensure_schema` (the tables are few and additive, which does not need Alembic's machinery).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

SCHEMA_VERSION = 1


class UTC_DT(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; survives a crash
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    """The backend's own engine (it is a product of its own: it shares no code with the bot's store)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


class BackendBase(DeclarativeBase):
    metadata = MetaData()


class SchemaVersion(BackendBase):
    __tablename__ = "open311_schema"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class ServiceRequest(BackendBase):
    __tablename__ = "open311_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)  # service_request_id
    token: Mapped[str] = mapped_column(String(64), unique=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    jurisdiction_id: Mapped[str] = mapped_column(String(128), default="")
    service_code: Mapped[str] = mapped_column(String(64), index=True)
    service_name: Mapped[str] = mapped_column(String(128), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)  # open | closed
    status_notes: Mapped[str] = mapped_column(Text, default="")
    agency_responsible: Mapped[str] = mapped_column(String(128), default="")
    service_notice: Mapped[str] = mapped_column(Text, default="")
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    long: Mapped[float | None] = mapped_column(Float, nullable=True)
    address: Mapped[str] = mapped_column(Text, default="")
    address_id: Mapped[str] = mapped_column(String(128), default="")
    zipcode: Mapped[str] = mapped_column(String(16), default="")
    media_url: Mapped[str] = mapped_column(Text, default="")
    email: Mapped[str] = mapped_column(String(256), default="")
    device_id: Mapped[str] = mapped_column(String(256), default="")
    account_id: Mapped[str] = mapped_column(String(256), default="")
    first_name: Mapped[str] = mapped_column(String(128), default="")
    last_name: Mapped[str] = mapped_column(String(128), default="")
    phone: Mapped[str] = mapped_column(String(64), default="")
    attributes: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    requested_datetime: Mapped[datetime] = mapped_column(UTC_DT(), default=utcnow, index=True)
    updated_datetime: Mapped[datetime] = mapped_column(UTC_DT(), default=utcnow)
    expected_datetime: Mapped[datetime | None] = mapped_column(UTC_DT(), nullable=True)


class StatusUpdate(BackendBase):
    """Every change staff made: the history behind status_notes."""

    __tablename__ = "open311_status_updates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("open311_requests.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    status_notes: Mapped[str] = mapped_column(Text, default="")
    agency_responsible: Mapped[str] = mapped_column(String(128), default="")
    at: Mapped[datetime] = mapped_column(UTC_DT(), default=utcnow)


class Media(BackendBase):
    __tablename__ = "open311_media"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int | None] = mapped_column(
        ForeignKey("open311_requests.id"), nullable=True, index=True
    )
    mime: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTC_DT(), default=utcnow)


class Subscriber(BackendBase):
    __tablename__ = "open311_subscribers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(512), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTC_DT(), default=utcnow)


class WebhookDelivery(BackendBase):
    """One event to one subscriber: retried with backoff until delivered or given up."""

    __tablename__ = "open311_webhook_deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(512))
    payload: Mapped[dict[str, object]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTC_DT(), default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    __table_args__ = (Index("ix_open311_webhooks_due", "state", "next_attempt_at"),)


def ensure_schema(engine: Engine) -> None:
    """Create the tables if missing and record the schema version (upgrade steps go here)."""
    BackendBase.metadata.create_all(engine)
    with Session(engine) as s, s.begin():
        row = s.scalars(select(SchemaVersion)).first()
        if row is None:
            s.add(SchemaVersion(id=1, version=SCHEMA_VERSION))
        elif row.version > SCHEMA_VERSION:
            raise RuntimeError(
                f"the open311 tables are at schema {row.version}, newer than this code ({SCHEMA_VERSION})"
            )
