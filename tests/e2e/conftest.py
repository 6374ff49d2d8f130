"""End-to-end fixtures: a real `exchange serve` subprocess (exchange.testing.server_process) on a data
directory set up by `bootstrap()`, funded accounts with API keys, and the store backend.

The server runs on the real clock, so the tests trade series of the real listing calendar (listed by
the server itself at start): `far_series()` picks monthly ones whose trading ends months from now.
The store is SQLite in the data directory, or, for the tests that take the `backend` fixture,
PostgreSQL too: the same server and per-test schema as the store tests (tests/store/conftest.py),
skipped with the reason when there is no server.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from exchange.catalog import load_catalog
from exchange.domain.spec import PeriodKind, SeriesSpec
from tests.store.conftest import BACKENDS, PG_ENV, pg_server

CASH_MICROS = 1_000_000_000 * 1_000_000   # $1bn per funded account: margin never gets in the way
DAY_NS = 86_400 * 1_000_000_000


def far_series(count: int, now_ns: int | None = None) -> list[SeriesSpec]:
    """`count` listed monthly series of distinct products, each the product's last listed month (its
    trading ends months from now), in a fixed order; the server lists them at start."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    latest: dict[str, SeriesSpec] = {}
    for spec in load_catalog().listed_series(now_ns):
        if spec.period is PeriodKind.MONTHLY and spec.trading_end_ns > max(
                now_ns + 7 * DAY_NS, latest[spec.product].trading_end_ns if spec.product in latest else 0):
            latest[spec.product] = spec
    preferred = sorted(latest.values(), key=lambda s: (not s.product.startswith("H100"), s.product))
    if len(preferred) < count:
        raise AssertionError(f"the calendar lists only {len(preferred)} far monthly series, {count} needed")
    return preferred[:count]


def price_str(spec: SeriesSpec, ticks: int) -> str:
    """A price in ticks as the decimal string the API takes and answers ("2.400" on a $0.005 tick)."""
    tick = Decimal(spec.tick_micros) / 1_000_000
    return str((Decimal(ticks * spec.tick_micros) / 1_000_000).quantize(tick.normalize()))


@contextmanager
def database_url_for(backend: str) -> Iterator[str | None]:
    """None (SQLite in the data directory) or the URL of a fresh PostgreSQL schema, dropped afterwards:
    the store tests' mechanism (a schema per test, chosen by search_path in the URL)."""
    if backend == "sqlite":
        yield None
        return
    base, why = pg_server()
    if base is None:
        raise RuntimeError(why)
    schema = f"e2e_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base, poolclass=NullPool)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
                hide_password=False)
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()


def require_backend(name: str) -> str:
    """Skip (or, when EXCHANGE_TEST_PG_URL is set, fail) a PostgreSQL test without a server."""
    if name == "postgresql":
        url, why = pg_server()
        if url is None:
            if os.environ.get(PG_ENV):
                pytest.fail(f"{PG_ENV} is set but PostgreSQL is unreachable: {why}")
            pytest.skip(f"no PostgreSQL server reachable (set {PG_ENV} to choose one): {why}")
    return name


@pytest.fixture(params=BACKENDS, scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    return require_backend(request.param)
