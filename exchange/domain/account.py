"""Trader accounts and their per-series exposure (position, open orders, margin)."""

from __future__ import annotations

from fractions import Fraction

from exchange.domain.order import Order
from exchange.domain.units import div_half_even


class Exposure:
    """One account's stake in one series.

    `margin_micros` is this series' contribution to the account's required initial margin
    (rulebook §5): `im_per_lot × max(|position + open buys|, |position − open sells|)`.

    `entry_cost_ticks` is the cost of the open position in tick-lots under the average-cost
    method: the average entry price is `entry_cost_ticks / |position_lots|` ticks. Adding to the
    position adds `price × lots`; reducing removes the average cost of the lots closed, rounded
    half-to-even to a whole tick-lot (so it stays an exact integer; the average entry is a report,
    cash moves only through fees and variation margin at the settlement price).
    """

    __slots__ = ("entry_cost_ticks", "margin_micros", "open_buy_lots", "open_sell_lots", "position_lots")

    def __init__(self) -> None:
        self.position_lots = 0       # signed: long > 0
        self.open_buy_lots = 0
        self.open_sell_lots = 0
        self.margin_micros = 0
        self.entry_cost_ticks = 0

    def worst_lots(self) -> int:
        """The position if every open order on one side filled, the worse side."""
        pos = self.position_lots
        return max(abs(pos + self.open_buy_lots), abs(pos - self.open_sell_lots))

    def average_entry_ticks(self) -> Fraction | None:
        """Exact average entry price in ticks, or None when flat."""
        pos = self.position_lots
        return Fraction(self.entry_cost_ticks, abs(pos)) if pos else None


def fill_position(position_lots: int, entry_cost_ticks: int, signed_lots: int, price_ticks: int) -> tuple[int, int]:
    """(position, entry cost) after a fill of `signed_lots` (buy > 0) at `price_ticks`, by the
    average-cost rule: adding to a position adds `price × lots`; reducing it removes the average cost
    of the lots closed, rounded half-to-even to a tick-lot; flipping through zero leaves the rest
    opened at this price. Pure, so the SQL projection applies the very same rule."""
    new = position_lots + signed_lots
    lots = signed_lots if signed_lots > 0 else -signed_lots
    if position_lots == 0 or (position_lots > 0) == (signed_lots > 0):
        return new, entry_cost_ticks + price_ticks * lots
    if new == 0:
        return new, 0
    if (new > 0) == (position_lots > 0):
        held = position_lots if position_lots > 0 else -position_lots
        return new, entry_cost_ticks - div_half_even(entry_cost_ticks * lots, held)
    return new, price_ticks * (new if new > 0 else -new)


def book_fill(account: Account, exposure: Exposure, signed_lots: int, price_ticks: int,
              im_per_lot_micros: int) -> None:
    """One side of a trade: `signed_lots` (buy > 0) of open orders become position at `price_ticks`.

    Updates the entry cost (average-cost method) and the margin, which a fill can only lower: the
    order's worst case was already counted when it was accepted. One function, not several small
    ones: it runs twice per trade on the hot path.
    """
    if signed_lots > 0:
        exposure.open_buy_lots -= signed_lots
    else:
        exposure.open_sell_lots += signed_lots
    new, exposure.entry_cost_ticks = fill_position(exposure.position_lots, exposure.entry_cost_ticks, signed_lots,
                                                   price_ticks)
    exposure.position_lots = new
    long_side = new + exposure.open_buy_lots
    short_side = new - exposure.open_sell_lots
    if long_side < 0:
        long_side = -long_side
    if short_side < 0:
        short_side = -short_side
    margin = im_per_lot_micros * (long_side if long_side > short_side else short_side)
    assert margin <= exposure.margin_micros, "a fill raised required margin"
    account.margin_micros += margin - exposure.margin_micros
    exposure.margin_micros = margin


class Account:
    __slots__ = ("account_id", "cancel_all_at_ns", "enabled", "exposures", "margin_micros", "orders")

    def __init__(self, account_id: int) -> None:
        self.account_id = account_id
        self.enabled = True
        self.margin_micros = 0                      # required initial margin, all series
        self.orders: dict[int, Order] = {}          # live orders by id, in arrival order
        self.exposures: dict[str, Exposure] = {}    # by series symbol, in first-trade order
        self.cancel_all_at_ns = 0                   # dead man's switch deadline; 0: disarmed
