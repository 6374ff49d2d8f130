"""The projector: the store equals the core after any batching, re-delivery or crash."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.domain.account import Account, Exposure, book_fill
from exchange.domain.codes import CancelReason
from exchange.domain.commands import (
    AdvanceTime,
    AmendOrder,
    CancelAllAfter,
    CancelOrder,
    Command,
    CreateAccount,
    Deposit,
    HaltSeries,
    ListSeries,
    PlaceOrder,
    SetAccountEnabled,
    TerminateTrading,
    Withdraw,
)
from exchange.domain.events import CancelAllAfterSet, CashMoved, DeadMansSwitchFired
from exchange.domain.ledger import EXTERNAL, FEES
from exchange.domain.order import OrderType, Side, TimeInForce
from exchange.domain.units import NS_PER_SECOND
from exchange.service.projection_worker import Projector
from exchange.service.sequencer import Sequenced
from exchange.store import ProjectionError, Store, fill_position
from exchange.store.projector import Projection
from exchange.testing.specs import T0_NS, make_spec
from tests.store.helpers import assert_matches_engine, batches, dump, flow, run

SEEDS = (11, 22, 33)
COMMANDS = 1500


@pytest.mark.parametrize("seed", SEEDS)
def test_projection_of_a_seeded_flow_equals_the_core(store: Store, seed: int) -> None:
    engine, items = flow(seed, COMMANDS)
    for batch in batches(items, seed):
        store.project(batch)
    assert_matches_engine(store, engine, items)


def test_store_is_a_projector(store: Store) -> None:
    projector: Projector = store  # the service's protocol, checked by mypy
    assert projector.last_seq() == 0
    projector.project([])
    assert projector.last_seq() == 0


def test_reprojecting_and_overlapping_batches_change_nothing(store: Store) -> None:
    engine, items = flow(5, 800)
    for batch in batches(items, 1):
        store.project(batch)
    before = dump(store)
    for batch in batches(items, 2):  # everything again, cut differently
        store.project(batch)
    for start in range(0, len(items), 97):  # overlapping windows, each reaching past the end of the last
        store.project(items[max(0, start - 50):start + 150])
    store.project(items)
    assert dump(store) == before
    assert_matches_engine(store, engine, items)


def test_a_crash_between_batches_catches_up_exactly(make_store: Callable[[], Store]) -> None:
    engine, items = flow(7, 1200)
    reference = make_store()
    for batch in batches(items, 3):
        reference.project(batch)

    crashed = make_store()
    for cut in (1, 150, 151, 600):
        # A process projects up to `cut` and dies; its successor feeds everything from the start.
        for batch in batches(items[:cut], cut):
            crashed.project(batch)
        assert crashed.last_seq() == cut
    for batch in batches(items, 4):
        crashed.project(batch)
    assert dump(crashed) == dump(reference)
    assert_matches_engine(crashed, engine, items)


def test_a_failure_inside_a_batch_rolls_all_of_it_back(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, items = flow(9, 600)
    store.project(items[:300])
    before = dump(store)

    original = Projection._upsert

    def failing(self: Projection, table: object, rows: list[dict[str, object]]) -> None:
        original(self, table, rows)  # type: ignore[arg-type]
        if getattr(table, "name", "") == "positions":  # after accounts, orders and trades were written
            raise OSError("disk gone")

    monkeypatch.setattr(Projection, "_upsert", failing)
    with pytest.raises(OSError, match="disk gone"):
        store.project(items[300:])
    assert dump(store) == before
    assert store.last_seq() == 300

    monkeypatch.setattr(Projection, "_upsert", original)
    store.project(items)
    assert_matches_engine(store, engine, items)


def test_a_gap_is_refused_and_changes_nothing(store: Store) -> None:
    _, items = flow(13, 300)
    store.project(items[:100])
    before = dump(store)
    with pytest.raises(ProjectionError, match="does not follow 100"):
        store.project(items[101:200])
    with pytest.raises(ProjectionError, match="does not follow"):
        store.project([*items[100:150], *items[151:200]])
    assert dump(store) == before
    store.project(items[100:])
    assert store.last_seq() == items[-1].seq


def test_a_store_that_disagrees_with_the_core_refuses_the_batch(store: Store) -> None:
    """CashMoved carries the trader's cash after the posting: the projector checks its own against it."""
    _, items = run([(CreateAccount(1), T0_NS), (Deposit(1, 500), T0_NS), (Deposit(1, 700), T0_NS)])
    store.project(items[:2])
    wrong = items[2].events[0]
    assert isinstance(wrong, CashMoved)
    tampered = Sequenced(3, T0_NS, [wrong._replace(balance_micros=wrong.balance_micros + 1)])
    with pytest.raises(ProjectionError, match="cash is 1201 in the core but 1200 in the store"):
        store.project([tampered])
    assert store.last_seq() == 2 and store.balances()[1] == 500
    store.project(items)
    assert store.balances() == {-3: 0, -2: 0, -1: -1200, 1: 1200}


def test_an_unknown_event_type_is_refused(store: Store) -> None:
    with pytest.raises(ProjectionError, match="does not know event type"):
        store.project([Sequenced(1, T0_NS, ["not an event"])])  # type: ignore[list-item]
    assert store.last_seq() == 0


def test_order_lifecycle_columns(store: Store) -> None:
    """Statuses (CCXT spelling), quantities and reasons through fills, amends, cancels, expiry, termination."""
    spec = make_spec(maker_fee_ppm=50)
    s = spec.symbol
    t = T0_NS
    commands: list[tuple[Command, int]] = [
        (ListSeries(spec), t), (CreateAccount(1), t), (CreateAccount(2), t),
        (Deposit(1, 10**12), t), (Deposit(2, 10**12), t),
        (PlaceOrder(1, s, Side.SELL, 5, 480, client_order_id="s1"), t),             # order 1
        (PlaceOrder(2, s, Side.BUY, 3, 480), t),                                     # order 2: fills 3 of 1
        (AmendOrder(1, 1, qty_lots=1), t),                                           # 1: remaining 2 -> 1
        (PlaceOrder(2, s, Side.BUY, 4, 470, tif=TimeInForce.GTD, expire_ts_ns=t + NS_PER_SECOND), t),  # 3
        (AmendOrder(2, 3, price_ticks=471, qty_lots=6), t),                          # 3: loses priority, 6 open
        (PlaceOrder(2, s, Side.BUY, 2, None, OrderType.MARKET, TimeInForce.IOC), t),  # 4: 1 fills, 1 cancelled
        (PlaceOrder(1, s, Side.SELL, 2, 490), t),                                    # 5
        (AdvanceTime(), t + 2 * NS_PER_SECOND),                                      # 3 expires
        (HaltSeries(s, True), t + 2 * NS_PER_SECOND),
        (HaltSeries(s, False), t + 2 * NS_PER_SECOND),
        (Withdraw(1, 1_000), t + 2 * NS_PER_SECOND),
        (CancelOrder(1, 99), t + 2 * NS_PER_SECOND),                                 # rejected: nothing
        (SetAccountEnabled(2, False), t + 2 * NS_PER_SECOND),
        (TerminateTrading(s), t + 3 * NS_PER_SECOND),                                # 5 cancelled
    ]
    engine, items = run(commands)
    store.project(items)
    assert_matches_engine(store, engine, items)
    orders = {o.order_id: o for a in (1, 2) for o in store.orders(a)}
    q = {i: (o.status, o.qty_lots, o.filled_lots, o.remaining_lots, o.cancelled_lots, o.price_ticks)
         for i, o in orders.items()}
    assert q == {
        1: ("closed", 5, 4, 0, 1, 480),
        2: ("closed", 3, 3, 0, 0, 480),
        3: ("expired", 6, 0, 0, 6, 471),
        4: ("canceled", 2, 1, 0, 1, None),
        5: ("canceled", 2, 0, 0, 2, 490),
    }
    assert orders[1].client_order_id == "s1" and orders[1].side == "sell" and orders[1].tif == "gtc"
    assert orders[3].tif == "gtd" and orders[3].expire_ts_ns == t + NS_PER_SECOND
    assert orders[4].order_type == "market" and orders[4].cancel_reason == CancelReason.IOC_REMAINDER
    assert orders[5].cancel_reason == CancelReason.TRADING_TERMINATED
    assert store.orders(1, open_only=True) == []
    assert [a.enabled for a in store.accounts()] == [True, False]
    assert [(x.halted, x.terminated) for x in store.series()] == [(False, True)]
    trades = store.trades(s)
    assert [(tr.trade_id, tr.price_ticks, tr.qty_lots, tr.aggressor_side, tr.maker_order_id, tr.taker_order_id)
            for tr in trades] == [(1, 480, 3, "buy", 1, 2), (2, 480, 1, "buy", 1, 4)]
    fees = [p for p in store.ledger(FEES) if p.kind == "fee"]
    assert [(p.from_account, p.to_account, p.trade_id, p.leg) for p in fees] == [
        (1, FEES, 1, 0), (2, FEES, 1, 1), (1, FEES, 2, 0), (2, FEES, 2, 1)]
    assert all(p.amount_micros > 0 for p in fees)
    first_page = store.ledger(FEES, limit=1)  # one trade, two fee legs under one seq: a page never splits them
    assert first_page == fees[:2]
    assert store.ledger(FEES, limit=1, after_seq=first_page[-1].seq) == fees[2:]
    kinds = [p.kind for p in store.ledger(1)]
    assert kinds == ["deposit", "fee", "fee", "withdrawal"]
    assert store.ledger(EXTERNAL, limit=1)[0].kind == "deposit"
    assert store.positions(1)[0].position_lots == -4 and store.positions(2)[0].position_lots == 4


def test_dead_mans_switch_cancellations_project_with_their_reason(store: Store) -> None:
    s = make_spec().symbol
    t = T0_NS
    commands: list[tuple[Command, int]] = [
        (ListSeries(make_spec()), t), (CreateAccount(1), t), (CreateAccount(2), t),
        (Deposit(1, 10**12), t), (Deposit(2, 10**12), t),
        (PlaceOrder(1, s, Side.BUY, 2, 470), t), (PlaceOrder(1, s, Side.SELL, 3, 490), t),
        (PlaceOrder(2, s, Side.BUY, 1, 469), t),
        (CancelAllAfter(1, 1_000), t), (CancelAllAfter(2, 1_000), t), (CancelAllAfter(2, 0), t),
        (AdvanceTime(), t + NS_PER_SECOND),
    ]
    engine, items = run(commands)
    kinds = [type(e) for item in items for e in item.events]
    assert kinds.count(CancelAllAfterSet) == 3 and kinds.count(DeadMansSwitchFired) == 1
    store.project(items)
    assert_matches_engine(store, engine, items)
    orders = {o.order_id: o for a in (1, 2) for o in store.orders(a)}
    assert {i: (o.status, o.cancelled_lots, o.cancel_reason) for i, o in orders.items()} == {
        1: ("canceled", 2, CancelReason.DEAD_MANS_SWITCH), 2: ("canceled", 3, "dead_mans_switch"),
        3: ("open", 0, None)}


def test_limits_are_checked(store: Store) -> None:
    for bad in (0, 1001):
        with pytest.raises(ValueError, match="limit"):
            store.orders(1, limit=bad)
        with pytest.raises(ValueError, match="limit"):
            store.trades("X", limit=bad)
        with pytest.raises(ValueError, match="limit"):
            store.ledger(1, limit=bad)


@given(
    fills=st.lists(st.tuples(st.integers(-50, 50).filter(bool), st.integers(1, 2000)), max_size=30),
)
def test_fill_position_is_the_core_rule(fills: list[tuple[int, int]]) -> None:
    """The store's pure average-cost rule agrees with the core's `book_fill`, fill after fill."""
    account = Account(1)
    exposure = Exposure()
    exposure.open_buy_lots = exposure.open_sell_lots = 10**6  # enough open lots for every fill
    exposure.margin_micros = account.margin_micros = 10**18    # im 0 below: margin only falls
    position, entry = 0, 0
    for lots, price in fills:
        book_fill(account, exposure, lots, price, 0)
        position, entry = fill_position(position, entry, lots, price)
        assert (position, entry) == (exposure.position_lots, exposure.entry_cost_ticks)
