"""A small harness for scenario tests: one series, a few funded accounts, terse order helpers."""

from __future__ import annotations

from typing import Any

from exchange.domain.book import BUY, SELL
from exchange.domain.commands import CreateAccount, Deposit, ListSeries, PlaceOrder
from exchange.domain.engine import Engine, EngineLimits
from exchange.domain.order import OrderType, Side, StpMode, TimeInForce
from exchange.domain.spec import SeriesSpec
from exchange.testing.specs import T0_NS, make_spec

SYMBOL = "H100-M40-261203"
IM_PER_LOT_MICROS = 480 * 5_000 * 192 * 12 // 100  # 12% of a lot at the $2.40 reference: $55.296


class Market:
    def __init__(self, spec: SeriesSpec | None = None, cash_micros: int = 10**12, accounts: int = 4,
                 limits: EngineLimits | None = None) -> None:
        self.engine = Engine(limits)
        self.now = T0_NS
        self.spec = spec or make_spec(SYMBOL)
        self.do(ListSeries(self.spec))
        for account_id in range(1, accounts + 1):
            self.do(CreateAccount(account_id))
            if cash_micros:
                self.do(Deposit(account_id, cash_micros))

    def do(self, command: Any, at_ns: int | None = None) -> list[Any]:
        if at_ns is not None:
            self.now = at_ns
        return self.engine.apply(command, self.now)

    def buy(self, account: int, qty: int, price: int | None, **kwargs: Any) -> list[Any]:
        return self.do(_order(account, Side.BUY, qty, price, self.spec.symbol, **kwargs))

    def sell(self, account: int, qty: int, price: int | None, **kwargs: Any) -> list[Any]:
        return self.do(_order(account, Side.SELL, qty, price, self.spec.symbol, **kwargs))

    def book(self) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """(bids, asks) as (order_id, price, remaining) in priority order."""
        book = self.engine.series[self.spec.symbol].book
        return tuple(  # type: ignore[return-value]
            [(o.order_id, o.price_ticks, o.remaining_lots) for o in book.orders(side)] for side in (BUY, SELL))


def _order(account: int, side: Side, qty: int, price: int | None, symbol: str, *, tif: str = "gtc",
           stp: str = "cancel_newest", post_only: bool = False, cid: str | None = None,
           expire_ns: int | None = None) -> PlaceOrder:
    return PlaceOrder(account, symbol, side, qty, price, OrderType.MARKET if price is None else OrderType.LIMIT,
                      TimeInForce[tif.upper()], post_only, StpMode[stp.upper()], cid, expire_ns)


def summary(events: list[Any]) -> list[str]:
    """Events as short readable strings, for table-style expectations."""
    lines = []
    for e in events:
        kind = type(e).__name__
        if kind == "Trade":
            lines.append(f"trade {e.qty_lots}@{e.price_ticks} maker#{e.maker_order_id} taker#{e.taker_order_id}")
        elif kind == "OrderAccepted":
            lines.append(f"accepted #{e.order_id}")
        elif kind == "OrderCancelled":
            partial = f" left {e.remaining_lots}" if e.remaining_lots else ""
            lines.append(f"cancelled #{e.order_id} {e.cancelled_lots} {e.reason}{partial}")
        elif kind == "Rejected":
            lines.append(f"rejected {e.code}")
        elif kind == "OrderAmended":
            lines.append(f"amended #{e.order_id} {e.remaining_lots}@{e.price_ticks} "
                         f"{'kept' if e.priority_kept else 'lost'} priority")
        elif kind == "OrderExpired":
            lines.append(f"expired #{e.order_id} {e.expired_lots}")
        elif kind == "CancelAllAfterSet":
            lines.append(f"switch @{e.account_id} " + (f"armed {e.deadline_ns}" if e.deadline_ns else "disarmed"))
        elif kind == "DeadMansSwitchFired":
            lines.append(f"switch @{e.account_id} fired {e.cancelled}")
        else:
            lines.append(kind)
    return lines
