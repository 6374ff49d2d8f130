"""The projection of settlement: daily settlements, deliveries, settlement postings and positions
zeroed by assignment equal the core's, however the events are batched, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import inspect

from exchange.domain.commands import Command, SettleDaily
from exchange.domain.ledger import SETTLEMENT
from exchange.domain.units import NS_PER_HOUR
from exchange.store import Store
from exchange.store.projector import settlement_date
from exchange.testing.specs import T0_NS
from tests.domain.settlement import D0, D1, D2, OTHER, POSITIONS, SYMBOL, digest, settlement_stream, trading
from tests.store.helpers import assert_matches_engine, batches, dump, run

DAY0, DAY1, DAY2 = dt.date(2026, 11, 30), dt.date(2026, 12, 1), dt.date(2026, 12, 2)


def test_settlement_dates() -> None:
    assert (settlement_date(D0), settlement_date(D1), settlement_date(D2)) == (DAY0, DAY1, DAY2)
    assert settlement_date(0) == dt.date(1970, 1, 1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_settlement_scenario_projects_exactly_in_any_batching(make_store: Callable[[], Store], seed: int) -> None:
    engine, items = run(settlement_stream())
    stores = [make_store() for _ in range(3)]
    stores[0].project(items)
    for item in items:
        stores[1].project([item])
    for batch in batches(items, seed, largest=7):
        stores[2].project(batch)
    for store in stores:
        assert_matches_engine(store, engine, items)
    assert dump(stores[0]) == dump(stores[1]) == dump(stores[2])


def test_settlement_rows(store: Store) -> None:
    engine, items = run(settlement_stream())
    for batch in batches(items, 5, largest=4):
        store.project(batch)
    assert_matches_engine(store, engine, items)

    # Daily settlements as last posted (day 0 was amended to 483); the reference price is the final one.
    rows = store.daily_settlements()
    assert [(r.symbol, r.settlement_date, r.price_ticks, r.digest) for r in rows] == [
        (SYMBOL, DAY0, 483, digest("d0'")), (SYMBOL, DAY1, 486, digest("d1")), (SYMBOL, DAY2, 484, digest("d2"))]
    assert store.daily_settlements(SYMBOL, DAY1) == [rows[1]]
    assert store.daily_settlements(date=DAY2) == [rows[2]]
    assert store.daily_settlements(OTHER) == []
    assert {s.symbol: s.reference_price_ticks for s in store.series()} == {SYMBOL: 484, OTHER: 480}

    # Deliveries, settled (1 and 3 amended).
    deliveries = store.deliveries(SYMBOL)
    assert [(d.delivery_id, d.number, d.seller_account_id, d.buyer_account_id, d.lots, d.gpus, d.gpu_hours,
             d.fsp_ticks, d.status) for d in deliveries] == [
        (f"{SYMBOL}/1", 1, 1, 2, 1, 8, 192, 484, "settled"),
        (f"{SYMBOL}/2", 2, 1, 4, 2, 16, 384, 484, "settled"),
        (f"{SYMBOL}/3", 3, 3, 4, 2, 16, 384, 484, "settled"),
    ]
    assert [(d.digest, d.effective_micro_gpuh, d.invoice_micros, d.damages_micros, d.defaulted)
            for d in deliveries] == [
        (digest("x1'"), 170_000_000, 411_400_000, 10_986_800, False),
        (digest("x2"), 380_000_000, 919_600_000, 0, False),
        (digest("x3'"), 200_000_000, 484_000_000, 106_673_600, False),
    ]
    assert [d.delivery_id for d in store.deliveries(account_id=4)] == [f"{SYMBOL}/2", f"{SYMBOL}/3"]
    assert [d.delivery_id for d in store.deliveries(SYMBOL, account_id=2)] == [f"{SYMBOL}/1"]
    assert store.deliveries(OTHER) == [] and store.delivery("nope") is None
    assert deliveries[0].assigned_seq < deliveries[0].settled_seq  # type: ignore[operator]

    # Positions are flat after assignment.
    for account_id in POSITIONS:
        assert [(p.position_lots, p.entry_cost_ticks) for p in store.positions(account_id) if p.symbol == SYMBOL] \
            == [(0, 0)]

    # Postings carry what they settle: VM its series and day, invoices and damages their delivery.
    postings = store.ledger(SETTLEMENT, limit=1000)
    assert {p.kind for p in postings} == {"variation_margin"}
    assert {(p.symbol, p.settlement_date) for p in postings} == {(SYMBOL, DAY0), (SYMBOL, DAY1), (SYMBOL, DAY2)}
    assert all(p.delivery_id is None and p.trade_id is None for p in postings)
    assert store.balances()[SETTLEMENT] == 0
    mine = store.ledger(4, limit=1000)
    delivery = [p for p in mine if p.kind.startswith("delivery_")]
    assert [(p.kind, p.from_account, p.to_account, p.amount_micros, p.delivery_id, p.symbol) for p in delivery] == [
        ("delivery_invoice", 4, 1, 919_600_000, f"{SYMBOL}/2", SYMBOL),
        ("delivery_invoice", 4, 3, 242_000_000, f"{SYMBOL}/3", SYMBOL),
        ("delivery_damages", 3, 4, 167_173_600, f"{SYMBOL}/3", SYMBOL),
        ("delivery_invoice", 4, 3, 242_000_000, f"{SYMBOL}/3", SYMBOL),
        ("delivery_damages", 4, 3, 60_500_000, f"{SYMBOL}/3", SYMBOL),
    ]
    assert all(p.settlement_date is None for p in delivery)
    assert all(p.symbol is None and p.settlement_date is None and p.delivery_id is None
               for p in mine if p.kind == "deposit")


def test_a_late_earlier_day_does_not_move_the_stored_reference_price(store: Store) -> None:
    late = D1 + 17 * NS_PER_HOUR
    commands: list[tuple[Command, int]] = [
        *trading(),
        (SettleDaily(SYMBOL, D1, 486, (), digest("d1")), late),
        (SettleDaily(SYMBOL, D0, 482, (), digest("d0")), late),
        (SettleDaily(SYMBOL, D0, 490, (), digest("d0'"), amend=True), late),
    ]
    engine, items = run(commands)
    store.project(items[:-2])
    store.project(items[-2:-1])
    store.project(items[-1:])
    assert_matches_engine(store, engine, items)
    assert {s.symbol: s.reference_price_ticks for s in store.series()}[SYMBOL] == 486
    assert [r.price_ticks for r in store.daily_settlements(SYMBOL)] == [490, 486]


def test_reprojecting_settlement_batches_changes_nothing(store: Store) -> None:
    engine, items = run(settlement_stream())
    store.project(items)
    before = dump(store)
    store.project(items)
    store.project(items[len(items) // 2:])
    assert dump(store) == before
    assert_matches_engine(store, engine, items)


def test_upgrading_a_store_at_0002_adds_the_settlement_account(make_url_for: Callable[[], str]) -> None:
    store = Store(make_url_for())
    try:
        store.migrate("0002")
        engine, items = run(trading()[:10])
        assert items[-1].ts_ns == T0_NS
        columns = {c["name"] for c in inspect(store.engine).get_columns("ledger_postings")}
        assert "delivery_id" not in columns
        store.migrate()
        assert store.balances() == {-3: 0, -2: 0, -1: 0}
        store.project(items)
        assert_matches_engine(store, engine, items)
        columns = {c["name"] for c in inspect(store.engine).get_columns("ledger_postings")}
        assert {"delivery_id", "settlement_date"} <= columns
    finally:
        store.close()
