"""Daily settlement arithmetic (rulebook §6): the settlement price, variation margin, margin calls.

Pure and exact: integers and `Fraction` only, no clock, no I/O. The daily job gathers the inputs
(trades, the book at the cut, the prior settlement) from the journal; these functions only compute.
Units follow `exchange.domain.units`: prices in integer ticks, sizes in integer lots, cash in integer
micro-dollars.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction


class SettlementMethod(StrEnum):
    """Which tier of rulebook §6 produced the settlement price."""

    VWAP = "vwap"               # 1. VWAP of the trades in the window before the cut
    LAST_TRADE = "last_trade"   # 2. last trade since the previous settlement, clamped into the book
    PRIOR = "prior"             # 3. the prior settlement (or the listing reference price)


@dataclass(frozen=True, slots=True)
class SettlementInputs:
    """What the settlement price of one series on one day depends on (rulebook §6).

    `window_trades`: (price_ticks, lots) of every trade with a timestamp in [cut − window, cut),
    the VWAP window ([15:58:00, 16:00:00) UTC with the shipped parameters).
    `last_trade_ticks`: price of the last trade since the previous settlement cut, up to the cut.
    `best_bid_ticks` / `best_ask_ticks`: the book at the cut, None for an empty side.
    `prior_settlement_ticks`: the previous settlement, or the listing reference price.
    """

    window_trades: Sequence[tuple[int, int]]
    last_trade_ticks: int | None
    best_bid_ticks: int | None
    best_ask_ticks: int | None
    prior_settlement_ticks: int


def round_to_tick_toward(price: Fraction, toward_ticks: int) -> int:
    """`price` (in ticks) rounded to the nearest whole tick; an exact tie (x.5 ticks) goes to the
    neighbour on the side of `toward_ticks` (rulebook §6: "a tie rounds toward the prior
    settlement")."""
    floor, remainder = divmod(price.numerator, price.denominator)
    twice = 2 * remainder
    if twice < price.denominator:
        return floor
    if twice > price.denominator:
        return floor + 1
    return floor + 1 if toward_ticks > floor else floor


def vwap_ticks(trades: Sequence[tuple[int, int]]) -> Fraction:
    """Exact volume-weighted average price, in ticks, of (price_ticks, lots) trades (at least one)."""
    if not trades:
        raise ValueError("VWAP of no trades")
    value = 0
    volume = 0
    for price_ticks, lots in trades:
        if price_ticks <= 0 or lots <= 0:
            raise ValueError(f"trade ({price_ticks} ticks, {lots} lots) must have a positive price and size")
        value += price_ticks * lots
        volume += lots
    return Fraction(value, volume)


def settlement_price(inputs: SettlementInputs) -> tuple[int, SettlementMethod]:
    """The daily settlement price S in ticks and the tier that set it (rulebook §6):

    1. VWAP of the window's trades, rounded to a tick, a tie toward the prior settlement;
    2. else the last trade since the previous settlement, clamped into [best bid, best ask]
       (each bound only where that side of the book exists);
    3. else the prior settlement.
    """
    prior = inputs.prior_settlement_ticks
    if prior <= 0:
        raise ValueError(f"prior settlement {prior} must be a positive price")
    bid, ask = inputs.best_bid_ticks, inputs.best_ask_ticks
    if bid is not None and ask is not None and bid >= ask:
        raise ValueError(f"crossed or locked book at the cut: bid {bid} >= ask {ask}")
    if inputs.window_trades:
        return round_to_tick_toward(vwap_ticks(inputs.window_trades), prior), SettlementMethod.VWAP
    last = inputs.last_trade_ticks
    if last is not None:
        if last <= 0:
            raise ValueError(f"last trade {last} must be a positive price")
        if bid is not None and last < bid:
            last = bid
        if ask is not None and last > ask:
            last = ask
        return last, SettlementMethod.LAST_TRADE
    return prior, SettlementMethod.PRIOR


def variation_margin_micros(
    settle_ticks: int,
    prior_settle_ticks: int,
    prior_position_lots: int,
    trades: Sequence[tuple[int, int]],
    lot_gpu_hours: int,
    tick_micros: int,
) -> int:
    """One account's variation margin in one series, in micro-dollars (rulebook §6); positive
    credits the account:

        VM = Σ_trades (S − p) × signed GPU-hours + prior position GPU-hours × (S − S_prior)

    `trades` are this account's (price_ticks, signed_lots: + bought, − sold) since the previous
    settlement cut; `prior_position_lots` is its signed position at that cut. Exact: every term is
    ticks × GPU-hours × micro-dollars per GPU-hour per tick, an integer, so nothing is rounded.
    """
    tick_lots = prior_position_lots * (settle_ticks - prior_settle_ticks)
    for price_ticks, signed_lots in trades:
        tick_lots += (settle_ticks - price_ticks) * signed_lots
    return tick_lots * lot_gpu_hours * tick_micros


def margin_call(cash_micros: int, required_margin_micros: int, ratio: Decimal) -> bool:
    """True when the account's cash is strictly below `ratio` (0.75) of its required initial
    margin (rulebook §6); compared exactly, so cash of exactly 75% is not a call."""
    if not ratio.is_finite() or ratio < 0:
        raise ValueError(f"margin call ratio {ratio} must be a finite non-negative decimal")
    return cash_micros < Fraction(ratio) * required_margin_micros
