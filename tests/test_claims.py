"""Claims (store/claims.py) on SQLite and PostgreSQL: real worker processes sharing one table.

Leases are driven by passing `now` explicitly; nothing here sleeps or measures time.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event

import pytest
from sqlalchemy import Integer, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from store import Store
from store.claims import claim, complete, new_worker_id, release, renew
from store.models import Claimable

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
LEASE = timedelta(minutes=1)
SPAWN = mp.get_context("spawn")  # a fresh interpreter per worker, as on separate machines
WAIT = 120  # seconds a test waits for a worker before declaring it stuck (a safety net, not a measurement)


class _TestBase(DeclarativeBase):
    pass


class Job(Claimable, _TestBase):
    """A work row as the outbox or notice deliveries have them."""

    __tablename__ = "claim_test_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | done
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    done_by: Mapped[str] = mapped_column(String(128), default="")


class ClaimLog(_TestBase):
    """One row per (job, claim): the unique job_id makes the database itself reject a second claim of a job."""

    __tablename__ = "claim_test_log"
    job_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    worker: Mapped[str] = mapped_column(String(128))


class NotClaimable(_TestBase):
    __tablename__ = "claim_test_plain"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)


@pytest.fixture
def jobs(db_url: str) -> Iterator[Store]:
    store = Store(db_url)
    _TestBase.metadata.create_all(store.engine)
    yield store
    store.close()


def _add(store: Store, n: int) -> list[int]:
    with store.session() as s:
        rows = [Job() for _ in range(n)]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


def _pending(worker: str, now: datetime, store: Store, limit: int = 10) -> list[int]:
    with store.session() as s:
        return [
            j.id
            for j in claim(
                s, Job, worker=worker, where=Job.state == "pending", limit=limit, lease=LEASE, now=now
            )
        ]


# --- one process -------------------------------------------------------------------------------------------


def test_claim_takes_free_matching_rows_in_order_up_to_the_limit(jobs: Store) -> None:
    ids = _add(jobs, 5)
    with jobs.session() as s:
        s.get_one(Job, ids[1]).state = "done"
        rows = claim(s, Job, worker="w1", where=Job.state == "pending", limit=3, lease=LEASE, now=T0)
        assert [r.id for r in rows] == [ids[0], ids[2], ids[3]]
        assert all(r.claimed_by == "w1" and r.claim_expires_at == T0 + LEASE for r in rows)
    assert _pending("w2", T0, jobs) == [ids[4]]
    assert _pending("w3", T0, jobs) == []


def test_order_by_and_several_conditions(jobs: Store) -> None:
    ids = _add(jobs, 4)
    with jobs.session() as s:
        rows = claim(
            s,
            Job,
            worker="w",
            where=[Job.state == "pending", Job.id > ids[0]],
            order_by=[Job.id.desc()],
            now=T0,
        )
    assert [r.id for r in rows] == [ids[3], ids[2], ids[1]]


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_complete(jobs: Store) -> None:
    (job,) = _add(jobs, 1)
    assert _pending("old", T0, jobs) == [job]
    assert _pending("new", T0 + LEASE - timedelta(seconds=1), jobs) == []
    with jobs.session() as s:
        assert [r.id for r in claim(s, Job, worker="new", where=Job.state == "pending", now=T0 + LEASE)] == [
            job
        ]
    with jobs.session() as s:
        assert complete(s, Job, [job], worker="old", values={"state": "done", "done_by": "old"}) == 0
        assert renew(s, Job, [job], worker="old", now=T0 + LEASE) == 0
    with jobs.session() as s:
        assert complete(s, Job, [job], worker="new", values={"state": "done", "done_by": "new"}) == 1
    with jobs.session() as s:
        row = s.get_one(Job, job)
        assert (row.state, row.done_by, row.claimed_by, row.claim_expires_at) == ("done", "new", "new", None)
    assert _pending("later", T0 + timedelta(days=1), jobs) == []


def test_release_gives_rows_back_at_once_with_new_values(jobs: Store) -> None:
    a, b = _add(jobs, 2)
    assert _pending("w1", T0, jobs) == [a, b]
    with jobs.session() as s:
        assert release(s, Job, [a], worker="w1", values={"done_by": "nobody yet"}) == 1
        assert release(s, Job, [b], worker="w2") == 0  # not w2's
    assert _pending("w2", T0, jobs) == [a]
    with jobs.session() as s:
        assert s.get_one(Job, a).done_by == "nobody yet"


def test_renew_extends_only_a_running_claim(jobs: Store) -> None:
    a, b = _add(jobs, 2)
    assert _pending("w1", T0, jobs) == [a, b]
    with jobs.session() as s:
        assert renew(s, Job, [a, b], worker="w1", lease=LEASE, now=T0 + timedelta(seconds=50)) == 2
        assert complete(s, Job, [b], worker="w1", values={"state": "done"}) == 1
    with jobs.session() as s:
        assert renew(s, Job, [b], worker="w1", now=T0) == 0  # completed: nothing to renew
    assert _pending("w2", T0 + LEASE, jobs) == []  # a's lease now runs to T0 + 110 s
    assert _pending("w2", T0 + LEASE + timedelta(seconds=50), jobs) == [a]


def test_claim_values_count_attempts_even_if_the_worker_then_dies(jobs: Store) -> None:
    (job,) = _add(jobs, 1)
    for i in range(3):
        with jobs.session() as s:
            rows = claim(
                s, Job, worker=f"w{i}", values={"attempts": Job.attempts + 1}, lease=LEASE, now=T0 + i * LEASE
            )
            assert [r.id for r in rows] == [job] and rows[0].attempts == i + 1


def test_naive_now_is_utc_and_bad_arguments_are_refused(jobs: Store) -> None:
    (job,) = _add(jobs, 1)
    assert _pending("w1", T0.replace(tzinfo=None), jobs) == [job]
    assert _pending("w2", (T0 + LEASE).replace(tzinfo=None), jobs) == [job]
    with jobs.session() as s:
        with pytest.raises(ValueError):
            claim(s, Job, worker="", now=T0)
        with pytest.raises(ValueError):
            claim(s, Job, worker="w", limit=0, now=T0)
        with pytest.raises(ValueError):
            claim(s, Job, worker="w", lease=timedelta(0), now=T0)
        with pytest.raises(TypeError, match="claim_expires_at"):
            claim(s, NotClaimable, worker="w", now=T0)


def test_worker_ids_are_unique_per_process_start() -> None:
    a, b = new_worker_id("outbox"), new_worker_id("outbox")
    assert a != b and a.startswith("outbox/") and str(os.getpid()) in a


# --- several processes -------------------------------------------------------------------------------------


def _drain(url: str, worker: str, batch: int, go: Event, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """A worker process: claim batches until none is left, log each claim (unique per job), complete them."""
    store = Store(url)
    got: list[int] = []
    try:
        go.wait(WAIT)
        while True:
            with store.session() as s:
                rows = claim(
                    s, Job, worker=worker, where=Job.state == "pending", limit=batch, lease=LEASE, now=T0
                )
                s.add_all(ClaimLog(job_id=r.id, worker=worker) for r in rows)  # in the claim's transaction
            if not rows:
                break
            got.extend(r.id for r in rows)
            with store.session() as s:
                done = complete(
                    s, Job, [r.id for r in rows], worker=worker, values={"state": "done", "done_by": worker}
                )
            if done != len(rows):
                raise AssertionError(f"{worker} lost {len(rows) - done} claims it never gave up")
        out.put((worker, got, ""))
    except Exception as e:  # reported to the test, which fails with it
        out.put((worker, got, repr(e)))
    finally:
        store.close()


def _claim_and_hang(url: str, worker: str, n: int, commit: bool, ready: Event) -> None:
    """A worker process that claims `n` jobs and then hangs (after or before committing) until it is killed."""
    store = Store(url)
    session = store._sessions()
    session.begin()
    claim(session, Job, worker=worker, where=Job.state == "pending", limit=n, lease=LEASE, now=T0)
    if commit:
        session.commit()
    ready.set()
    signal.pause()  # killed here


def _run(target: Callable[..., object], *args: object) -> BaseProcess:
    p = SPAWN.Process(target=target, args=args, daemon=True)
    p.start()
    return p


def test_two_processes_never_claim_the_same_row(jobs: Store, db_url: str) -> None:
    n = 200
    ids = _add(jobs, n)
    go, out = SPAWN.Event(), SPAWN.Queue()
    procs = [_run(_drain, db_url, f"w{i}", 3, go, out) for i in range(2)]
    go.set()
    results = [out.get(timeout=WAIT) for _ in procs]
    for p in procs:
        p.join(WAIT)
    assert [err for _, _, err in results] == ["", ""]
    claimed = [job for _, got, _ in results for job in got]
    assert sorted(claimed) == ids, "every row claimed exactly once"
    with jobs.session() as s:
        log = s.scalars(select(ClaimLog)).all()
        done = s.scalars(select(Job).where(Job.state == "done")).all()
    assert len(log) == n and len(done) == n
    assert {j.done_by for j in done} == {j.claimed_by for j in done} and all(
        j.claim_expires_at is None for j in done
    )


def test_a_killed_process_claims_are_taken_over_after_the_lease(jobs: Store, db_url: str) -> None:
    ids = _add(jobs, 10)
    ready = SPAWN.Event()
    victim = _run(_claim_and_hang, db_url, "victim", 4, True, ready)
    assert ready.wait(WAIT), "the victim did not claim"
    os.kill(victim.pid or 0, signal.SIGKILL)
    victim.join(WAIT)
    assert victim.exitcode == -signal.SIGKILL
    # while the dead process's lease runs, its rows stay out of reach; the rest is claimable
    assert _pending("heir", T0 + LEASE - timedelta(microseconds=1), jobs) == ids[4:]
    with jobs.session() as s:
        assert release(s, Job, ids[4:], worker="heir") == 6
    # after the lease, all of them, the dead process's first (order by id)
    assert _pending("heir", T0 + LEASE, jobs, limit=20) == ids
    with jobs.session() as s:
        assert complete(s, Job, ids[:4], worker="victim", values={"state": "done"}) == 0


def test_a_process_killed_inside_its_claim_transaction_claims_nothing(jobs: Store, db_url: str) -> None:
    ids = _add(jobs, 5)
    ready = SPAWN.Event()
    victim = _run(_claim_and_hang, db_url, "victim", 5, False, ready)
    assert ready.wait(WAIT), "the victim did not claim"
    os.kill(victim.pid or 0, signal.SIGKILL)
    victim.join(WAIT)
    # PostgreSQL rolls the dead connection's transaction back when it notices the closed socket: wait for that
    # by taking the row locks without SKIP LOCKED (SQLite: the lock died with the process, this is a plain read)
    with jobs.session() as s:
        s.execute(select(Job.id).with_for_update()).all()
    # the uncommitted claim died with the process
    assert _pending("heir", T0, jobs) == ids
