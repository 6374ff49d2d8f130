"""Store fixtures: every store test runs on SQLite and on PostgreSQL.

PostgreSQL comes from `EXCHANGE_TEST_PG_URL` (`.ci/run` starts the server and exports it); if that is
set but the server cannot be reached the PostgreSQL tests fail. Unset, the machine's default server
(127.0.0.1:5432, database `test`, user postgres or root) is tried and the PostgreSQL tests are
skipped, with the reason, if it is not there. Each test gets a schema of its own (dropped afterwards)
so parallel workers never see each other's tables.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from exchange.store import Store

PG_ENV = "EXCHANGE_TEST_PG_URL"
PG_DEFAULTS = ("postgresql+psycopg://postgres@127.0.0.1:5432/test", "postgresql+psycopg://root@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")


@functools.cache
def pg_server() -> tuple[str | None, str]:
    """(URL of a reachable PostgreSQL, "") or (None, why not)."""
    configured = os.environ.get(PG_ENV)
    errors = []
    for url in (configured,) if configured else PG_DEFAULTS:
        engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(text("select 1"))
            return url, ""
        except Exception as error:
            errors.append(f"{make_url(url).render_as_string()}: {type(error).__name__}: {str(error).strip()[:200]}")
        finally:
            engine.dispose()
    return None, "; ".join(errors)


def require_backend(name: str) -> str:
    """Skip (or, when EXCHANGE_TEST_PG_URL is set, fail) a PostgreSQL test without a server."""
    if name == "postgresql":
        url, why = pg_server()
        if url is None:
            if os.environ.get(PG_ENV):
                pytest.fail(f"{PG_ENV} is set but PostgreSQL is unreachable: {why}")
            pytest.skip(f"no PostgreSQL server reachable (set {PG_ENV} to choose one): {why}")
    return name


class PgSchemas:
    """Fresh PostgreSQL schemas, one per store: the URL selects it by search_path, so tests running in
    parallel never see each other's tables. `drop()` removes every schema made."""

    def __init__(self, prefix: str = "test") -> None:
        self.prefix = prefix
        self.made: list[str] = []

    def url(self) -> str:
        base, why = pg_server()
        assert base is not None, why
        schema = f"{self.prefix}_{uuid.uuid4().hex[:16]}"
        admin = create_engine(base, poolclass=NullPool)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        admin.dispose()
        self.made.append(schema)
        return make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)

    def drop(self) -> None:
        if not self.made:
            return
        base, _ = pg_server()
        assert base is not None
        admin = create_engine(base, poolclass=NullPool)
        with admin.begin() as conn:
            for schema in self.made:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
        self.made = []


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return require_backend(request.param)


@pytest.fixture
def make_url_for(backend: str, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """A factory of URLs of fresh, empty databases on this test's backend."""
    schemas = PgSchemas()
    counter = iter(range(1_000_000))

    def fresh() -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'store{next(counter)}.db'}"
        return schemas.url()

    yield fresh
    schemas.drop()


@pytest.fixture
def make_store(make_url_for: Callable[[], str]) -> Iterator[Callable[[], Store]]:
    """A factory of migrated stores on fresh databases; all closed at the end of the test."""
    stores: list[Store] = []

    def fresh() -> Store:
        store = Store(make_url_for())
        store.migrate()
        stores.append(store)
        return store

    yield fresh
    for store in stores:
        store.close()


@pytest.fixture
def store(make_store: Callable[[], Store]) -> Store:
    return make_store()
