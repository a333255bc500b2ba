"""Storage: migrations bring an old database up to date without losing what it holds."""

from __future__ import annotations

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text

from bot.store import Store
from bot.store.db import alembic_config
from bot.store.models import InboundMessage


def test_upgrade_from_first_revision_keeps_data(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0001")
    store = Store(url)
    with store.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO inbound_messages (channel, message_id, group_id, sender, sender_name, text, intent, status,"
            " reason, received_at) VALUES ('wechaty', 'm1', 'g', 'u', '张', '井盖松了', 'hazard', 'handled', '',"
            " '2026-01-01 00:00:00')"))
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


def test_migrate_twice_is_harmless(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'twice.db'}")
    store.migrate()
    store.migrate()
    assert store.ping()
    store.close()
