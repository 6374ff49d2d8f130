"""Readable, table-style scenarios for the tricky cases of matching, STP, amend and time.

Each row: what rests first, the command under test, and the events it must produce (see
`market.summary` for the notation: `trade QTY@PRICE maker#ID taker#ID`, `cancelled #ID QTY REASON`).
Order ids count from 1 in the order the orders were accepted. The reference price is 480 ticks
($2.40), so the band is 432..528.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from exchange.domain.codes import CancelReason
from exchange.domain.commands import (
    AdvanceTime,
    AmendOrder,
    CancelAllAfter,
    CancelOrder,
    Deposit,
    HaltSeries,
    MassCancel,
    PlaceOrder,
    SetAccountEnabled,
    Withdraw,
)
from exchange.domain.engine import CANCEL_ALL_AFTER_MS_MAX, Engine, EngineLimits
from exchange.domain.errors import InvariantViolation
from exchange.domain.events import CancelAllAfterSet, DeadMansSwitchFired, DuplicateOrder, OrderCancelled, Rejected
from exchange.domain.ledger import EXTERNAL, FEES
from exchange.domain.order import Side
from exchange.domain.statehash import state_dump
from exchange.domain.units import NS_PER_SECOND
from exchange.testing.specs import TRADING_END_NS, make_spec
from tests.domain.market import IM_PER_LOT_MICROS, SYMBOL, Market, summary

# (account, side, qty, price, options) resting before the command
Rest = tuple[int, str, int, int | None, dict[str, Any]]


def _setup(market: Market, resting: list[Rest]) -> None:
    for account, side, qty, price, options in resting:
        events = (market.buy if side == "buy" else market.sell)(account, qty, price, **options)
        assert not any(isinstance(e, Rejected) for e in events), events


MATCHING: list[tuple[str, list[Rest], Rest, list[str], tuple[list[tuple[int, int, int]], ...]]] = [
    # -- FOK ---------------------------------------------------------------------------------
    ("FOK that cannot fill in full trades nothing",
     [(2, "sell", 3, 480, {}), (3, "sell", 2, 481, {})],
     (1, "buy", 6, 481, {"tif": "fok"}),
     ["accepted #3", "cancelled #3 6 fok_unfillable"],
     ([], [(1, 480, 3), (2, 481, 2)])),
    ("FOK that can fill in full sweeps two levels",
     [(2, "sell", 3, 480, {}), (3, "sell", 5, 481, {})],
     (1, "buy", 6, 481, {"tif": "fok"}),
     ["accepted #3", "trade 3@480 maker#1 taker#3", "trade 3@481 maker#2 taker#3"],
     ([], [(2, 481, 2)])),
    ("FOK blocked by its own order under cancel_newest: no trade, own order untouched",
     [(2, "sell", 3, 480, {}), (1, "sell", 5, 481, {}), (3, "sell", 5, 481, {})],
     (1, "buy", 6, 481, {"tif": "fok"}),
     ["accepted #4", "cancelled #4 6 fok_unfillable"],
     ([], [(1, 480, 3), (2, 481, 5), (3, 481, 5)])),
    ("FOK under cancel_oldest counts past its own order, which it then cancels",
     [(2, "sell", 3, 480, {}), (1, "sell", 2, 480, {}), (3, "sell", 5, 481, {})],
     (1, "buy", 8, 481, {"tif": "fok", "stp": "cancel_oldest"}),
     ["accepted #4", "trade 3@480 maker#1 taker#4", "cancelled #2 2 self_trade", "trade 5@481 maker#3 taker#4"],
     ([], [])),
    ("FOK under cancel_oldest that still falls short cancels nothing",
     [(2, "sell", 3, 480, {}), (1, "sell", 2, 480, {})],
     (1, "buy", 4, 481, {"tif": "fok", "stp": "cancel_oldest"}),
     ["accepted #3", "cancelled #3 4 fok_unfillable"],
     ([], [(1, 480, 3), (2, 480, 2)])),
    # -- IOC and market -------------------------------------------------------------------------
    ("IOC remainder never rests",
     [(2, "sell", 2, 480, {})],
     (1, "buy", 5, 480, {"tif": "ioc"}),
     ["accepted #2", "trade 2@480 maker#1 taker#2", "cancelled #2 3 ioc_remainder"],
     ([], [])),
    ("IOC that crosses nothing is cancelled whole",
     [(2, "sell", 2, 481, {})],
     (1, "buy", 5, 480, {"tif": "ioc"}),
     ["accepted #2", "cancelled #2 5 ioc_remainder"],
     ([], [(1, 481, 2)])),
    ("market order on an empty side is accepted and cancelled whole",
     [(2, "buy", 2, 470, {})],
     (1, "buy", 5, None, {"tif": "ioc"}),
     ["accepted #2", "cancelled #2 5 ioc_remainder"],
     ([(1, 470, 2)], [])),
    ("market sell sweeps the bids best first, protected by the band",
     [(2, "buy", 2, 470, {}), (3, "buy", 2, 475, {}), (2, "buy", 9, 432, {})],
     (1, "sell", 6, None, {"tif": "ioc"}),
     ["accepted #4", "trade 2@475 maker#2 taker#4", "trade 2@470 maker#1 taker#4", "trade 2@432 maker#3 taker#4"],
     ([(3, 432, 7)], [])),
    ("price-time priority: earlier order at the same price fills first; trade at the maker's price",
     [(2, "sell", 2, 479, {}), (3, "sell", 2, 479, {}), (4, "sell", 2, 478, {})],
     (1, "buy", 5, 485, {}),
     ["accepted #4", "trade 2@478 maker#3 taker#4", "trade 2@479 maker#1 taker#4", "trade 1@479 maker#2 taker#4"],
     ([], [(2, 479, 1)])),
    # -- self-trade prevention: account 1 rests 5 @480 behind nothing, then buys 3 through it -----
    ("STP cancel_newest: the incoming order's remainder is cancelled",
     [(1, "sell", 5, 480, {})],
     (1, "buy", 3, 480, {"stp": "cancel_newest"}),
     ["accepted #2", "cancelled #2 3 self_trade"],
     ([], [(1, 480, 5)])),
    ("STP cancel_oldest: the resting order is cancelled, the incoming one rests",
     [(1, "sell", 5, 480, {})],
     (1, "buy", 3, 480, {"stp": "cancel_oldest"}),
     ["accepted #2", "cancelled #1 5 self_trade"],
     ([(2, 480, 3)], [])),
    ("STP cancel_both: both go",
     [(1, "sell", 5, 480, {})],
     (1, "buy", 3, 480, {"stp": "cancel_both"}),
     ["accepted #2", "cancelled #1 5 self_trade", "cancelled #2 3 self_trade"],
     ([], [])),
    ("STP decrement: both shrink by the smaller quantity",
     [(1, "sell", 5, 480, {})],
     (1, "buy", 3, 480, {"stp": "decrement"}),
     ["accepted #2", "cancelled #1 3 self_trade left 2", "cancelled #2 3 self_trade"],
     ([], [(1, 480, 2)])),
    ("STP only between one account's orders: it trades with others first",
     [(2, "sell", 2, 479, {}), (1, "sell", 5, 480, {})],
     (1, "buy", 4, 480, {}),
     ["accepted #3", "trade 2@479 maker#1 taker#3", "cancelled #3 2 self_trade"],
     ([], [(2, 480, 5)])),
    # -- post-only -----------------------------------------------------------------------------
    ("post-only that would take is rejected",
     [(2, "sell", 2, 480, {})],
     (1, "buy", 1, 480, {"post_only": True}),
     ["rejected post_only_would_take"],
     ([], [(1, 480, 2)])),
    ("post-only that rests is accepted",
     [(2, "sell", 2, 480, {})],
     (1, "buy", 1, 479, {"post_only": True}),
     ["accepted #2"],
     ([(2, 479, 1)], [(1, 480, 2)])),
    # -- price band: 432..528 inclusive ----------------------------------------------------------
    ("price exactly at the upper band edge is accepted", [], (1, "buy", 1, 528, {}), ["accepted #1"],
     ([(1, 528, 1)], [])),
    ("price exactly at the lower band edge is accepted", [], (1, "sell", 1, 432, {}), ["accepted #1"],
     ([], [(1, 432, 1)])),
    ("one tick above the band is rejected", [], (1, "buy", 1, 529, {}), ["rejected price_outside_band"],
     ([], [])),
    ("one tick below the band is rejected", [], (1, "sell", 1, 431, {}), ["rejected price_outside_band"],
     ([], [])),
    # -- static validation ----------------------------------------------------------------------
    ("zero quantity", [], (1, "buy", 0, 480, {}), ["rejected invalid_quantity"], ([], [])),
    ("above the max order size", [], (1, "buy", 501, 480, {}), ["rejected order_too_large"], ([], [])),
    ("market GTC makes no sense", [], (1, "buy", 1, None, {}), ["rejected invalid_time_in_force"], ([], [])),
    ("post-only IOC makes no sense", [], (1, "buy", 1, 480, {"tif": "ioc", "post_only": True}),
     ["rejected invalid_time_in_force"], ([], [])),
    ("GTD without an expiry", [], (1, "buy", 1, 480, {"tif": "gtd"}), ["rejected expire_time_required"], ([], [])),
    ("GTC with an expiry", [], (1, "buy", 1, 480, {"expire_ns": 1}), ["rejected expire_time_not_allowed"],
     ([], [])),
]


@pytest.mark.parametrize(("title", "resting", "order", "events", "book"), MATCHING, ids=[row[0] for row in MATCHING])
def test_matching(title: str, resting: list[Rest], order: Rest, events: list[str],
                  book: tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]) -> None:
    market = Market()
    _setup(market, resting)
    account, side, qty, price, options = order
    got = (market.buy if side == "buy" else market.sell)(account, qty, price, **options)
    assert summary(got) == events
    assert market.book() == book
    market.engine.audit()


def test_cancel_after_full_fill_is_rejected_and_changes_nothing() -> None:
    market = Market()
    market.sell(2, 3, 480)
    market.buy(1, 3, 480)
    before = state_dump(market.engine, include_counters=False)
    assert summary(market.do(CancelOrder(2, 1))) == ["rejected order_not_open"]
    assert state_dump(market.engine, include_counters=False) == before


def test_cannot_cancel_or_amend_another_accounts_order() -> None:
    market = Market()
    market.sell(2, 3, 480)
    assert summary(market.do(CancelOrder(1, 1))) == ["rejected order_not_open"]
    assert summary(market.do(AmendOrder(1, 1, qty_lots=1))) == ["rejected order_not_open"]
    assert market.book() == ([], [(1, 480, 3)])


def test_amend_of_a_partially_filled_order_uses_the_open_quantity() -> None:
    market = Market()
    market.buy(1, 10, 480)
    market.buy(3, 1, 480)           # behind #1 at the same price
    market.sell(2, 4, 480)          # fills 4 of #1: open 6
    order = market.engine.orders[1]
    assert (order.filled_lots, order.remaining_lots) == (4, 6)
    # Reduce the open quantity to 3: keeps priority (still ahead of #2).
    assert summary(market.do(AmendOrder(1, 1, qty_lots=3))) == ["amended #1 3@480 kept priority"]
    assert market.book()[0] == [(1, 480, 3), (2, 480, 1)]
    order = market.engine.orders[1]
    assert (order.quantity_lots, order.filled_lots, order.remaining_lots, order.cancelled_lots) == (10, 4, 3, 3)
    # Increase the open quantity to 8: loses priority (now behind #2).
    assert summary(market.do(AmendOrder(1, 1, qty_lots=8))) == ["amended #1 8@480 lost priority"]
    assert market.book()[0] == [(2, 480, 1), (1, 480, 8)]
    order = market.engine.orders[1]
    assert (order.quantity_lots, order.filled_lots, order.remaining_lots, order.cancelled_lots) == (15, 4, 8, 3)
    market.engine.audit()


def test_amend_to_a_crossing_price_matches_at_once() -> None:
    market = Market()
    market.sell(2, 2, 482)
    market.buy(1, 5, 480)
    assert summary(market.do(AmendOrder(1, 2, price_ticks=482))) == [
        "amended #2 5@482 lost priority", "trade 2@482 maker#1 taker#2"]
    assert market.book() == ([(2, 482, 3)], [])


def test_amend_by_client_order_id() -> None:
    market = Market()
    market.buy(1, 5, 470, cid="bid-1")
    assert summary(market.do(AmendOrder(1, None, qty_lots=2, client_order_id="bid-1"))) == [
        "amended #1 2@470 kept priority"]
    assert summary(market.do(AmendOrder(2, None, qty_lots=1, client_order_id="bid-1"))) == [
        "rejected order_not_open"]
    assert summary(market.do(AmendOrder(1, 1, qty_lots=1, client_order_id="bid-1"))) == [
        "rejected invalid_order_reference"]


def test_amend_rejections() -> None:
    market = Market()
    market.buy(1, 5, 480, post_only=True)
    market.sell(2, 1, 481)
    cases = [
        (AmendOrder(1, 1), "invalid_amend"),
        (AmendOrder(1, 1, price_ticks=480, qty_lots=5), "amend_no_change"),
        (AmendOrder(1, 1, qty_lots=0), "invalid_quantity"),
        (AmendOrder(1, 1, price_ticks=600), "price_outside_band"),
        (AmendOrder(1, 1, price_ticks=481), "post_only_would_take"),
        (AmendOrder(1, 99, qty_lots=1), "order_not_open"),
    ]
    before = state_dump(market.engine, include_counters=False)
    for command, code in cases:
        assert summary(market.do(command)) == [f"rejected {code}"], command
    assert state_dump(market.engine, include_counters=False) == before


def test_client_order_id_retry_returns_the_original_and_a_different_payload_conflicts() -> None:
    market = Market()
    market.sell(2, 2, 480)
    first = market.buy(1, 3, 480, cid="abc")
    assert summary(first) == ["accepted #2", "trade 2@480 maker#1 taker#2"]
    before = state_dump(market.engine, include_counters=False)
    retry = market.buy(1, 3, 480, cid="abc")
    assert len(retry) == 1 and isinstance(retry[0], DuplicateOrder)
    assert retry[0].order_id == 2 and list(retry[0].original) == first
    assert summary(market.buy(1, 4, 480, cid="abc")) == ["rejected client_order_id_conflict"]
    assert state_dump(market.engine, include_counters=False) == before
    # Another account may use the same client order id; and the id cancels the order.
    assert summary(market.buy(3, 1, 470, cid="abc")) == ["accepted #3"]
    assert summary(market.do(CancelOrder(1, client_order_id="abc"))) == ["cancelled #2 1 requested"]


def test_margin_is_checked_on_the_worst_case_and_reducing_orders_always_pass() -> None:
    market = Market(cash_micros=0)
    market.do(Deposit(1, 2 * IM_PER_LOT_MICROS))
    assert summary(market.buy(1, 2, 470)) == ["accepted #1"]
    assert market.engine.accounts[1].margin_micros == 2 * IM_PER_LOT_MICROS
    assert summary(market.buy(1, 1, 470)) == ["rejected insufficient_margin"]
    # A sell of 2 does not raise max(|0 + 2|, |0 − 2|): accepted with no spare cash.
    assert summary(market.sell(1, 2, 490)) == ["accepted #2"]
    assert summary(market.sell(1, 1, 490)) == ["rejected insufficient_margin"]
    # Withdrawing would leave the margin uncovered.
    assert summary(market.do(Withdraw(1, 1))) == ["rejected insufficient_funds"]
    market.do(MassCancel(1))
    assert market.engine.accounts[1].margin_micros == 0
    assert summary(market.do(Withdraw(1, 2 * IM_PER_LOT_MICROS))) == ["CashMoved"]


def test_position_limit_and_open_order_limit() -> None:
    market = Market(spec=make_spec(max_position_lots=10, max_order_lots=8), limits=EngineLimits(3))
    assert summary(market.buy(1, 8, 470)) == ["accepted #1"]
    assert summary(market.buy(1, 3, 470)) == ["rejected position_limit"]
    assert summary(market.sell(1, 8, 490)) == ["accepted #2"]      # does not raise the worst case
    assert summary(market.buy(1, 2, 470)) == ["accepted #3"]
    assert summary(market.buy(1, 1, 460)) == ["rejected open_order_limit"]
    assert summary(market.buy(2, 1, 475)) == ["accepted #4"]
    # IOC orders never rest, so the open-order cap does not apply to them.
    assert summary(market.sell(1, 1, 475, tif="ioc")) == ["accepted #5", "trade 1@475 maker#4 taker#5"]


def test_fees_go_to_the_fee_account_and_the_ledger_balances() -> None:
    market = Market()
    market.sell(2, 5, 480)
    events = market.buy(1, 5, 480)
    trade = events[1]
    # notional = $2.40 × 5 lots × 192 GPU-hours = $2,304; taker fee 2 bps = $0.4608
    assert (trade.maker_fee_micros, trade.taker_fee_micros) == (0, 460_800)
    balances = market.engine.ledger.balances
    assert balances[FEES] == 460_800
    assert balances[1] == 10**12 - 460_800
    assert balances[EXTERNAL] == -4 * 10**12
    assert market.engine.ledger.total() == 0
    exposure = market.engine.accounts[1].exposures[SYMBOL]
    assert (exposure.position_lots, exposure.average_entry_ticks()) == (5, Fraction(480))


def test_gtd_orders_expire_at_their_time_even_without_traffic() -> None:
    market = Market()
    expire = market.now + 5 * NS_PER_SECOND
    market.buy(1, 2, 470, tif="gtd", expire_ns=expire)
    assert summary(market.do(AdvanceTime(), at_ns=expire - 1)) == []
    assert summary(market.do(AdvanceTime(), at_ns=expire)) == ["expired #1 2"]
    assert market.book() == ([], [])
    assert market.engine.accounts[1].margin_micros == 0


def test_trading_terminates_at_its_time_and_cancels_resting_orders() -> None:
    market = Market()
    market.buy(1, 2, 470)
    market.sell(2, 1, 490)
    events = market.do(PlaceOrder(3, SYMBOL, Side.BUY, 1, 480), at_ns=TRADING_END_NS)
    assert summary(events) == ["cancelled #1 2 trading_terminated", "cancelled #2 1 trading_terminated",
                               "TradingTerminated", "rejected trading_terminated"]
    market.engine.audit()


# -- dead man's switch (cancel-all-after) ------------------------------------------------------------

MS = 1_000_000  # ns


def test_dead_mans_switch_fires_at_its_deadline_without_traffic_and_cancels_only_that_account() -> None:
    market = Market()
    market.buy(1, 2, 470)
    market.sell(1, 3, 490)
    market.buy(2, 1, 469)
    market.sell(1, 1, 491, tif="gtd", expire_ns=market.now + 60 * NS_PER_SECOND)
    armed_at = market.now
    deadline = armed_at + 5_000 * MS
    events = market.do(CancelAllAfter(1, 5_000))
    assert events == [CancelAllAfterSet(events[0].seq, armed_at, 1, deadline)]
    assert market.engine.accounts[1].cancel_all_at_ns == deadline
    assert market.engine.next_deadline_ns == deadline
    assert summary(market.do(AdvanceTime(), at_ns=deadline - 1)) == []
    fired = market.do(AdvanceTime(), at_ns=deadline)
    assert summary(fired) == ["cancelled #1 2 dead_mans_switch", "cancelled #2 3 dead_mans_switch",
                              "cancelled #4 1 dead_mans_switch", "switch @1 fired 3"]
    assert all(e.reason is CancelReason.DEAD_MANS_SWITCH for e in fired if isinstance(e, OrderCancelled))
    assert fired[-1] == DeadMansSwitchFired(fired[-1].seq, deadline, 1, 3)
    assert market.book() == ([(3, 469, 1)], [])  # account 2's order is untouched
    account = market.engine.accounts[1]
    assert (account.cancel_all_at_ns, account.margin_micros, account.orders) == (0, 0, {})
    assert account.enabled  # unlike the kill switch, the account can trade again at once
    assert summary(market.buy(1, 1, 470)) == ["accepted #5"]
    assert summary(market.do(AdvanceTime(), at_ns=deadline + 10 * NS_PER_SECOND)) == []  # fires once
    market.engine.audit()


def test_dead_mans_switch_fires_before_the_command_that_finds_it_due() -> None:
    market = Market()
    market.buy(1, 2, 470)
    market.do(CancelAllAfter(1, 1))
    market.now += MS
    events = market.sell(2, 2, 470)  # would have traded with #1
    assert summary(events) == ["cancelled #1 2 dead_mans_switch", "switch @1 fired 1", "accepted #2"]
    assert market.book() == ([], [(2, 470, 2)])


def test_rearming_replaces_the_deadline_and_zero_disarms() -> None:
    market = Market()
    market.buy(1, 2, 470)
    t0 = market.now
    assert summary(market.do(CancelAllAfter(1, 1_000))) == [f"switch @1 armed {t0 + 1_000 * MS}"]
    # A heartbeat: re-armed before the first deadline, so only the second one counts.
    assert summary(market.do(CancelAllAfter(1, 1_000), at_ns=t0 + 900 * MS)) == [f"switch @1 armed {t0 + 1_900 * MS}"]
    assert summary(market.do(AdvanceTime(), at_ns=t0 + 1_000 * MS)) == []  # the stale entry is skipped
    assert market.engine.accounts[1].cancel_all_at_ns == t0 + 1_900 * MS
    # Re-arming with a shorter timeout brings the deadline forward.
    assert summary(market.do(CancelAllAfter(1, 100), at_ns=t0 + 1_500 * MS)) == [f"switch @1 armed {t0 + 1_600 * MS}"]
    assert summary(market.do(CancelAllAfter(1, 0), at_ns=t0 + 1_550 * MS)) == ["switch @1 disarmed"]
    assert market.engine.accounts[1].cancel_all_at_ns == 0
    assert summary(market.do(AdvanceTime(), at_ns=t0 + 10 * NS_PER_SECOND)) == []
    assert market.book() == ([(1, 470, 2)], [])
    assert market.engine.next_deadline_ns > TRADING_END_NS - 1  # only the series' termination is left
    market.engine.audit()


def test_the_switch_fires_with_no_orders_and_on_a_disabled_account() -> None:
    market = Market()
    market.buy(1, 2, 470)
    market.do(SetAccountEnabled(1, False))
    assert summary(market.do(CancelAllAfter(1, 10))) == [f"switch @1 armed {market.now + 10 * MS}"]
    assert summary(market.do(AdvanceTime(), at_ns=market.now + 10 * MS)) == ["switch @1 fired 0"]
    assert not market.engine.accounts[1].enabled


def test_deadlines_at_the_same_instant_run_expiry_then_termination_then_dead_mans_switch() -> None:
    market = Market()
    t = TRADING_END_NS - 1_000 * MS
    market.now = t
    market.buy(1, 1, 470, tif="gtd", expire_ns=TRADING_END_NS)
    market.buy(1, 2, 471)
    market.do(CancelAllAfter(2, 1_000))
    market.do(CancelAllAfter(1, 1_000))
    assert market.engine.next_deadline_ns == TRADING_END_NS
    assert summary(market.do(AdvanceTime(), at_ns=TRADING_END_NS)) == [
        "expired #1 1", "cancelled #2 2 trading_terminated", "TradingTerminated",
        "switch @1 fired 0", "switch @2 fired 0"]  # switches in account id order


_NOT_INTS = pytest.mark.skipif(hasattr(Engine, "__mypyc_attrs__"),
                               reason="the mypyc-compiled core refuses (or converts) them by the field's annotation")


@pytest.mark.parametrize("timeout", [-1, CANCEL_ALL_AFTER_MS_MAX + 1, *(
    pytest.param(bad, marks=_NOT_INTS) for bad in ("5", 1.5, True, None))])
def test_cancel_all_after_rejects_a_bad_timeout_and_changes_nothing(timeout: Any) -> None:
    market = Market()
    market.do(CancelAllAfter(1, 1_000))
    before = state_dump(market.engine, include_counters=False)
    assert summary(market.do(CancelAllAfter(1, timeout))) == ["rejected invalid_timeout"]
    assert summary(market.do(CancelAllAfter(99, 1_000))) == ["rejected unknown_account"]
    assert summary(market.do(CancelAllAfter(99, -1))) == ["rejected unknown_account"]  # account first
    assert state_dump(market.engine, include_counters=False) == before


def test_the_longest_timeout_is_accepted() -> None:
    market = Market()
    events = market.do(CancelAllAfter(1, CANCEL_ALL_AFTER_MS_MAX))
    assert summary(events) == [f"switch @1 armed {market.now + 24 * 3_600 * NS_PER_SECOND}"]


def test_heartbeats_do_not_grow_the_deadline_heap_without_bound() -> None:
    market = Market()
    market.buy(1, 1, 470)
    for i in range(1_000):
        market.do(CancelAllAfter(1 + i % 4, 60_000), at_ns=market.now + MS)
    assert len(market.engine._dead_mans) <= 2 * len(market.engine.accounts) + 65
    last = market.now
    assert [a.cancel_all_at_ns for a in market.engine.accounts.values()] == [
        last - (3 - i) * MS + 60_000 * MS for i in range(4)]
    market.engine.audit()
    assert summary(market.do(AdvanceTime(), at_ns=last + 60_000 * MS)) == [
        "cancelled #1 1 dead_mans_switch", "switch @1 fired 1", "switch @2 fired 0", "switch @3 fired 0",
        "switch @4 fired 0"]


def test_every_event_has_the_next_sequence_number_and_the_command_time() -> None:
    market = Market()
    market.sell(2, 2, 480)
    market.now += 7
    events = market.buy(1, 5, 481, tif="ioc")
    seqs = [e.seq for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(events)))
    assert {e.ts_ns for e in events} == {market.now}


def test_time_may_not_go_backwards() -> None:
    market = Market()
    with pytest.raises(ValueError, match="backwards"):
        market.engine.apply(AdvanceTime(), market.now - 1)


def test_retry_of_an_accepted_order_gets_the_original_even_after_a_halt() -> None:
    market = Market()
    first = market.buy(1, 2, 470, cid="once")
    market.do(HaltSeries(SYMBOL, True))
    retry = market.buy(1, 2, 470, cid="once")
    assert isinstance(retry[0], DuplicateOrder) and list(retry[0].original) == first
    assert summary(market.buy(1, 2, 470, cid="twice")) == ["rejected series_halted"]


def test_top_of_book_and_margin_arithmetic_on_the_spec() -> None:
    market = Market()
    assert market.engine.top_of_book(SYMBOL) == (None, None)
    market.buy(1, 2, 470)
    market.sell(2, 2, 490)
    assert market.engine.top_of_book(SYMBOL) == (470, 490)
    assert market.spec.price_band_ticks(480) == (432, 528)
    assert market.spec.initial_margin_per_lot_micros(480) == IM_PER_LOT_MICROS


def test_a_non_command_raises_before_anything_changes() -> None:
    market = Market()
    expire = market.now + NS_PER_SECOND
    market.buy(1, 1, 470, tif="gtd", expire_ns=expire)
    before = state_dump(market.engine)
    # (the mypyc-compiled core refuses it one step earlier, by its type annotation: also a TypeError)
    with pytest.raises(TypeError, match=r"not a command|tuple object expected"):
        market.engine.apply("cancel everything", expire)  # type: ignore[arg-type]
    assert state_dump(market.engine) == before  # the GTD order did not expire either


def test_the_engine_audits_itself_on_schedule_and_stops_on_a_broken_invariant() -> None:
    market = Market()
    market.engine.audit_every_commands = 2
    market.buy(1, 2, 470)
    market.engine.accounts[1].margin_micros += 1  # simulate a bug that corrupted state
    market.do(AdvanceTime())  # an odd command count: no audit yet
    with pytest.raises(InvariantViolation, match="account 1: margin"):
        market.do(AdvanceTime())
