"""Engine, sessions and migrations."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.errors import UserError

log = logging.getLogger(__name__)
FIRST_REPEAT = timedelta(minutes=1)  # a background failure repeated is logged again after this, then doubling
MAX_REPEAT = timedelta(hours=1)


class StoreError(UserError):
    """The store cannot be used at all (a damaged or unopenable SQLite file): one line, exit 2."""


def damage_of(exc: BaseException) -> str:
    """What SQLite says when an error means the file is damaged (not a database, a malformed page), else ""."""
    orig = getattr(exc, "orig", None) or exc
    name = str(getattr(orig, "sqlite_errorname", ""))
    msg = str(orig).strip()
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in msg or "not a database" in msg:
        return msg or name
    return ""


@dataclass
class _Failure:
    signature: str
    first: datetime
    last: datetime
    count: int
    next_log: datetime
    pause: timedelta


MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK_KEY = 0x446F6F72  # "Door": the PostgreSQL advisory lock that serialises concurrent migrations


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; survives a crash
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


class Store:
    """One database: the engine, a session factory, and the schema brought to the newest migration."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.damage = ""  # what SQLite said when it found the file damaged; health reports the store down
        self._failures: dict[str, _Failure] = {}

    @property
    def where(self) -> str:
        """The SQLite file, or the URL with its password hidden."""
        if self.engine.dialect.name == "sqlite":
            return self.engine.url.database or ":memory:"
        return self.engine.url.render_as_string()

    def _check_damage(self, exc: BaseException) -> None:
        damage = damage_of(exc)
        if damage and not self.damage:
            self.damage = damage
            log.error(
                "the store %s is damaged (%s): restore it from a backup; /health reports it",
                self.where,
                damage,
            )

    def migrate(self) -> None:
        """Bring the schema to the newest migration; a no-op when it is there.

        Several processes may start at once on one database: they take turns (a transaction-scoped advisory lock
        on PostgreSQL, SQLite's write lock taken up front), so the later ones find nothing to do. A SQLite
        file that is damaged or cannot be opened is a StoreError: one clear line, not a traceback."""
        try:
            self._migrate()
        except DatabaseError as e:
            if self.engine.dialect.name != "sqlite":
                raise
            damage = damage_of(e)
            if damage:
                raise StoreError(
                    f"the store {self.where} is damaged ({damage}): restore it from a backup, or move it "
                    "away to start with an empty one"
                ) from None
            if isinstance(e, OperationalError):  # cannot open or write the file
                raise StoreError(f"cannot open the store {self.where}: {getattr(e, 'orig', e)}") from None
            raise

    def _migrate(self) -> None:
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            elif self.engine.dialect.name == "sqlite":
                # pysqlite would run each CREATE outside a transaction; take the write lock for the whole upgrade
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            cfg = alembic_config(self.url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back on error."""
        try:
            with self._sessions() as s, s.begin():
                yield s
        except DatabaseError as e:
            self._check_damage(e)
            raise

    def ping(self) -> bool:
        """Whether the store answers; a store found damaged does not, whatever `SELECT 1` says."""
        if self.damage:
            return False
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception as e:  # health reports it, never raises
            log.warning("store ping failed: %s", e)
            return False

    # --- background failures: logged once, then with backoff

    def failed(self, what: str, exc: BaseException, now: datetime) -> None:
        """A background step (a tick of the ticket desk, of notices) failed. The first failure is logged with
        its traceback; the same failure again only after a pause (1 minute, doubling to an hour) with how many
        times it happened, so a broken store never writes the same traceback every second. A failure that
        comes back after an hour without it counts as new."""
        self._check_damage(exc)
        cause = getattr(exc, "orig", None) or exc  # a DBAPI error's own words, without the SQL parameters
        signature = f"{type(exc).__name__}: {str(cause)[:300]}"
        f = self._failures.get(what)
        if f is None or f.signature != signature or now - f.last >= MAX_REPEAT:
            log.error("%s failed: %s", what, signature, exc_info=exc)
            self._failures[what] = _Failure(signature, now, now, 1, now + FIRST_REPEAT, FIRST_REPEAT)
            return
        f.count += 1
        f.last = now
        if now >= f.next_log:
            log.error(
                "%s still failing (%d times since %s): %s", what, f.count, f.first.isoformat(), signature
            )
            f.pause = min(MAX_REPEAT, f.pause * 2)
            f.next_log = now + f.pause

    def close(self) -> None:
        self.engine.dispose()
