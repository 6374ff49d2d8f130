"""The seeded market simulator: deterministic, busy, mostly accepted, and leaves the engine consistent."""

from __future__ import annotations

import calendar
from collections import Counter

import pytest

from exchange.catalog import Catalog, load_catalog
from exchange.domain.engine import Engine, EngineLimits
from exchange.domain.events import (
    DuplicateOrder,
    Event,
    OrderAccepted,
    OrderExpired,
    Rejected,
    Trade,
    TradingTerminated,
)
from exchange.domain.order import OrderType, TimeInForce
from exchange.domain.units import NS_PER_SECOND
from exchange.testing.simulator import ACCOUNTS, MarketSimulator

START_NS = calendar.timegm((2026, 11, 27, 12, 0, 0)) * NS_PER_SECOND  # Friday 12:00 UTC
SYMBOLS = ["H100-M40-261128", "B200-M35-261128", "A100-M40-261128"]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def make(catalog: Catalog, seed: int = 7, symbols: list[str] | None = SYMBOLS,
         start_ns: int = START_NS) -> tuple[Engine, MarketSimulator]:
    engine = Engine(EngineLimits(catalog.rules.max_open_orders_per_account))
    sim = MarketSimulator(engine, catalog, seed, start_ns, symbols)
    return engine, sim


def run(catalog: Catalog, seed: int, steps: int, symbols: list[str] | None = SYMBOLS) -> list[Event]:
    _, sim = make(catalog, seed, symbols)
    return sim.setup() + sim.run(steps)


def test_same_seed_same_events(catalog: Catalog) -> None:
    first = run(catalog, 42, 1_500)
    second = run(catalog, 42, 1_500)
    assert len(first) > 1_500
    assert first == second


def test_different_seeds_differ(catalog: Catalog) -> None:
    assert run(catalog, 1, 500) != run(catalog, 2, 500)


def test_commands_are_evenly_spaced_in_time(catalog: Catalog) -> None:
    _, sim = make(catalog)
    sim.setup()
    for n in range(1, 51):
        events = sim.step()
        assert sim.now_ns == START_NS + n * sim.step_ns
        assert all(event.ts_ns == sim.now_ns for event in events)


def test_trades_happen_within_a_few_hundred_steps(catalog: Catalog) -> None:
    engine, sim = make(catalog)
    sim.setup()
    events = sim.run(300)
    trades = [e for e in events if isinstance(e, Trade)]
    assert len(trades) >= 20
    assert sim.stats.trades == len(trades)
    assert sim.stats.volume_lots == sum(t.qty_lots for t in trades)
    assert {t.symbol for t in trades} == set(SYMBOLS)
    engine.audit()


@pytest.mark.parametrize("seed", [0, 7, 123])
def test_audit_passes_and_ledger_balances_after_a_run(catalog: Catalog, seed: int) -> None:
    engine, sim = make(catalog, seed)
    sim.setup()
    for _ in range(6):
        sim.run(500)
        engine.audit()
    assert engine.ledger.total() == 0
    assert sim.stats.trades > 500


def test_rejects_are_a_small_minority(catalog: Catalog) -> None:
    _, sim = make(catalog, seed=11)
    sim.setup()
    events = sim.run(3_000)
    rejected = [e for e in events if isinstance(e, Rejected)]
    assert len(rejected) == sim.stats.rejected
    assert sim.stats.rejected * 5 < 3_000  # under 20%
    assert sum(sim.stats.rejects.values()) == len(rejected)


def test_exercises_the_engine(catalog: Catalog) -> None:
    _, sim = make(catalog, seed=5)
    sim.setup()
    events = sim.run(3_000)
    accepted = [e for e in events if isinstance(e, OrderAccepted)]
    kinds = Counter((e.order_type, e.tif) for e in accepted)
    for kind in ((OrderType.LIMIT, TimeInForce.GTC), (OrderType.LIMIT, TimeInForce.GTD),
                 (OrderType.LIMIT, TimeInForce.IOC), (OrderType.LIMIT, TimeInForce.FOK),
                 (OrderType.MARKET, TimeInForce.IOC), (OrderType.MARKET, TimeInForce.FOK)):
        assert kinds[kind] > 0, kind
    assert any(e.post_only for e in accepted)
    assert len({e.stp for e in accepted}) == 4
    assert any(isinstance(e, DuplicateOrder) for e in events)
    assert any(isinstance(e, OrderExpired) for e in events)
    commands = sim.stats.commands_by_type
    for name in ("PlaceOrder", "AmendOrder", "CancelOrder", "MassCancel", "AdvanceTime"):
        assert commands[name] > 0, name


def test_simulator_view_matches_the_engine(catalog: Catalog) -> None:
    """The participants track their orders and positions from events alone; check against the core."""
    engine, sim = make(catalog, seed=3)
    sim.setup()
    sim.run(2_000)
    for account_id in ACCOUNTS:
        account = engine.accounts[account_id]
        assert list(sim.by_account[account_id]) == list(account.orders)
        for order_id, order in sim.by_account[account_id].items():
            assert order.remaining_lots == account.orders[order_id].remaining_lots
            assert order.price_ticks == account.orders[order_id].price_ticks
        for symbol, exposure in account.exposures.items():
            assert sim.positions.get((account_id, symbol), 0) == exposure.position_lots


def test_positions_stay_well_inside_the_limits(catalog: Catalog) -> None:
    engine, sim = make(catalog, seed=9)
    sim.setup()
    sim.run(5_000)
    for exposure in (e for a in engine.accounts.values() for e in a.exposures.values()):
        assert exposure.worst_lots() < 1_000


def test_all_listed_series_by_default(catalog: Catalog) -> None:
    engine, sim = make(catalog, seed=4, symbols=None)
    sim.setup()
    assert len(sim.symbols) == len(catalog.listed_series(START_NS)) == len(engine.series)
    sim.run(1_500)
    engine.audit()
    assert sim.stats.trades > 0
    assert max(len(a.orders) for a in engine.accounts.values()) < engine.limits.max_open_orders_per_account
    assert sim.stats.rejected * 5 < sim.stats.commands


def test_trading_termination_is_survived(catalog: Catalog) -> None:
    """Start 10 s before the daily series stop trading at 16:00: afterwards only time advances."""
    start = calendar.timegm((2026, 11, 27, 15, 59, 50)) * NS_PER_SECOND
    engine, sim = make(catalog, seed=8, start_ns=start)
    sim.setup()
    events = sim.run(400)  # 20 s of market time
    assert {e.symbol for e in events if isinstance(e, TradingTerminated)} == set(SYMBOLS)
    assert sim.active_symbols() == []
    assert not engine.orders
    assert sim.step() == []  # AdvanceTime: nothing left to do
    engine.audit()


def test_setup_rules(catalog: Catalog) -> None:
    _, sim = make(catalog)
    with pytest.raises(RuntimeError):
        sim.step()
    sim.setup()
    with pytest.raises(RuntimeError):
        sim.setup()
    _, expired = make(catalog, symbols=["H100-M40-261120"])
    with pytest.raises(ValueError, match="H100-M40-261120"):
        expired.setup()
    with pytest.raises(ValueError):
        MarketSimulator(Engine(), catalog, 1, START_NS, SYMBOLS, step_ns=0)
