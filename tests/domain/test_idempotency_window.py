"""The core's 24 h idempotency windows (issue 13): client order ids and cash move references are
remembered for a day, so memory and snapshots stop growing with every order ever placed, and a
retry inside the window is still exactly once. Both engines (the core and the naive reference)."""

from __future__ import annotations

from typing import Any

import pytest

from exchange.domain.commands import CancelOrder, CreateAccount, Deposit, ListSeries, PlaceOrder, Withdraw
from exchange.domain.engine import IDEMPOTENCY_WINDOW_NS, Engine
from exchange.domain.events import CashMoved, CashMoveDuplicate, OrderAccepted, Rejected
from exchange.domain.order import OrderType, Side, TimeInForce
from exchange.domain.statehash import state_hash
from exchange.service.snapshot import read_snapshot, snapshot_bytes
from exchange.testing.reference import ReferenceEngine
from exchange.testing.specs import T0_NS, make_spec

W = IDEMPOTENCY_WINDOW_NS
SYMBOL = "H100-M40-261203"
IOC = PlaceOrder(1, SYMBOL, Side.BUY, 1, 470, OrderType.LIMIT, TimeInForce.IOC, client_order_id="ioc")
REST = PlaceOrder(1, SYMBOL, Side.BUY, 1, 470, OrderType.LIMIT, TimeInForce.GTC, client_order_id="rest")


def _engines() -> list[Any]:
    engines: list[Any] = [Engine(), ReferenceEngine()]
    for engine in engines:
        for command in (CreateAccount(1), Deposit(1, 10**12), ListSeries(make_spec(SYMBOL))):
            engine.apply(command, T0_NS)
    return engines


def _kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


@pytest.mark.parametrize("which", [0, 1], ids=["core", "reference"])
def test_a_client_order_id_is_exactly_once_for_24_hours_then_forgotten_once_its_order_closed(which: int) -> None:
    engine = _engines()[which]
    t = T0_NS + 1
    assert _kinds(engine.apply(IOC, t))[0] == "OrderAccepted"     # unfilled: cancelled at once, closed
    assert _kinds(engine.apply(REST, t)) == ["OrderAccepted"]    # resting: open
    assert _kinds(engine.apply(IOC, t + W - 1)) == ["DuplicateOrder"]
    again = engine.apply(IOC, t + W)                              # a day later, closed: a new order
    assert isinstance(again[0], OrderAccepted) and again[0].order_id == 3
    # The resting order is still open a day later: its id is remembered (retry, cancel by client id).
    assert _kinds(engine.apply(REST, t + W + 5)) == ["DuplicateOrder"]
    cancelled = engine.apply(CancelOrder(1, None, "rest"), t + W + 6)
    assert _kinds(cancelled) == ["OrderCancelled"]
    renewed = engine.apply(REST, t + W + 7)                       # closed and a day old: a new order
    assert isinstance(renewed[0], OrderAccepted) and renewed[0].order_id == 4


def test_memory_holds_one_day_of_client_order_ids_plus_the_open_orders() -> None:
    engine = _engines()[0]
    t = T0_NS
    for n in range(1_500):                                        # a day and a half (the series trades 2 days)
        t += W // 1_000                                           # 1,000 orders per day
        engine.apply(PlaceOrder(1, SYMBOL, Side.BUY, 1, 470, OrderType.LIMIT, TimeInForce.IOC,
                                client_order_id=f"o{n}"), t)
    assert 1_000 <= len(engine.client_orders) <= 1_001
    assert len(engine.client_order_queue) + len(engine.client_orders_lingering) == len(engine.client_orders)


def test_the_window_survives_a_snapshot_exactly() -> None:
    engine = _engines()[0]
    t = T0_NS + 1
    engine.apply(REST, t)
    engine.apply(IOC, t)
    engine.apply(Deposit(1, 5, "wire-1"), t)
    engine.apply(PlaceOrder(1, SYMBOL, Side.SELL, 1, 520, client_order_id="later"), t + W + 1)  # REST lingers
    assert engine.client_orders_lingering and engine.client_order_queue
    _, recorded, restored = read_snapshot(snapshot_bytes(engine, 7))
    assert recorded == state_hash(engine) == state_hash(restored)
    for command, at in ((REST, t + W + 2), (IOC, t + W + 3), (Deposit(1, 5, "wire-1"), t + W + 4)):
        assert repr(engine.apply(command, at)) == repr(restored.apply(command, at))
    assert state_hash(engine) == state_hash(restored)


@pytest.mark.parametrize("which", [0, 1], ids=["core", "reference"])
def test_a_cash_move_with_a_reference_moves_once(which: int) -> None:
    engine = _engines()[which]
    t = T0_NS + 1
    first = engine.apply(Deposit(1, 7_000_000, "wire-1"), t)
    assert isinstance(first[0], CashMoved)
    again = engine.apply(Deposit(1, 7_000_000, "wire-1"), t + 5)
    assert again == [CashMoveDuplicate(again[0].seq, t + 5, 1, "wire-1")]
    other = engine.apply(Deposit(1, 8_000_000, "wire-1"), t + 6)
    assert isinstance(other[0], Rejected) and other[0].code == "reference_conflict"
    withdraw = engine.apply(Withdraw(1, 7_000_000, "wire-1"), t + 7)   # another kind of move: a conflict too
    assert isinstance(withdraw[0], Rejected) and withdraw[0].code == "reference_conflict"
    for bad in ("", "x" * 129, "tab\there"):
        refused = engine.apply(Deposit(1, 1, bad), t + 8)
        assert isinstance(refused[0], Rejected) and refused[0].code == "invalid_reference"
    later = engine.apply(Deposit(1, 7_000_000, "wire-1"), t + W)      # a day later: a new deposit
    assert isinstance(later[0], CashMoved)


def test_a_refused_cash_move_does_not_take_its_reference() -> None:
    engine = _engines()[0]
    refused = engine.apply(Withdraw(1, 10**13, "out-1"), T0_NS + 1)     # more than the cash
    assert isinstance(refused[0], Rejected) and refused[0].code == "insufficient_funds"
    assert isinstance(engine.apply(Withdraw(1, 10**6, "out-1"), T0_NS + 2)[0], CashMoved)


def test_a_re_armed_dead_mans_switch_leaves_no_stale_deadline() -> None:
    from exchange.domain.commands import CancelAllAfter

    engine = _engines()[0]
    t = T0_NS + 1
    engine.apply(CancelAllAfter(1, 1_000), t)
    engine.apply(CancelAllAfter(1, 60_000), t + 1)                   # a heartbeat re-arms it
    assert engine.next_deadline_ns == t + 1 + 60_000 * 10**6          # not the moot t + 1 s
    engine.apply(CancelAllAfter(1, 0), t + 2)                         # disarmed
    assert engine.next_deadline_ns == make_spec(SYMBOL).trading_end_ns   # only the series' termination left
