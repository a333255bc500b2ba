"""Shared fixtures: every test gets its own data directory, a manual clock and a recording channel."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.app import App
from bot.clock import ManualClock
from bot.config import Config, load_config
from tests.procs import proc_config, procs, sample_index  # noqa: F401  (fixtures: the harness of real processes)
from tests.support import RecordingChannel, Say

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "data"
    monkeypatch.setenv("DOORSTEP_DATA", str(d))
    return d


@pytest.fixture
def config(data_dir: Path) -> Config:
    return load_config(ROOT / "config" / "doorstep.yaml")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def channel() -> RecordingChannel:
    return RecordingChannel()


@pytest.fixture
async def app(config: Config, clock: ManualClock, channel: RecordingChannel) -> AsyncIterator[App]:
    a = App(config, clock=clock, channels={"rec": channel})
    await a.start(background=False)
    yield a
    await a.stop()


@pytest.fixture
def say() -> Iterator[Say]:
    yield Say()


# ==== back ends (issue 7): every storage test on SQLite and PostgreSQL, every index test on embedded Chroma and
# a Chroma server. `.ci/services.sh` starts both servers and prints DOORSTEP_TEST_PG_URL/DOORSTEP_TEST_CHROMA_URL.
# Without them the server params are skipped, with the reason; with DOORSTEP_REQUIRE_POSTGRES=1 or
# DOORSTEP_REQUIRE_CHROMA_SERVER=1 (CI) a missing or unreachable server fails the test instead. ====

from typing import NoReturn  # noqa: E402

from store import Store  # noqa: E402


def _server_missing(require_var: str, reason: str) -> NoReturn:
    if os.environ.get(require_var) == "1":
        pytest.fail(f"{reason} ({require_var}=1)")
    pytest.skip(reason)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL on an empty database: a fresh SQLite file, or a fresh schema in $DOORSTEP_TEST_PG_URL
    (dropped afterwards, with any connection the test left open)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'doorstep.db'}"
        return
    import uuid

    from sqlalchemy import create_engine, make_url, text
    from sqlalchemy.pool import NullPool

    base = os.environ.get("DOORSTEP_TEST_PG_URL", "")
    if not base:
        _server_missing(
            "DOORSTEP_REQUIRE_POSTGRES", "no PostgreSQL: set $DOORSTEP_TEST_PG_URL (.ci/services.sh)"
        )
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base, poolclass=NullPool)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as e:  # the variable is set, so the server is expected: an unreachable one is an error
        admin.dispose()
        pytest.fail(f"PostgreSQL at $DOORSTEP_TEST_PG_URL is not usable: {e}")
    # every connection of the test lives in its schema and is named after it, so teardown can find it
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}", "application_name": schema})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :s"),
                {"s": schema},
            )
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated Store on `db_url` (so on both back ends)."""
    s = Store(db_url)
    s.migrate()
    yield s
    s.close()


@pytest.fixture(params=["embedded", "server"])
def chroma_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The index's `chroma_url` setting: "" (embedded Chroma in the test's data directory) or the Chroma server
    at $DOORSTEP_TEST_CHROMA_URL. On the server, collections the test created are deleted afterwards; one test
    run per server (tests run one at a time, so they do not see each other's collections)."""
    if request.param == "embedded":
        yield ""
        return
    import httpx

    url = os.environ.get("DOORSTEP_TEST_CHROMA_URL", "").rstrip("/")
    if not url:
        _server_missing(
            "DOORSTEP_REQUIRE_CHROMA_SERVER",
            "no Chroma server: set $DOORSTEP_TEST_CHROMA_URL (.ci/services.sh)",
        )
    collections = f"{url}/api/v2/tenants/default_tenant/databases/default_database/collections"

    def names() -> set[str]:
        r = httpx.get(collections, params={"limit": 10000}, timeout=10)
        r.raise_for_status()
        return {c["name"] for c in r.json()}

    try:
        before = names()
    except httpx.HTTPError as e:
        pytest.fail(f"Chroma server at $DOORSTEP_TEST_CHROMA_URL is not usable: {e}")
    yield url
    for name in names() - before:
        httpx.delete(f"{collections}/{name}", timeout=10)


@pytest.fixture
def chroma_collection() -> str:
    """A collection name of the test's own, for tests that pass one to the index."""
    import uuid

    return f"test_{uuid.uuid4().hex[:12]}"


# ==== end of the back-end block (issue 7) ====


# ==== tickets: the built-in backend on a real loopback port, and an app whose ticket client points at it ====

from backend import Backend  # noqa: E402
from backend.testing import running_backend  # noqa: E402
from bot.builtin_backend import backend_settings  # noqa: E402

TICKETS_API_KEY = "test-open311-key"  # configured for both sides: the bot's client and the backend agree


@pytest.fixture
def backend(tmp_path: Path, config: Config, clock: ManualClock) -> Iterator[tuple[Backend, str]]:
    # on the test's clock, as `serve` runs it on the bot's: its times are never ahead of the desk's
    settings = backend_settings(config, f"sqlite:///{tmp_path / 'open311.db'}", api_keys=[TICKETS_API_KEY])
    be = Backend(settings, now=clock.now)
    with running_backend(be) as url:
        yield be, url
    be.engine.dispose()


@pytest.fixture
async def tapp(
    data_dir: Path,
    backend: tuple[Backend, str],
    clock: ManualClock,
    channel: RecordingChannel,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[App]:
    monkeypatch.setenv("DOORSTEP_OPEN311_URL", backend[1])
    monkeypatch.setenv("DOORSTEP_OPEN311_API_KEY", TICKETS_API_KEY)
    cfg = load_config(ROOT / "config" / "doorstep.yaml")
    a = App(cfg, clock=clock, channels={"rec": channel})
    await a.start(background=False)
    yield a
    await a.stop()
