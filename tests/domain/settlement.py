"""A settlement scenario shared by the core, journal, snapshot and store tests: trading, daily
settlements (a duplicate and an amendment included), termination, delivery assignment (and its repeat)
and delivery settlements (a duplicate and amendments in both directions included).

Two series: `SYMBOL` (trading ends at `TRADING_END_NS`, 16:00 UTC on 2026-12-02) and `OTHER` (trades on
until its delivery starts), four accounts. After the trades the positions in `SYMBOL` are
1: -3, 2: +1, 3: -2, 4: +4, so assignment makes (seller, buyer, lots) 1->2 x1, 1->4 x2, 3->4 x2.
"""

from __future__ import annotations

import hashlib

from exchange.domain.commands import (
    AdvanceTime,
    AssignDeliveries,
    Command,
    CreateAccount,
    Deposit,
    ListSeries,
    PlaceOrder,
    SettleDaily,
    SettleDelivery,
)
from exchange.domain.engine import NS_PER_DAY, settlement_day_ns
from exchange.domain.order import Side
from exchange.domain.units import NS_PER_HOUR, NS_PER_SECOND
from exchange.testing.specs import DELIVERY_START_NS, T0_NS, TRADING_END_NS, make_spec

SPEC = make_spec()
SYMBOL = SPEC.symbol
OTHER_SPEC = make_spec("H200-M45-261203", trading_end_ns=DELIVERY_START_NS)
OTHER = OTHER_SPEC.symbol
LOT_TICK_MICROS = SPEC.lot_tick_value_micros  # 192 GPU-hours × 5,000 micro-USD: one lot, one tick
D2 = settlement_day_ns(TRADING_END_NS)        # the final settlement day, 2026-12-02
D1 = D2 - NS_PER_DAY
D0 = D1 - NS_PER_DAY                          # the day of T0
DELIVERY_END_NS = SPEC.delivery_end_ns
POSITIONS = {1: -3, 2: 1, 3: -2, 4: 4}


def digest(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def vm(positions: dict[int, int], settle: int, prior: int) -> tuple[tuple[int, int], ...]:
    """Variation margin of positions held through a settlement (no trades that day)."""
    return tuple((a, lots * (settle - prior) * LOT_TICK_MICROS) for a, lots in sorted(positions.items()))


def trading() -> list[tuple[Command, int]]:
    """List both series, fund four accounts, trade to `POSITIONS` (at 480 and 481), and rest an order
    of account 1 in `OTHER`."""
    t = T0_NS
    return [
        (ListSeries(SPEC), t), (ListSeries(OTHER_SPEC), t),
        *[(CreateAccount(a), t) for a in (1, 2, 3, 4)],
        *[(Deposit(a, 10**12), t) for a in (1, 2, 3, 4)],
        (PlaceOrder(1, SYMBOL, Side.SELL, 3, 480), t),
        (PlaceOrder(3, SYMBOL, Side.SELL, 2, 481), t),
        (PlaceOrder(2, SYMBOL, Side.BUY, 1, 480), t),
        (PlaceOrder(4, SYMBOL, Side.BUY, 4, 481), t),        # 2@480 from account 1, 2@481 from account 3
        (PlaceOrder(1, OTHER, Side.BUY, 2, 470), t),
    ]


def day0_vm(settle: int) -> tuple[tuple[int, int], ...]:
    """Day 0 variation margin: every trade was that day (at 480 and 481), no prior position."""
    trades = {1: [(480, -3)], 2: [(480, 1)], 3: [(481, -2)], 4: [(480, 2), (481, 2)]}
    return tuple((a, sum((settle - p) * q * LOT_TICK_MICROS for p, q in fills)) for a, fills in sorted(trades.items()))


def settlement_stream() -> list[tuple[Command, int]]:
    """The whole scenario, every command accepted or an idempotent repeat."""
    d = digest
    return [
        *trading(),
        (SettleDaily(SYMBOL, D0, 482, day0_vm(482), d("d0")), D0 + 16 * NS_PER_HOUR + NS_PER_SECOND),
        (SettleDaily(SYMBOL, D0, 482, day0_vm(482), d("d0")), D0 + 17 * NS_PER_HOUR),            # duplicate
        (SettleDaily(SYMBOL, D0, 483, day0_vm(483), d("d0'"), amend=True), D0 + 18 * NS_PER_HOUR),
        (SettleDaily(SYMBOL, D1, 486, vm(POSITIONS, 486, 483), d("d1")), D1 + 16 * NS_PER_HOUR + 1),
        (AdvanceTime(), TRADING_END_NS),                                                            # terminates
        (SettleDaily(SYMBOL, D2, 484, vm(POSITIONS, 484, 486), d("d2")), TRADING_END_NS + NS_PER_SECOND),
        (AssignDeliveries(SYMBOL), TRADING_END_NS + 2 * NS_PER_SECOND),
        (AssignDeliveries(SYMBOL), TRADING_END_NS + 3 * NS_PER_SECOND),                            # repeat
        (SettleDelivery(f"{SYMBOL}/1", d("x1"), 180_500_000, 436_810_000, 4_634_300, False), DELIVERY_END_NS),
        (SettleDelivery(f"{SYMBOL}/2", d("x2"), 380_000_000, 919_600_000, 0, False), DELIVERY_END_NS),
        (SettleDelivery(f"{SYMBOL}/3", d("x3"), 100_000_000, 242_000_000, 167_173_600, True), DELIVERY_END_NS),
        (SettleDelivery(f"{SYMBOL}/1", d("x1"), 180_500_000, 436_810_000, 4_634_300, False), DELIVERY_END_NS + 1),
        (SettleDelivery(f"{SYMBOL}/1", d("x1'"), 170_000_000, 411_400_000, 10_986_800, False, amend=True),
         DELIVERY_END_NS + 2),
        (SettleDelivery(f"{SYMBOL}/3", d("x3'"), 200_000_000, 484_000_000, 106_673_600, False, amend=True),
         DELIVERY_END_NS + 3),
    ]
