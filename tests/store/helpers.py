"""Shared helpers of the store tests: seeded flows cut into sequencer-like batches, and comparisons."""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import select

from exchange.domain.commands import Command
from exchange.domain.engine import Engine
from exchange.domain.events import Trade
from exchange.domain.order import Side
from exchange.service.sequencer import Sequenced
from exchange.store import Store
from exchange.store.models import Base
from exchange.store.projector import CANCELED, CLOSED, EXPIRED, OPEN, settlement_date
from exchange.testing.flow import random_commands


def run(commands: list[tuple[Command, int]], engine: Engine | None = None,
        first_seq: int = 1) -> tuple[Engine, list[Sequenced]]:
    """Apply commands to an engine as the sequencer would, numbering them from `first_seq`."""
    engine = engine or Engine()
    out = [Sequenced(seq, ts, engine.apply(command, ts)) for seq, (command, ts) in enumerate(commands, first_seq)]
    return engine, out


def flow(seed: int, n: int) -> tuple[Engine, list[Sequenced]]:
    return run(random_commands(seed, n))


def batches(items: list[Sequenced], seed: int, largest: int = 200) -> list[list[Sequenced]]:
    """Cut into batches of random sizes (1..largest), as the sequencer's group commit would."""
    rng = random.Random(seed)
    out = []
    i = 0
    while i < len(items):
        size = rng.randint(1, largest)
        out.append(items[i:i + size])
        i += size
    return out


def dump(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order: two stores with equal dumps are equal."""
    with store.engine.connect() as conn:
        return {name: [tuple(row) for row in conn.execute(select(table).order_by(*table.primary_key.columns))]
                for name, table in Base.metadata.tables.items()}


def assert_matches_engine(store: Store, engine: Engine, items: list[Sequenced]) -> None:
    """The store is an exact projection of the engine's state and of the events in `items`."""
    assert store.last_seq() == (items[-1].seq if items else 0)

    # Accounts and series.
    assert {a.account_id: a.enabled for a in store.accounts()} == {
        i: a.enabled for i, a in engine.accounts.items()}
    assert {s.symbol: (s.halted, s.terminated, s.reference_price_ticks) for s in store.series()} == {
        symbol: (s.halted, s.terminated, s.reference_price_ticks) for symbol, s in engine.series.items()}

    # Orders: the open ones are exactly the engine's live orders, field by field; every order adds up.
    stored_open = {}
    for account_id in engine.accounts:
        after = 0
        while page := store.orders(account_id, open_only=True, limit=37, after_order_id=after):
            assert [o.order_id for o in page] == sorted(o.order_id for o in page)
            stored_open.update({o.order_id: o for o in page})
            after = page[-1].order_id
    assert set(stored_open) == set(engine.orders)
    for order_id, row in stored_open.items():
        live = engine.orders[order_id]
        assert (row.account_id, row.symbol, row.side, row.price_ticks, row.remaining_lots, row.filled_lots,
                row.cancelled_lots, row.qty_lots, row.client_order_id) == (
            live.account_id, live.symbol, Side(live.side).label, live.price_ticks, live.remaining_lots,
            live.filled_lots, live.cancelled_lots, live.quantity_lots, live.client_order_id), order_id
        assert row.status == OPEN
    for account_id in engine.accounts:
        for row in store.orders(account_id, limit=1000):
            assert row.filled_lots + row.remaining_lots + row.cancelled_lots == row.qty_lots, row
            assert row.status in (OPEN, CLOSED, CANCELED, EXPIRED)
            assert (row.status == OPEN) == (row.remaining_lots > 0), row
            if row.status == CLOSED:
                assert row.filled_lots == row.qty_lots - row.cancelled_lots and row.filled_lots > 0, row

    # Positions: lots and entry cost per account and series.
    expected_positions = {(a, symbol): (x.position_lots, x.entry_cost_ticks)
                          for a, account in engine.accounts.items() for symbol, x in account.exposures.items()
                          if x.position_lots or x.entry_cost_ticks}
    stored_positions = {(p.account_id, p.symbol): (p.position_lots, p.entry_cost_ticks)
                        for a in engine.accounts for p in store.positions(a)
                        if p.position_lots or p.entry_cost_ticks}
    assert stored_positions == expected_positions

    # Cash: every ledger account, system accounts included; sums to zero; postings add up per account.
    balances = store.balances()
    assert balances == engine.ledger.balances
    assert sum(balances.values()) == 0
    for ledger_account, balance in balances.items():
        total, after = 0, 0
        while postings := store.ledger(ledger_account, limit=250, after_seq=after):
            total += sum(p.amount_micros if p.to_account == ledger_account else -p.amount_micros for p in postings)
            after = postings[-1].seq
        assert total == balance, ledger_account

    # Settlement: each series' daily settlements (price and digest as last posted) and every delivery.
    assert {(r.symbol, r.settlement_date): (r.price_ticks, r.digest) for r in store.daily_settlements()} == {
        (symbol, settlement_date(date_ns)): (x.price_ticks, x.digest)
        for symbol, s in engine.series.items() for date_ns, x in s.settlements.items()}
    deliveries = store.deliveries()
    assert [d.delivery_id for d in deliveries] == [
        delivery_id for symbol in sorted(engine.series) for delivery_id in engine.series[symbol].delivery_ids or ()]
    for stored in deliveries:
        d = engine.deliveries[stored.delivery_id]
        assert (stored.symbol, stored.number, stored.seller_account_id, stored.buyer_account_id, stored.lots,
                stored.gpus, stored.gpu_hours, stored.fsp_ticks) == (
            d.symbol, int(d.delivery_id.split("/")[-1]), d.seller, d.buyer, d.lots, d.gpus, d.gpu_hours, d.fsp_ticks)
        x = d.settlement
        settled = None if x is None else (x.digest, x.effective_micro_gpuh, x.invoice_micros, x.damages_micros,
                                          x.default)
        assert stored.status == ("assigned" if x is None else "settled")
        assert (None if stored.digest is None else (stored.digest, stored.effective_micro_gpuh, stored.invoice_micros,
                                                 stored.damages_micros, stored.defaulted)) == settled
        assert store.delivery(stored.delivery_id) == stored

    # Trades: the count and the lots of the events; per series, ids 1..n without a hole.
    trades = [e for item in items for e in item.events if type(e) is Trade]
    assert store.trade_totals() == (len(trades), sum(t.qty_lots for t in trades))
    for symbol in engine.series:
        ids: list[int] = []
        after = 0
        while trade_page := store.trades(symbol, limit=500, after_trade_id=after):
            ids.extend(t.trade_id for t in trade_page)
            after = trade_page[-1].trade_id
        assert ids == list(range(1, len(ids) + 1))
        assert len(ids) == sum(1 for t in trades if t.symbol == symbol)
