"""Order vocabulary (side, type, time in force, STP mode) and the live `Order` the book holds.

Enums are `IntEnum`s so that the matching loop compares and hashes plain ints; their names are the
wire spelling (`Side.BUY.label == "buy"`).
"""

from __future__ import annotations

from enum import IntEnum

from exchange.domain.lifecycle import OrderStatus

_NEW = OrderStatus.NEW  # bound once: enum member lookups are slow on the hot path


class Side(IntEnum):
    BUY = 0
    SELL = 1

    @property
    def label(self) -> str:
        return self.name.lower()


class OrderType(IntEnum):
    LIMIT = 0
    MARKET = 1  # protected: trades only inside the price band; any remainder is cancelled

    @property
    def label(self) -> str:
        return self.name.lower()


class TimeInForce(IntEnum):
    GTC = 0  # good till cancelled
    GTD = 1  # good till a given time (expire_ts_ns)
    IOC = 2  # immediate or cancel: the remainder never rests
    FOK = 3  # fill or kill: fills in full at once or nothing trades

    @property
    def label(self) -> str:
        return self.name.lower()


class StpMode(IntEnum):
    """Self-trade prevention, applied by account, chosen by the incoming (taker) order."""

    CANCEL_NEWEST = 0  # cancel the incoming order's remainder (default)
    CANCEL_OLDEST = 1  # cancel the resting order and keep matching
    CANCEL_BOTH = 2
    DECREMENT = 3      # reduce both by the smaller quantity; whichever reaches zero is cancelled

    @property
    def label(self) -> str:
        return self.name.lower()


class Order:
    """A live order. Mutable, owned by the core; the outside world sees it only through events.

    Quantities are whole lots and always satisfy `filled + remaining + cancelled == quantity`
    (`quantity` grows when an amend increases the order). `remaining == 0` on an object that is
    still in a level's queue marks a tombstone that the matching loop skips (lazy removal).
    """

    __slots__ = (
        "account_id",
        "cancelled_lots",
        "client_order_id",
        "expire_ts_ns",
        "filled_lots",
        "order_id",
        "post_only",
        "price_ticks",
        "quantity_lots",
        "remaining_lots",
        "side",
        "status",
        "stp",
        "symbol",
        "tif",
    )

    def __init__(
        self,
        order_id: int,
        account_id: int,
        symbol: str,
        side: int,
        price_ticks: int,
        quantity_lots: int,
        tif: int,
        post_only: bool,
        stp: int,
        client_order_id: str | None,
        expire_ts_ns: int | None,
    ) -> None:
        self.order_id = order_id
        self.account_id = account_id
        self.symbol = symbol
        self.side = side
        self.price_ticks = price_ticks
        self.quantity_lots = quantity_lots
        self.remaining_lots = quantity_lots
        self.filled_lots = 0
        self.cancelled_lots = 0
        self.status = _NEW
        self.tif = tif
        self.post_only = post_only
        self.stp = stp
        self.client_order_id = client_order_id
        self.expire_ts_ns = expire_ts_ns

    def copy_for_requeue(self) -> Order:
        """A fresh object with the same identity, for an amend that loses time priority.

        The old object stays in its level's queue as a tombstone (remaining 0), so the queue never
        needs an O(n) removal.
        """
        clone = Order(self.order_id, self.account_id, self.symbol, self.side, self.price_ticks, self.quantity_lots,
                      self.tif, self.post_only, self.stp, self.client_order_id, self.expire_ts_ns)
        clone.remaining_lots = self.remaining_lots
        clone.filled_lots = self.filled_lots
        clone.cancelled_lots = self.cancelled_lots
        clone.status = self.status
        return clone

    def quantities_add_up(self) -> bool:
        return self.filled_lots + self.remaining_lots + self.cancelled_lots == self.quantity_lots

    def __repr__(self) -> str:
        return (
            f"Order(id={self.order_id}, acct={self.account_id}, {self.symbol} {Side(self.side).label} "
            f"{self.remaining_lots}/{self.quantity_lots} @ {self.price_ticks}, {self.status.name})"
        )
