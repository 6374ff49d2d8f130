"""The core's settlement commands (rulebook §6–§8): SettleDaily, AssignDeliveries, SettleDelivery.

Every accepted command posts exactly the ledger entries named here; every rejection and every
idempotent repeat changes nothing (the state dump without counters is unchanged); the whole-state
audit, which checks that the ledger (SETTLEMENT included) sums to zero and that the SETTLEMENT account
holds minus the variation margin posted, passes after every command (`audit_every_commands=1`).
"""

from __future__ import annotations

from typing import Any

import pytest

from exchange.domain.codes import SUBSYSTEM, RejectCode
from exchange.domain.commands import (
    AdvanceTime,
    AssignDeliveries,
    Command,
    ListSeries,
    PlaceOrder,
    SettleDaily,
    SettleDelivery,
    TerminateTrading,
)
from exchange.domain.engine import (
    CASH_MOVE_MICROS_MAX,
    NS_PER_DAY,
    Delivery,
    DeliverySettlement,
    Engine,
    Settlement,
)
from exchange.domain.errors import InvariantViolation
from exchange.domain.events import (
    CashMoved,
    DailySettlement,
    DeliveriesAlreadyAssigned,
    DeliveriesAssigned,
    DeliveryAssigned,
    DeliverySettled,
    DeliverySettlementDuplicate,
    Rejected,
    SettlementDuplicate,
    Trade,
)
from exchange.domain.ledger import SETTLEMENT, SYSTEM_ACCOUNTS
from exchange.domain.order import Side
from exchange.domain.statehash import state_dump, state_hash
from exchange.domain.units import NS_PER_HOUR
from exchange.testing.specs import T0_NS, TRADING_END_NS, make_spec
from tests.domain.settlement import (
    D0,
    D1,
    D2,
    DELIVERY_END_NS,
    LOT_TICK_MICROS,
    OTHER,
    POSITIONS,
    SPEC,
    SYMBOL,
    day0_vm,
    digest,
    settlement_stream,
    trading,
    vm,
)

# The mypyc-compiled core checks command fields against their annotations before the handler runs
# (an ill-typed field is a TypeError there, and a bool passes as an int): these cases test the pure
# Python core's own checks, which are what refuse ill-typed commands that reach it (replayed journals,
# callers other than the jobs). The jobs and the codec only ever build well-typed commands.
COMPILED = hasattr(Engine, "__mypyc_attrs__")
ILL_TYPED = pytest.mark.skipif(COMPILED, reason="the mypyc-compiled core refuses ill-typed fields by annotation")

AFTER_CUT = D0 + 16 * NS_PER_HOUR + 1      # day 0, just after the 16:00 cut
AFTER_END = TRADING_END_NS + 1             # trading in SYMBOL has terminated
IM_AT = {p: SPEC.initial_margin_per_lot_micros(p) for p in (480, 482, 483, 484, 486, 490)}
OTHER_IM_PER_LOT = make_spec("H200-M45-261203").initial_margin_per_lot_micros(480)


class Scenario:
    """An engine that audits itself after every command, and helpers that check what changed."""

    def __init__(self, commands: list[tuple[Command, int]] | None = None) -> None:
        self.engine = Engine(audit_every_commands=1)
        self.now = T0_NS
        for command, ts in trading() if commands is None else commands:
            self.do(command, ts)

    def do(self, command: Any, at_ns: int | None = None) -> list[Any]:
        if at_ns is not None:
            self.now = at_ns
        out = self.engine.apply(command, self.now)
        assert self.engine.ledger.total() == 0
        return out

    def accepted(self, command: Any, at_ns: int | None = None) -> list[Any]:
        out = self.do(command, at_ns)
        assert not any(type(e) is Rejected for e in out), out
        return out

    def unchanged(self, command: Any, at_ns: int | None = None) -> list[Any]:
        """Apply a command that must change nothing but the counters (and the time); its events."""
        if at_ns is not None:
            self.now = at_ns
            self.do(AdvanceTime())
        before = state_dump(self.engine, include_counters=False)
        out = self.engine.apply(command, self.now)
        assert state_dump(self.engine, include_counters=False) == before
        return out

    def rejected(self, command: Any, code: RejectCode, at_ns: int | None = None) -> Rejected:
        out = self.unchanged(command, at_ns)
        assert len(out) == 1 and type(out[0]) is Rejected, out
        assert out[0].code == code, out[0]
        assert out[0].command == type(command).__name__
        return out[0]

    def cash(self) -> dict[int, int]:
        return dict(self.engine.ledger.balances)

    def settle_final(self, price: int = 484) -> None:
        """Settle days 0, 1 and the final day 2, terminate trading."""
        self.accepted(SettleDaily(SYMBOL, D0, 482, day0_vm(482), digest("d0")), AFTER_CUT)
        self.accepted(SettleDaily(SYMBOL, D1, 486, vm(POSITIONS, 486, 482), digest("d1")), AFTER_CUT + NS_PER_DAY)
        self.accepted(AdvanceTime(), TRADING_END_NS)
        self.accepted(SettleDaily(SYMBOL, D2, price, vm(POSITIONS, price, 486), digest("d2")), AFTER_END)

    def assigned(self) -> None:
        """Settle, assign, and move on to the end of the delivery period (the other series terminates)."""
        self.settle_final()
        self.accepted(AssignDeliveries(SYMBOL))
        self.accepted(AdvanceTime(), DELIVERY_END_NS)


def _postings(events: list[Any]) -> list[tuple[str, int, int, int]]:
    return [(e.kind, e.from_account, e.to_account, e.amount_micros) for e in events if type(e) is CashMoved]


def test_the_settlement_account_and_codes() -> None:
    assert SETTLEMENT == -3 and SYSTEM_ACCOUNTS == (-1, -2, -3)
    assert Engine().ledger.balances == {-1: 0, -2: 0, -3: 0}
    codes = {RejectCode.INVALID_SETTLEMENT: "invalid_settlement", RejectCode.SETTLEMENT_CONFLICT: "settlement_conflict",
             RejectCode.NOT_SETTLED: "not_settled", RejectCode.TRADING_NOT_TERMINATED: "trading_not_terminated",
             RejectCode.UNKNOWN_DELIVERY: "unknown_delivery"}
    for code, value in codes.items():
        assert code.value == value and SUBSYSTEM[code] == "settlement"


# -- SettleDaily ---------------------------------------------------------------------------------

def test_daily_settlement_posts_variation_margin_through_the_settlement_account() -> None:
    s = Scenario()
    before = s.cash()
    postings = day0_vm(482)
    assert postings == ((1, -6 * LOT_TICK_MICROS), (2, 2 * LOT_TICK_MICROS), (3, -2 * LOT_TICK_MICROS),
                        (4, 6 * LOT_TICK_MICROS))
    out = s.accepted(SettleDaily(SYMBOL, D0, 482, postings, digest("d0")), AFTER_CUT)
    assert out[0] == DailySettlement(out[0].seq, AFTER_CUT, SYMBOL, D0, 482, digest("d0"), 4, 0, False)
    assert [e.seq for e in out] == list(range(out[0].seq, out[0].seq + 5))
    after = s.cash()
    assert {a: after[a] - before[a] for a in after} == {-1: 0, -2: 0, -3: 0, **dict(postings)}
    assert [e.balance_micros for e in out[1:]] == [after[a] for a, _ in postings]
    series = s.engine.series[SYMBOL]
    assert series.settlements == {D0: Settlement(482, digest("d0"), postings)}
    # The reference price follows: band and margin per lot, and every account's margin in the series.
    assert series.reference_price_ticks == 482 and series.band_low_ticks == 434 and series.band_high_ticks == 530
    assert series.im_per_lot_micros == IM_AT[482]
    for account_id, lots in POSITIONS.items():
        exposure = s.engine.accounts[account_id].exposures[SYMBOL]
        assert exposure.margin_micros == abs(lots) * IM_AT[482]
    assert s.engine.accounts[1].margin_micros == 3 * IM_AT[482] + 2 * OTHER_IM_PER_LOT


def test_daily_settlement_exact_postings() -> None:
    s = Scenario()
    out = s.accepted(SettleDaily(SYMBOL, D0, 482, day0_vm(482), digest("d0")), AFTER_CUT)
    # account 1 sold 3 at 480: -3 × 2 ticks; 2 bought 1 at 480: +2; 3 sold 2 at 481: -2;
    # 4 bought 2 at 480 and 2 at 481: +4 + 2 = +6 (ticks × lots, each worth LOT_TICK_MICROS = 960,000)
    assert LOT_TICK_MICROS == 960_000
    assert _postings(out) == [
        ("variation_margin", 1, SETTLEMENT, 5_760_000),
        ("variation_margin", SETTLEMENT, 2, 1_920_000),
        ("variation_margin", 3, SETTLEMENT, 1_920_000),
        ("variation_margin", SETTLEMENT, 4, 5_760_000),
    ]
    assert s.engine.ledger.balances[SETTLEMENT] == 0


def test_zero_and_unbalanced_variation_margin() -> None:
    """Zero VM is recorded but posts nothing; VM that does not net to zero leaves it on SETTLEMENT."""
    s = Scenario()
    out = s.accepted(SettleDaily(SYMBOL, D0, 480, ((1, 0), (2, 0), (3, 7)), digest("z")), AFTER_CUT)
    assert out[0].accounts == 1 and out[0].total_vm_micros == 7
    assert _postings(out) == [("variation_margin", SETTLEMENT, 3, 7)]
    assert s.engine.ledger.balances[SETTLEMENT] == -7
    assert s.engine.series[SYMBOL].settlements[D0].postings == ((1, 0), (2, 0), (3, 7))


def test_a_repeat_with_the_same_digest_posts_nothing() -> None:
    s = Scenario()
    command = SettleDaily(SYMBOL, D0, 482, day0_vm(482), digest("d0"))
    s.accepted(command, AFTER_CUT)
    as_lists: Any = [list(p) for p in command.postings]  # as a JSON caller might send them
    repeats = [command, command._replace(amend=True)] + ([] if COMPILED else [command._replace(postings=as_lists)])
    for repeat in repeats:
        out = s.unchanged(repeat, AFTER_CUT + NS_PER_HOUR)
        assert out == [SettlementDuplicate(out[0].seq, AFTER_CUT + NS_PER_HOUR, SYMBOL, D0, digest("d0"))]


@pytest.mark.parametrize("change", [{"price_ticks": 483}, {"postings": day0_vm(483)}, {"postings": ()}])
def test_the_same_digest_with_other_content_is_a_conflict(change: dict[str, Any]) -> None:
    s = Scenario()
    command = SettleDaily(SYMBOL, D0, 482, day0_vm(482), digest("d0"))
    s.accepted(command, AFTER_CUT)
    for amend in (False, True):
        rejected = s.rejected(command._replace(amend=amend, **change), RejectCode.SETTLEMENT_CONFLICT)
        assert "other content" in rejected.message


def test_another_digest_without_amend_is_a_conflict() -> None:
    s = Scenario()
    s.accepted(SettleDaily(SYMBOL, D0, 482, day0_vm(482), digest("d0")), AFTER_CUT)
    rejected = s.rejected(SettleDaily(SYMBOL, D0, 483, day0_vm(483), digest("other")), RejectCode.SETTLEMENT_CONFLICT)
    assert "amendment" in rejected.message


def test_an_amendment_posts_exactly_the_differences() -> None:
    s = Scenario()
    s.accepted(SettleDaily(SYMBOL, D0, 482, day0_vm(482), digest("d0")), AFTER_CUT)
    before = s.cash()
    out = s.accepted(SettleDaily(SYMBOL, D0, 483, day0_vm(483), digest("d0'"), amend=True))
    # one more tick for every lot bought or sold: 1: -3, 2: +1, 3: -2, 4: +4 lots
    assert out[0] == DailySettlement(out[0].seq, s.now, SYMBOL, D0, 483, digest("d0'"), 4, 0, True)
    assert _postings(out) == [
        ("variation_margin", 1, SETTLEMENT, 3 * LOT_TICK_MICROS),
        ("variation_margin", SETTLEMENT, 2, 1 * LOT_TICK_MICROS),
        ("variation_margin", 3, SETTLEMENT, 2 * LOT_TICK_MICROS),
        ("variation_margin", SETTLEMENT, 4, 4 * LOT_TICK_MICROS),
    ]
    after = s.cash()
    assert {a: after[a] - before[a] for a in after if after[a] != before[a]} == {
        1: -3 * LOT_TICK_MICROS, 2: LOT_TICK_MICROS, 3: -2 * LOT_TICK_MICROS, 4: 4 * LOT_TICK_MICROS}
    series = s.engine.series[SYMBOL]
    assert series.settlements[D0] == Settlement(483, digest("d0'"), day0_vm(483))
    assert series.reference_price_ticks == 483 and series.im_per_lot_micros == IM_AT[483]
    # The amendment's own repeat is a duplicate; the original digest is now a conflict.
    s.unchanged(SettleDaily(SYMBOL, D0, 483, day0_vm(483), digest("d0'"), amend=True))
    s.rejected(SettleDaily(SYMBOL, D0, 482, day0_vm(482), digest("d0")), RejectCode.SETTLEMENT_CONFLICT)


def test_an_amendment_that_drops_and_adds_accounts() -> None:
    s = Scenario()
    s.accepted(SettleDaily(SYMBOL, D0, 480, ((1, -500), (2, 500)), digest("a")), AFTER_CUT)
    out = s.accepted(SettleDaily(SYMBOL, D0, 480, ((2, 200), (3, -200)), digest("b"), amend=True))
    assert _postings(out) == [("variation_margin", SETTLEMENT, 1, 500), ("variation_margin", 2, SETTLEMENT, 300),
                              ("variation_margin", 3, SETTLEMENT, 200)]
    assert out[0].accounts == 3 and out[0].total_vm_micros == 0
    out = s.accepted(SettleDaily(SYMBOL, D0, 480, ((2, 200), (3, -200)), digest("c"), amend=True))
    assert out == [DailySettlement(out[0].seq, s.now, SYMBOL, D0, 480, digest("c"), 0, 0, True)]
    assert s.engine.series[SYMBOL].settlements[D0].digest == digest("c")


def test_an_amendment_of_a_day_never_settled_is_a_first_settlement() -> None:
    s = Scenario()
    out = s.accepted(SettleDaily(SYMBOL, D0, 482, day0_vm(482), digest("d0"), amend=True), AFTER_CUT)
    assert out[0].amended is False and len(_postings(out)) == 4


def test_the_reference_price_follows_the_latest_settled_day() -> None:
    s = Scenario()
    s.accepted(SettleDaily(SYMBOL, D1, 486, (), digest("d1")), D1 + 17 * NS_PER_HOUR)
    series = s.engine.series[SYMBOL]
    assert series.reference_price_ticks == 486
    s.accepted(SettleDaily(SYMBOL, D0, 482, (), digest("d0")))  # a late earlier day: no effect on the price
    assert series.reference_price_ticks == 486 and series.im_per_lot_micros == IM_AT[486]
    s.accepted(SettleDaily(SYMBOL, D0, 490, (), digest("d0'"), amend=True))
    assert series.reference_price_ticks == 486
    s.accepted(SettleDaily(SYMBOL, D1, 484, (), digest("d1'"), amend=True))
    assert series.reference_price_ticks == 484 and series.im_per_lot_micros == IM_AT[484]
    assert s.engine.accounts[4].exposures[SYMBOL].margin_micros == 4 * IM_AT[484]


def test_a_higher_settlement_price_can_raise_margin_above_cash_without_rejecting() -> None:
    """Settlement never fails on margin: a margin call is the job's report, not the core's refusal."""
    s = Scenario()
    s.accepted(SettleDaily(SYMBOL, D0, 520, ((1, -(10**12)), (2, 10**12)), digest("big")), AFTER_CUT)
    assert s.engine.cash_micros(1) < s.engine.accounts[1].margin_micros


def _bad_daily() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("date not at midnight", {"date_ns": D0 + 1}),
        ("date negative", {"date_ns": -NS_PER_DAY}),
        ("date not an int", {"date_ns": str(D0)}),
        ("date in the future", {"date_ns": D0 + NS_PER_DAY}),
        ("price zero", {"price_ticks": 0}),
        ("price negative", {"price_ticks": -482}),
        ("price a string", {"price_ticks": "482"}),
        ("price a bool", {"price_ticks": True}),
        ("digest short", {"digest": "abc"}),
        ("digest upper case", {"digest": digest("d0").upper()}),
        ("digest too long", {"digest": digest("d0") + "0"}),
        ("digest not a string", {"digest": 7}),
        ("amend not a bool", {"amend": 1}),
        ("postings not a sequence", {"postings": None}),
        ("postings a dict", {"postings": {1: 5}}),
        ("a posting of three", {"postings": ((1, 5, 0),)}),
        ("a posting not a pair", {"postings": (1, 5)}),
        ("vm a string", {"postings": ((1, "5"),)}),
        ("vm a float", {"postings": ((1, 5.0),)}),
        ("account a bool", {"postings": ((True, 5),)}),
        ("account zero", {"postings": ((0, 5),)}),
        ("system account", {"postings": ((SETTLEMENT, 5),)}),
        ("accounts descending", {"postings": ((2, 5), (1, -5))}),
        ("account twice", {"postings": ((1, 5), (1, -5))}),
        ("vm too large", {"postings": ((1, CASH_MOVE_MICROS_MAX + 1), (2, -CASH_MOVE_MICROS_MAX - 1))}),
    ]


@ILL_TYPED
@pytest.mark.parametrize(("title", "change"), _bad_daily(), ids=[t for t, _ in _bad_daily()])
def test_malformed_daily_settlements_are_refused_and_change_nothing(title: str, change: dict[str, Any]) -> None:
    s = Scenario()
    command = SettleDaily(SYMBOL, D0, 482, day0_vm(482), digest("d0"))._replace(**change)
    s.rejected(command, RejectCode.INVALID_SETTLEMENT, AFTER_CUT)


@ILL_TYPED
def test_other_daily_settlement_rejections() -> None:
    s = Scenario()
    good = SettleDaily(SYMBOL, D0, 482, day0_vm(482), digest("d0"))
    s.rejected(good._replace(symbol="H100-M40-Z26"), RejectCode.UNKNOWN_SERIES, AFTER_CUT)
    s.rejected(good._replace(symbol=None), RejectCode.UNKNOWN_SERIES)  # type: ignore[arg-type]
    rejected = s.rejected(good._replace(postings=((1, -5), (99, 5))), RejectCode.UNKNOWN_ACCOUNT)
    assert rejected.account_id == 99
    # After the final settlement day (the day trading terminates) there is nothing left to settle.
    rejected = s.rejected(good._replace(date_ns=D2 + NS_PER_DAY), RejectCode.INVALID_SETTLEMENT,
                          D2 + NS_PER_DAY + NS_PER_HOUR)
    assert "final settlement" in rejected.message


def test_a_terminated_series_takes_its_final_settlement() -> None:
    s = Scenario()
    s.accepted(AdvanceTime(), TRADING_END_NS)
    assert s.engine.series[SYMBOL].terminated
    out = s.accepted(SettleDaily(SYMBOL, D2, 484, (), digest("d2")), AFTER_END)
    assert type(out[0]) is DailySettlement


def test_the_final_settlement_cannot_be_amended_once_deliveries_are_assigned() -> None:
    s = Scenario()
    s.assigned()
    rejected = s.rejected(SettleDaily(SYMBOL, D2, 485, (), digest("d2'"), amend=True), RejectCode.SETTLEMENT_CONFLICT)
    assert "deliveries" in rejected.message
    # an earlier day still can be
    s.accepted(SettleDaily(SYMBOL, D1, 487, vm(POSITIONS, 487, 482), digest("d1'"), amend=True))
    assert s.engine.series[SYMBOL].reference_price_ticks == 484


# -- AssignDeliveries --------------------------------------------------------------------------------

def test_assignment_is_greedy_in_account_order_and_releases_margin() -> None:
    s = Scenario()
    s.settle_final(484)
    cash = s.cash()
    assert s.engine.accounts[4].margin_micros == 4 * IM_AT[484]
    out = s.accepted(AssignDeliveries(SYMBOL), AFTER_END)
    seq = out[0].seq
    assert out == [
        DeliveriesAssigned(seq, AFTER_END, SYMBOL, 484, 3),
        DeliveryAssigned(seq + 1, AFTER_END, f"{SYMBOL}/1", SYMBOL, 1, 2, 1, 8, 192, 484),
        DeliveryAssigned(seq + 2, AFTER_END, f"{SYMBOL}/2", SYMBOL, 1, 4, 2, 16, 384, 484),
        DeliveryAssigned(seq + 3, AFTER_END, f"{SYMBOL}/3", SYMBOL, 3, 4, 2, 16, 384, 484),
    ]
    engine = s.engine
    assert engine.deliveries == {
        f"{SYMBOL}/1": Delivery(f"{SYMBOL}/1", SYMBOL, 1, 2, 1, 8, 192, 484),
        f"{SYMBOL}/2": Delivery(f"{SYMBOL}/2", SYMBOL, 1, 4, 2, 16, 384, 484),
        f"{SYMBOL}/3": Delivery(f"{SYMBOL}/3", SYMBOL, 3, 4, 2, 16, 384, 484),
    }
    assert engine.series[SYMBOL].delivery_ids == (f"{SYMBOL}/1", f"{SYMBOL}/2", f"{SYMBOL}/3")
    for account_id in POSITIONS:
        exposure = engine.accounts[account_id].exposures[SYMBOL]
        assert (exposure.position_lots, exposure.entry_cost_ticks, exposure.margin_micros) == (0, 0, 0)
    # Margin elsewhere stays: account 1's resting buy in the other series.
    assert engine.accounts[1].margin_micros == 2 * OTHER_IM_PER_LOT
    assert [engine.accounts[a].margin_micros for a in (2, 3, 4)] == [0, 0, 0]
    assert s.cash() == cash  # assignment moves no cash


def test_a_second_assignment_changes_nothing() -> None:
    s = Scenario()
    s.assigned()
    out = s.unchanged(AssignDeliveries(SYMBOL))
    assert out == [DeliveriesAlreadyAssigned(out[0].seq, s.now, SYMBOL, 3)]


def test_assignment_rejections() -> None:
    s = Scenario()
    s.rejected(AssignDeliveries("H100-M40-Z26"), RejectCode.UNKNOWN_SERIES)
    s.rejected(AssignDeliveries(SYMBOL), RejectCode.TRADING_NOT_TERMINATED)
    s.accepted(SettleDaily(SYMBOL, D0, 482, day0_vm(482), digest("d0")), AFTER_CUT)
    s.accepted(SettleDaily(SYMBOL, D1, 486, vm(POSITIONS, 486, 482), digest("d1")), AFTER_CUT + NS_PER_DAY)
    s.rejected(AssignDeliveries(SYMBOL), RejectCode.TRADING_NOT_TERMINATED)
    s.accepted(AdvanceTime(), TRADING_END_NS)
    rejected = s.rejected(AssignDeliveries(SYMBOL), RejectCode.NOT_SETTLED)
    assert "2026-12-02" in rejected.message
    s.accepted(SettleDaily(SYMBOL, D2, 484, vm(POSITIONS, 484, 486), digest("d2")), AFTER_END)
    s.accepted(AssignDeliveries(SYMBOL))


def test_an_early_termination_still_needs_the_settlement_of_the_termination_day() -> None:
    s = Scenario()
    s.accepted(TerminateTrading(SYMBOL), AFTER_CUT)
    s.accepted(SettleDaily(SYMBOL, D0, 482, day0_vm(482), digest("d0")))
    s.rejected(AssignDeliveries(SYMBOL), RejectCode.NOT_SETTLED)


def test_assignment_without_positions_makes_no_deliveries_and_is_still_done_once() -> None:
    spec = make_spec("B200-M35-261203")
    s = Scenario([(ListSeries(spec), T0_NS)])
    s.accepted(AdvanceTime(), TRADING_END_NS)
    s.accepted(SettleDaily(spec.symbol, D2, 1000, (), digest("b")), AFTER_END)
    out = s.accepted(AssignDeliveries(spec.symbol))
    assert out == [DeliveriesAssigned(out[0].seq, AFTER_END, spec.symbol, 1000, 0)]
    assert s.engine.series[spec.symbol].delivery_ids == ()
    assert s.unchanged(AssignDeliveries(spec.symbol))[0].deliveries == 0


def test_assignment_after_partial_closes_uses_net_positions() -> None:
    """Positions that traded back and forth: only the net is delivered, and entry costs clear to zero."""
    s = Scenario()
    s.accepted(PlaceOrder(4, SYMBOL, Side.SELL, 3, 479))
    s.accepted(PlaceOrder(1, SYMBOL, Side.BUY, 3, 479))  # 1: -3 -> 0, 4: +4 -> +1
    s.settle_final()
    out = s.accepted(AssignDeliveries(SYMBOL))
    assert [(e.seller, e.buyer, e.lots) for e in out[1:]] == [(3, 2, 1), (3, 4, 1)]


# -- SettleDelivery ---------------------------------------------------------------------------------

D1_ID = f"{SYMBOL}/1"   # seller 1, buyer 2, 1 lot: G = 8, Q = 192 GPU-hours, FSP 484 ticks = $2.42


def test_delivery_settlement_posts_invoice_and_damages() -> None:
    s = Scenario()
    s.assigned()
    before = s.cash()
    # E = 180.5 GPU-hours: invoice 2.42 × 180.5 = $436.81; shortfall 0.98 × 192 − 180.5 = 7.66 GPU-hours,
    # damages 7.66 × 0.25 × 2.42 = $4.6343
    command = SettleDelivery(D1_ID, digest("x1"), 180_500_000, 436_810_000, 4_634_300, False)
    out = s.accepted(command, DELIVERY_END_NS)
    assert out[0] == DeliverySettled(out[0].seq, DELIVERY_END_NS, D1_ID, digest("x1"), 180_500_000, 436_810_000,
                                     4_634_300, False, False)
    assert _postings(out) == [("delivery_invoice", 2, 1, 436_810_000), ("delivery_damages", 1, 2, 4_634_300)]
    after = s.cash()
    assert after[1] - before[1] == 436_810_000 - 4_634_300 and after[2] - before[2] == -436_810_000 + 4_634_300
    assert [e.balance_micros for e in out[1:]] == [after[1] + 4_634_300, after[2]]  # each right after its posting
    assert s.engine.deliveries[D1_ID].settlement == DeliverySettlement(digest("x1"), 180_500_000, 436_810_000,
                                                                       4_634_300, False)
    # A rerun posts nothing.
    out = s.unchanged(command)
    assert out == [DeliverySettlementDuplicate(out[0].seq, s.now, D1_ID, digest("x1"))]
    assert s.unchanged(command._replace(amend=True))[0] == DeliverySettlementDuplicate(
        out[0].seq + 1, s.now, D1_ID, digest("x1"))


def test_delivery_conflicts() -> None:
    s = Scenario()
    s.assigned()
    command = SettleDelivery(D1_ID, digest("x1"), 180_500_000, 436_810_000, 4_634_300, False)
    s.accepted(command, DELIVERY_END_NS)
    for change in ({"invoice_micros": 1}, {"default": True}, {"effective_micro_gpuh": 1}, {"damages_micros": 0}):
        assert "other amounts" in s.rejected(command._replace(**change), RejectCode.SETTLEMENT_CONFLICT).message
    rejected = s.rejected(command._replace(digest=digest("x1'"), invoice_micros=1), RejectCode.SETTLEMENT_CONFLICT)
    assert "amendment" in rejected.message


def test_delivery_amendments_post_the_differences_in_either_direction() -> None:
    s = Scenario()
    s.assigned()
    start = s.cash()
    s.accepted(SettleDelivery(D1_ID, digest("x1"), 180_500_000, 436_810_000, 4_634_300, False), DELIVERY_END_NS)
    # Less delivered: the invoice falls (seller pays back), the damages rise (seller pays more).
    out = s.accepted(SettleDelivery(D1_ID, digest("x1'"), 170_000_000, 411_400_000, 10_986_800, False, amend=True))
    assert out[0].amended is True
    assert _postings(out) == [("delivery_invoice", 1, 2, 25_410_000), ("delivery_damages", 1, 2, 6_352_500)]
    # More delivered: the invoice rises, the damages fall to zero (buyer pays back).
    out = s.accepted(SettleDelivery(D1_ID, digest("x1''"), 190_000_000, 459_800_000, 0, False, amend=True))
    assert _postings(out) == [("delivery_invoice", 2, 1, 48_400_000), ("delivery_damages", 2, 1, 10_986_800)]
    # Only the default flag changes: no posting.
    out = s.accepted(SettleDelivery(D1_ID, digest("x1'''"), 190_000_000, 459_800_000, 0, True, amend=True))
    assert _postings(out) == [] and len(out) == 1
    end = s.cash()
    assert end[1] - start[1] == 459_800_000 and end[2] - start[2] == -459_800_000
    assert s.engine.deliveries[D1_ID].settlement == DeliverySettlement(digest("x1'''"), 190_000_000, 459_800_000, 0,
                                                                       True)


def test_a_zero_delivery_posts_nothing_but_damages() -> None:
    s = Scenario()
    s.assigned()
    out = s.accepted(SettleDelivery(D1_ID, digest("none"), 0, 0, 116_160_000, True), DELIVERY_END_NS)
    assert _postings(out) == [("delivery_damages", 1, 2, 116_160_000)]
    assert s.engine.deliveries[D1_ID].settlement is not None


def _bad_delivery() -> list[tuple[str, dict[str, Any]]]:
    q_micro = 192 * 1_000_000
    invoice_max = 484 * 5_000 * 192
    return [
        ("digest short", {"digest": "x"}),
        ("digest not a string", {"digest": None}),
        ("E negative", {"effective_micro_gpuh": -1}),
        ("E above Q", {"effective_micro_gpuh": q_micro + 1}),
        ("E a string", {"effective_micro_gpuh": "1"}),
        ("invoice negative", {"invoice_micros": -1}),
        ("invoice above FSP x Q", {"invoice_micros": invoice_max + 1}),
        ("invoice a bool", {"invoice_micros": False}),
        ("damages negative", {"damages_micros": -1}),
        ("damages too large", {"damages_micros": CASH_MOVE_MICROS_MAX + 1}),
        ("default not a bool", {"default": 0}),
        ("amend not a bool", {"amend": "no"}),
    ]


@ILL_TYPED
@pytest.mark.parametrize(("title", "change"), _bad_delivery(), ids=[t for t, _ in _bad_delivery()])
def test_malformed_delivery_settlements_are_refused_and_change_nothing(title: str, change: dict[str, Any]) -> None:
    s = Scenario()
    s.assigned()
    command = SettleDelivery(D1_ID, digest("x1"), 192_000_000, 484 * 5_000 * 192, 0, False)._replace(**change)
    s.rejected(command, RejectCode.INVALID_SETTLEMENT, DELIVERY_END_NS)


def test_the_largest_amounts_are_accepted() -> None:
    s = Scenario()
    s.assigned()
    s.accepted(SettleDelivery(D1_ID, digest("max"), 192_000_000, 484 * 5_000 * 192, CASH_MOVE_MICROS_MAX, False),
               DELIVERY_END_NS)


@ILL_TYPED
def test_unknown_deliveries() -> None:
    s = Scenario()
    command = SettleDelivery(D1_ID, digest("x1"), 0, 0, 0, False)
    s.rejected(command, RejectCode.UNKNOWN_DELIVERY)  # not assigned yet
    s.assigned()
    s.rejected(command._replace(delivery_id=f"{SYMBOL}/4"), RejectCode.UNKNOWN_DELIVERY)
    s.rejected(command._replace(delivery_id=1), RejectCode.UNKNOWN_DELIVERY)  # type: ignore[arg-type]
    s.rejected(command._replace(delivery_id=f"{OTHER}/1"), RejectCode.UNKNOWN_DELIVERY)


# -- whole scenario -----------------------------------------------------------------------------------

def test_the_whole_scenario_audits_after_every_command_and_replays_identically() -> None:
    first, second = Engine(audit_every_commands=1), Engine(audit_every_commands=1)
    stream = settlement_stream()
    events = [first.apply(c, t) for c, t in stream]
    assert [second.apply(c, t) for c, t in stream] == events
    assert state_hash(first) == state_hash(second)
    assert not any(type(e) is Rejected for out in events for e in out)
    kinds = [type(e).__name__ for out in events for e in out]
    for name, count in (("DailySettlement", 4), ("SettlementDuplicate", 1), ("DeliveriesAssigned", 1),
                        ("DeliveryAssigned", 3), ("DeliveriesAlreadyAssigned", 1), ("DeliverySettled", 5),
                        ("DeliverySettlementDuplicate", 1)):
        assert kinds.count(name) == count, name
    # Cash: deposits minus fees, plus VM at the final price against the trade prices, plus invoices (buyers
    # pay, sellers receive) minus damages, exactly.
    balances = first.ledger.balances
    assert balances[SETTLEMENT] == 0 and first.ledger.total() == 0
    trades = [e for out in events for e in out if type(e) is Trade]
    fees = {a: -sum(t.taker_fee_micros for t in trades if t.taker_account_id == a) for a in POSITIONS}
    trade_vm = dict(day0_vm(484))
    delivery_cash = {a: 0 for a in POSITIONS}
    for d in first.deliveries.values():
        assert d.settlement is not None
        delivery_cash[d.seller] += d.settlement.invoice_micros - d.settlement.damages_micros
        delivery_cash[d.buyer] -= d.settlement.invoice_micros - d.settlement.damages_micros
    for a in POSITIONS:
        assert balances[a] == 10**12 + fees[a] + trade_vm[a] + delivery_cash[a], a


def test_the_audit_checks_the_settlement_account() -> None:
    s = Scenario()
    s.accepted(SettleDaily(SYMBOL, D0, 482, day0_vm(482), digest("d0")), AFTER_CUT)
    s.engine.ledger.balances[SETTLEMENT] += 1
    s.engine.ledger.balances[1] -= 1  # still sums to zero, but not what the settlements posted
    with pytest.raises(InvariantViolation, match="settlement account holds"):
        s.engine.audit()


def test_the_audit_checks_positions_after_assignment_and_the_reference_price() -> None:
    s = Scenario()
    s.assigned()
    im = s.engine.series[SYMBOL].im_per_lot_micros
    for account_id, lots in ((1, 1), (2, -1)):
        account = s.engine.accounts[account_id]
        account.exposures[SYMBOL].position_lots = lots
        account.exposures[SYMBOL].entry_cost_ticks = 484
        account.exposures[SYMBOL].margin_micros = im
        account.margin_micros += im
    with pytest.raises(InvariantViolation, match="left after assignment"):
        s.engine.audit()
    t = Scenario()
    t.accepted(SettleDaily(SYMBOL, D0, 482, (), digest("d0")), AFTER_CUT)
    t.engine.series[SYMBOL].reference_price_ticks = 480
    with pytest.raises(InvariantViolation, match="reference price"):
        t.engine.audit()
