"""Claims: how several bot processes share work rows without doing the same thing twice at the same time.

Work that any process could pick up (the ticket outbox, notice deliveries, status pushes) lives in a table whose
rows carry two columns (the `Claimable` mixin in store/models.py gives them):

- `claimed_by`: the worker that holds, or last held, the row (a process id string from `new_worker_id()`);
- `claim_expires_at`: the end of the holder's lease; the row is *free* when it is null or not in the future.

`claim()` takes up to `limit` free rows matching a condition, sets both columns and returns the rows;
`complete()` ends the claim after the work is done (setting the caller's own columns, e.g. `state="done"`, in the
same statement); `release()` gives rows back undone (optionally with a retry time); `renew()` extends a lease.

Semantics
---------
- **Mutual exclusion while a lease runs.** Between a committed `claim()` and the lease's end, no other worker's
  `claim()` returns the row. On PostgreSQL (and other engines with row locks) candidates are selected with
  `SELECT ... FOR UPDATE OF <table> SKIP LOCKED`, so concurrent claimers skip each other's rows instead of
  waiting, then marked in the same transaction. On SQLite, which has a single writer, one atomic statement does
  both: `UPDATE t SET ... WHERE id IN (SELECT id ... LIMIT n) AND <free> RETURNING id`; a concurrent claimer
  waits for the write lock (busy_timeout), then sees the rows as taken.
- **Crash recovery.** A worker that dies keeps its rows only until their leases end; then any worker claims them.
  Choose the lease longer than the work takes (plus clock skew between machines: keep them on NTP), or call
  `renew()` while working.
- **At-least-once, not exactly-once.** A worker can do the work and die (or stall past its lease) before
  `complete()`; the row is then claimed and done again. Everything downstream must therefore be idempotent:
  the outbox sends its idempotency key with the ticket, a notice delivery is recorded under its unique
  (notice, occurrence, group) row and is marked before and after the send, so a repeat is detected or harmless.
- **Losing a claim is visible.** `complete()`, `release()` and `renew()` only touch rows whose `claimed_by` is
  still the caller and return how many they touched: 0 means another worker took the row over (the lease ran
  out), and the caller must not overwrite that worker's result.
- **Finished rows are the caller's business.** A free lease does not mean "to do": the `where` condition passed
  to `claim()` must select only rows that still need work (e.g. `Outbox.state == "pending"`), and `complete()`
  must set the column that takes the row out of that condition.

Transactions: every function runs in the caller's session and takes effect when it commits. Claim in a short
transaction of its own, do the slow work (network, sending) outside any transaction, then complete or release
each row in a new short transaction::

    worker = new_worker_id("outbox")
    with store.session() as s:
        rows = claim(s, TicketOutbox, worker=worker, where=[TicketOutbox.state == "pending",
                     TicketOutbox.next_attempt_at <= now], order_by=[TicketOutbox.id], limit=20,
                     lease=timedelta(minutes=5), now=now)
    for row in rows:                      # committed: the claims are visible to the other processes
        try:
            result = post_ticket(row)     # idempotent downstream: carries row.idempotency_key
        except Exception as e:
            with store.session() as s:
                release(s, TicketOutbox, [row.id], worker=worker,
                        values={"next_attempt_at": now + backoff, "last_error": str(e)})
        else:
            with store.session() as s:
                if not complete(s, TicketOutbox, [row.id], worker=worker, values={"state": "done"}):
                    log.warning("lost the claim on %s; another worker took it over", row.id)

`now` defaults to the process clock (UTC). Pass it explicitly to drive leases from a manual clock in tests.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, CursorResult, or_, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

__all__ = ["DEFAULT_LEASE", "claim", "complete", "is_free", "new_worker_id", "release", "renew"]

T = TypeVar("T")
DEFAULT_LEASE = timedelta(minutes=5)
# Engines whose SELECT ... FOR UPDATE SKIP LOCKED SQLAlchemy renders (only PostgreSQL is tested here).
_ROW_LOCKING = frozenset({"postgresql", "mysql", "mariadb", "oracle"})


def new_worker_id(role: str = "") -> str:
    """A worker id unique across machines and restarts: `host:pid:random` (with `role/` in front if given).

    The random part matters: after a restart the same pid may come back and must not inherit old claims."""
    base = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    worker = f"{role}/{base}" if role else base
    return worker[:128]


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _column(model: type[Any], name: str) -> Any:
    attr = getattr(model, name, None)
    if attr is None:
        raise TypeError(
            f"{model.__name__} has no column {name!r}: claimable tables need claimed_by and "
            "claim_expires_at (the Claimable mixin in store/models.py)"
        )
    return attr


def _primary_key(model: type[Any]) -> Any:
    keys = sa_inspect(model).primary_key
    if len(keys) != 1:
        raise TypeError(f"{model.__name__}: claims need a single-column primary key, found {len(keys)}")
    return getattr(model, sa_inspect(model).get_property_by_column(keys[0]).key)


def _conditions(
    where: ColumnElement[bool] | Iterable[ColumnElement[bool]] | None,
) -> list[ColumnElement[bool]]:
    if where is None:
        return []
    if isinstance(where, ColumnElement):
        return [where]
    return list(where)


def is_free(model: type[Any], now: datetime | None = None) -> ColumnElement[bool]:
    """The condition "nobody holds this row at `now`": no lease, or a lease that has ended."""
    expires = _column(model, "claim_expires_at")
    return or_(expires.is_(None), expires <= _utc(now))


def claim(
    session: Session,
    model: type[T],
    *,
    worker: str,
    where: ColumnElement[bool] | Iterable[ColumnElement[bool]] | None = None,
    limit: int = 10,
    lease: timedelta = DEFAULT_LEASE,
    now: datetime | None = None,
    order_by: Sequence[Any] = (),
    values: Mapping[str, Any] | None = None,
) -> list[T]:
    """Claim up to `limit` free rows of `model` that match `where`, for `worker`, until `now + lease`.

    Returns the claimed rows (loaded fresh, ordered by `order_by`, the primary key by default); an empty list
    when there is nothing to do. `values` are set on the claimed rows in the same statement (e.g.
    `{"attempts": Model.attempts + 1}` counts attempts even when the worker then crashes). The claims are
    visible to other processes when `session`'s transaction commits: commit before doing the work.
    """
    if not worker:
        raise ValueError("claim needs a worker id (new_worker_id())")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if lease <= timedelta(0):
        raise ValueError("lease must be positive")
    at = _utc(now)
    pk = _primary_key(model)
    _column(model, "claimed_by")
    free = is_free(model, at)
    order = list(order_by) or [pk]
    changes: dict[str, Any] = {**(values or {}), "claimed_by": worker, "claim_expires_at": at + lease}
    candidates = select(pk).where(*_conditions(where), free).order_by(*order).limit(limit)
    dialect = session.get_bind().dialect

    ids: list[Any]
    if dialect.name == "sqlite":
        # One statement: SQLite runs it under its single write lock, so the sub-select and the update are atomic.
        stmt = (
            update(model)
            .where(pk.in_(candidates), free)
            .values(changes)
            .returning(pk)
            .execution_options(synchronize_session=False)
        )
        ids = list(session.scalars(stmt))
    elif dialect.name in _ROW_LOCKING:
        # Lock the candidates (skipping rows other claimers have locked), then mark them in this transaction.
        ids = list(session.scalars(candidates.with_for_update(skip_locked=True, of=model)))
        if ids:
            session.execute(
                update(model).where(pk.in_(ids)).values(changes).execution_options(synchronize_session=False)
            )
    else:
        raise NotImplementedError(f"claims are not implemented for the {dialect.name!r} engine")
    if not ids:
        return []
    rows = session.scalars(
        select(model).where(pk.in_(ids)).order_by(*order).execution_options(populate_existing=True)
    )
    return list(rows)


def _end(
    session: Session,
    model: type[Any],
    ids: Iterable[Any],
    worker: str,
    changes: dict[str, Any],
    *extra: ColumnElement[bool],
) -> int:
    keys = list(ids)
    if not keys:
        return 0
    pk = _primary_key(model)
    stmt = (
        update(model)
        .where(pk.in_(keys), _column(model, "claimed_by") == worker, *extra)
        .values(changes)
        .execution_options(synchronize_session="fetch")
    )
    result = cast(CursorResult[Any], session.execute(stmt))
    return int(result.rowcount)


def complete(
    session: Session,
    model: type[Any],
    ids: Iterable[Any],
    *,
    worker: str,
    values: Mapping[str, Any] | None = None,
) -> int:
    """The work on these rows is done: end `worker`'s claims and set `values` (which must take the rows out of
    the claim condition, e.g. `{"state": "done"}`) in one statement.

    Only rows `worker` still holds are touched; returns their number (0: the claim was lost to a take-over).
    `claimed_by` keeps the worker's id as a record of who did the work."""
    return _end(session, model, ids, worker, {**(values or {}), "claim_expires_at": None})


def release(
    session: Session,
    model: type[Any],
    ids: Iterable[Any],
    *,
    worker: str,
    values: Mapping[str, Any] | None = None,
) -> int:
    """Give rows back undone (a failed attempt, a shutdown): end `worker`'s claims at once so any worker may
    claim them again, and set `values` (e.g. a later `next_attempt_at` and the error). Returns the number of
    rows `worker` still held."""
    return _end(session, model, ids, worker, {**(values or {}), "claim_expires_at": None})


def renew(
    session: Session,
    model: type[Any],
    ids: Iterable[Any],
    *,
    worker: str,
    lease: timedelta = DEFAULT_LEASE,
    now: datetime | None = None,
) -> int:
    """Extend `worker`'s leases on these rows to `now + lease` (for work that may outlast its lease).

    Returns the number of rows `worker` still held; rows another worker took over, and rows already completed
    or released, are left alone."""
    if lease <= timedelta(0):
        raise ValueError("lease must be positive")
    expires = _column(model, "claim_expires_at")
    return _end(session, model, ids, worker, {"claim_expires_at": _utc(now) + lease}, expires.is_not(None))
