"""Storage: migrations bring an old database up to date without losing what it holds, on SQLite and PostgreSQL
(the `db_url` and `store` fixtures of tests/conftest.py run each test on both back ends)."""

from __future__ import annotations

import multiprocessing as mp

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from store import Store
from store.db import alembic_config
from store.models import InboundMessage


def test_upgrade_from_first_revision_keeps_data(db_url: str) -> None:
    url = db_url
    command.upgrade(alembic_config(url), "0001")
    store = Store(url)
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO inbound_messages (channel, message_id, group_id, sender, sender_name, text, intent, status,"
                " reason, received_at) VALUES ('wechaty', 'm1', 'g', 'u', '张', '井盖松了', 'hazard', 'handled', '',"
                " '2026-01-01 00:00:00')"
            )
        )
    store.migrate()
    with store.session() as s:
        row = s.scalars(select(InboundMessage)).one()
    assert row.text == "井盖松了" and row.received_at.tzinfo is not None
    heads = ScriptDirectory.from_config(alembic_config(url)).get_heads()
    assert len(heads) == 1, f"migrations must form one line, found heads {heads}"
    with store.engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert version == heads[0]
    store.close()


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")
    store.migrate()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert "inbound_messages" in inspect(store.engine).get_table_names()
    store.close()


def test_migrate_twice_is_harmless(db_url: str) -> None:
    store = Store(db_url)
    store.migrate()
    store.migrate()
    assert store.ping()
    store.close()


def test_a_message_is_recorded_once_across_processes(store: Store) -> None:
    """The router's guard against two processes handling one message: the unique (channel, message_id)."""
    fields = {"channel": "wechaty", "message_id": "m1", "group_id": "g", "sender": "u", "text": "井盖松了"}
    with store.session() as s:
        s.add(InboundMessage(**fields))
    with pytest.raises(IntegrityError), store.session() as s:
        s.add(InboundMessage(**fields))
    with store.session() as s:
        rows = s.scalars(select(InboundMessage)).all()
    assert len(rows) == 1 and rows[0].received_at.tzinfo is not None


def _migrate(url: str, out: mp.Queue) -> None:  # type: ignore[type-arg]
    try:
        store = Store(url)
        store.migrate()
        store.close()
        out.put("ok")
    except Exception as e:  # reported to the test
        out.put(repr(e))


def test_processes_starting_together_migrate_once(db_url: str) -> None:
    """Bot processes started at the same moment on an empty database: one migrates, the others wait and find
    nothing to do (without the lock one of them failed with "table already exists")."""
    spawn = mp.get_context("spawn")
    out = spawn.Queue()
    procs = [spawn.Process(target=_migrate, args=(db_url, out), daemon=True) for _ in range(3)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(120)
    assert results == ["ok"] * 3
    store = Store(db_url)
    with store.engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    assert version == ScriptDirectory.from_config(alembic_config(db_url)).get_heads()
    store.close()
