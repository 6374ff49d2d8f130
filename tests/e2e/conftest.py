"""End-to-end fixtures: a real `exchange serve` subprocess (exchange.testing.server_process) on a data
directory set up by `bootstrap()`, funded accounts with API keys, and the store backend.

The server runs on the real clock, so the tests trade series of the real listing calendar (listed by
the server itself at start): `far_series()` picks monthly ones whose trading ends months from now.
The store is SQLite in the data directory, or, for the tests that take the `backend` fixture,
PostgreSQL too: the same server and per-test schema as the store tests (tests/store/conftest.py),
skipped with the reason when there is no server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest

from exchange.catalog import load_catalog
from exchange.domain.spec import PeriodKind, SeriesSpec
from tests.store.conftest import BACKENDS, PgSchemas, require_backend

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
    schemas = PgSchemas("e2e")
    try:
        yield schemas.url()
    finally:
        schemas.drop()


@pytest.fixture(params=BACKENDS, scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    return require_backend(request.param)
