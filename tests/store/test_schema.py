"""Migrations build exactly the models' schema; SQLite runs with WAL, synchronous=FULL, foreign keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from exchange.store import Store
from exchange.store.models import Base


def test_migrations_produce_the_models_schema(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        diffs = compare_metadata(context, Base.metadata)
    assert diffs == []
    tables = set(inspect(store.engine).get_table_names())
    assert tables == {*Base.metadata.tables, "alembic_version"}


def test_migrate_is_idempotent_and_reversible(store: Store) -> None:
    store.migrate()  # already at head: nothing happens
    assert store.last_seq() == 0
    with store.engine.connect() as conn, conn.begin():
        command.downgrade(store.alembic_config(conn), "base")
    assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
    store.migrate()
    assert store.last_seq() == 0
    assert store.balances() == {-3: 0, -2: 0, -1: 0}


def test_sqlite_pragmas(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        store.close()


def test_other_databases_are_refused() -> None:
    with pytest.raises(ValueError, match="SQLite or PostgreSQL"):
        Store("mysql://localhost/x")
