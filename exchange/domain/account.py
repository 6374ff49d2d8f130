"""Trader accounts and their per-series exposure (position, open orders, margin)."""

from __future__ import annotations

from math import gcd

from exchange.domain.order import Order


class Exposure:
    """One account's stake in one series.

    `margin_micros` is this series' contribution to the account's required initial margin
    (rulebook §5): `im_per_lot × max(|position + open buys|, |position − open sells|)`.
    The average entry price is kept as an exact fraction of ticks (`entry_num / entry_den`).
    """

    __slots__ = ("entry_den", "entry_num", "margin_micros", "open_buy_lots", "open_sell_lots",
                 "position_lots")

    def __init__(self) -> None:
        self.position_lots = 0       # signed: long > 0
        self.open_buy_lots = 0
        self.open_sell_lots = 0
        self.margin_micros = 0
        self.entry_num = 0
        self.entry_den = 1

    def worst_lots(self) -> int:
        """The position if every open order on one side filled, the worse side."""
        pos = self.position_lots
        return max(abs(pos + self.open_buy_lots), abs(pos - self.open_sell_lots))

    def apply_fill(self, signed_lots: int, price_ticks: int) -> None:
        """Move `signed_lots` (buy > 0) into the position and update the average entry exactly."""
        pos = self.position_lots
        new = pos + signed_lots
        if pos == 0 or (pos > 0) == (signed_lots > 0):
            # Opening or adding: the entry becomes the size-weighted average.
            num = self.entry_num * abs(pos) + price_ticks * abs(signed_lots) * self.entry_den
            den = self.entry_den * abs(new)
            common = gcd(num, den)
            self.entry_num, self.entry_den = num // common, den // common
        elif new == 0:
            self.entry_num, self.entry_den = 0, 1
        elif (new > 0) != (pos > 0):
            # Flipped through zero: the new position was all opened at this price.
            self.entry_num, self.entry_den = price_ticks, 1
        # Reducing keeps the average entry unchanged.
        self.position_lots = new


class Account:
    __slots__ = ("account_id", "enabled", "exposures", "margin_micros", "orders")

    def __init__(self, account_id: int) -> None:
        self.account_id = account_id
        self.enabled = True
        self.margin_micros = 0                      # required initial margin, all series
        self.orders: dict[int, Order] = {}          # live orders by id, in arrival order
        self.exposures: dict[str, Exposure] = {}    # by series symbol, in first-trade order
