"""The fast price-time priority order book of one series: the matching layer.

Layout, chosen for CPython speed (see bench/bench_engine.py):
- per side a `dict` price -> `Level` plus a `SortedList` of the prices present, so finding the next
  level is O(log n) only when a level empties; the best price on each side is cached as a plain int
  (`best_bid` 0 and `best_ask` NO_ASK mean "empty", so the hot loop compares ints, never None);
- each `Level` is a FIFO `deque` of `Order`s. Removal is lazy: a cancelled order is marked
  `remaining_lots == 0` and skipped when it reaches the head; a level is compacted when tombstones
  outnumber live orders, so memory stays bounded without O(n) deque removals;
- events are built with `tuple.__new__` to skip the NamedTuple constructor's Python frame.

The book knows nothing of accounts' cash or margin: the engine validates and risk-checks before
calling `place`, and reads the book's events afterwards. Self-trade prevention lives here because it
is decided order by order inside the matching walk.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Final

from sortedcontainers import SortedList

from exchange.domain.codes import CancelReason
from exchange.domain.events import OrderAmended, OrderCancelled, OrderExpired, Trade
from exchange.domain.lifecycle import NEXT, OrderAction
from exchange.domain.order import Order, Side, StpMode, TimeInForce
from exchange.domain.spec import SeriesSpec
from exchange.domain.units import PPM, div_half_even

BUY: Final = 0
SELL: Final = 1
NO_ASK: Final = 2**62 - 1  # best_ask when the ask side is empty (mypyc keeps ints below 2**62 unboxed)
NO_BID: Final = 0            # best_bid when the bid side is empty (prices are >= 1 tick)

_IOC: Final = 2
_FOK: Final = 3
_STP_NEWEST: Final = 0
_STP_OLDEST: Final = 1
_STP_BOTH: Final = 2
_STP_DECREMENT: Final = 3

# Enum member lookups cost ~100 ns each on CPython 3.11: the hot paths use these bindings.
_FOK_UNFILLABLE = CancelReason.FOK_UNFILLABLE
_IOC_REMAINDER = CancelReason.IOC_REMAINDER
_SELF_TRADE = CancelReason.SELF_TRADE
_REST: Final = 0
_FILL_PART: Final = 1
_FILL_FULL: Final = 2
_CANCEL: Final = 3
_EXPIRE: Final = 4
_AMEND: Final = 5
_REDUCE: Final = 6

# A level's deque is rebuilt when it holds more than this many tombstones beyond twice its live
# orders: amortised O(1), and bounds dead entries to a constant factor of live ones.
_COMPACT_SLACK: Final = 32

_new = tuple.__new__

# The ints above are literals so that mypyc can inline them; they must equal the enums they stand for.
assert (BUY, SELL) == (Side.BUY, Side.SELL)
assert (_IOC, _FOK) == (TimeInForce.IOC, TimeInForce.FOK)
assert tuple(StpMode) == (_STP_NEWEST, _STP_OLDEST, _STP_BOTH, _STP_DECREMENT)
assert tuple(OrderAction) == (_REST, _FILL_PART, _FILL_FULL, _CANCEL, _EXPIRE, _AMEND, _REDUCE)


class Stamp:
    """The event sequence counter and the current command's time, shared by the engine and its
    books so that every event gets the next global `seq`."""

    __slots__ = ("seq", "ts_ns")

    def __init__(self, seq: int = 0, ts_ns: int = 0) -> None:
        self.seq = seq
        self.ts_ns = ts_ns


class Level:
    __slots__ = ("live", "orders", "total_lots")

    def __init__(self) -> None:
        self.orders: deque[Order] = deque()
        self.live = 0          # orders in `orders` with remaining_lots > 0
        self.total_lots = 0    # sum of their remaining_lots


class OrderBook:
    def __init__(self, spec: SeriesSpec, stamp: Stamp) -> None:
        self.spec = spec
        self.symbol = spec.symbol
        self._stamp = stamp
        self.bids: dict[int, Level] = {}
        self.asks: dict[int, Level] = {}
        self._bid_prices = SortedList()
        self._ask_prices = SortedList()
        self.best_bid = NO_BID
        self.best_ask = NO_ASK
        self.trade_count = 0
        self._tick_value_micros = spec.lot_tick_value_micros
        self._taker_fee_ppm = spec.taker_fee_ppm
        self._maker_fee_ppm = spec.maker_fee_ppm

    # -- queries -----------------------------------------------------------------------------
    def crosses(self, side: int, price_ticks: int) -> bool:
        """Would a limit order at this price trade against the other side right now?"""
        if side == BUY:
            return price_ticks >= self.best_ask
        return price_ticks <= self.best_bid

    def levels(self, side: int) -> list[tuple[int, int, int]]:
        """(price_ticks, total_lots, order_count) from the best price outwards."""
        book, prices = (self.bids, reversed(self._bid_prices)) if side == BUY else (
            self.asks, iter(self._ask_prices))
        return [(p, book[p].total_lots, book[p].live) for p in prices]

    def orders(self, side: int) -> Iterator[Order]:
        """Live orders of one side in priority order (best price first, then FIFO)."""
        book, prices = (self.bids, reversed(self._bid_prices)) if side == BUY else (
            self.asks, iter(self._ask_prices))
        for p in prices:
            for order in book[p].orders:
                if order.remaining_lots:
                    yield order

    def fillable_lots(self, taker: Order, wanted_lots: int) -> int:
        """How much `taker` could trade right now, up to `wanted_lots`, under its STP mode.

        Used by FOK before anything is touched: with cancel_oldest the own orders it would meet are
        skipped (they would be cancelled); with any other mode meeting an own order ends the fill.
        """
        side = taker.side
        limit = taker.price_ticks
        if side == BUY:
            book, prices = self.asks, self._ask_prices.irange(maximum=limit)
        else:
            book, prices = self.bids, self._bid_prices.irange(minimum=limit, reverse=True)
        available = 0
        account = taker.account_id
        skip_own = taker.stp == _STP_OLDEST
        for price in prices:
            for maker in book[price].orders:
                rem = maker.remaining_lots
                if not rem:
                    continue
                if maker.account_id == account:
                    if skip_own:
                        continue
                    return available
                available += rem
                if available >= wanted_lots:
                    return available
        return available

    # -- commands ----------------------------------------------------------------------------
    def place(self, taker: Order, out: list[object], can_rest: bool) -> None:
        """Match a new (or re-priced) order, then rest or cancel what is left.

        The caller has validated the order and checked risk. `can_rest` is False for IOC, FOK and
        market orders: their remainder is cancelled, never rested.
        """
        if taker.tif == _FOK and self.fillable_lots(taker, taker.remaining_lots) < taker.remaining_lots:
            self._cancel_taker(taker, _FOK_UNFILLABLE, out)
            return
        if taker.side == BUY:
            if taker.price_ticks >= self.best_ask:
                self._match(taker, out, self.asks, self._ask_prices, True)
        elif taker.price_ticks <= self.best_bid:
            self._match(taker, out, self.bids, self._bid_prices, False)
        if taker.remaining_lots:
            if can_rest:
                self._rest(taker)
            else:
                self._cancel_taker(taker, _IOC_REMAINDER, out)

    def cancel(self, order: Order, reason: CancelReason, out: list[object]) -> None:
        """Remove a resting order's whole remainder."""
        lots = order.remaining_lots
        assert lots > 0, order
        self._unlink(order)
        order.cancelled_lots += lots
        order.status = NEXT[order.status][_CANCEL]
        stamp = self._stamp
        stamp.seq += 1
        out.append(_new(OrderCancelled, (stamp.seq, stamp.ts_ns, order.order_id, order.account_id,
                                         self.symbol, order.side, lots, 0, reason)))

    def expire(self, order: Order, out: list[object]) -> None:
        lots = order.remaining_lots
        assert lots > 0, order
        self._unlink(order)
        order.cancelled_lots += lots
        order.status = NEXT[order.status][_EXPIRE]
        stamp = self._stamp
        stamp.seq += 1
        out.append(_new(OrderExpired, (stamp.seq, stamp.ts_ns, order.order_id, order.account_id,
                                       self.symbol, order.side, lots)))

    def amend(self, order: Order, price_ticks: int, remaining_lots: int, out: list[object]) -> Order:
        """Change a resting order. Returns the live object for this order id afterwards.

        Only a pure reduction keeps time priority (in place). A new price or a larger quantity
        requeues the order: the old object becomes a tombstone and a copy goes through matching
        again, so it may trade at once.
        """
        old = order.remaining_lots
        assert old > 0 and remaining_lots > 0, order
        stamp = self._stamp
        if price_ticks == order.price_ticks and remaining_lots < old:
            reduced = old - remaining_lots
            level = (self.bids if order.side == BUY else self.asks)[price_ticks]
            level.total_lots -= reduced
            order.remaining_lots = remaining_lots
            order.cancelled_lots += reduced
            order.status = NEXT[order.status][_AMEND]
            stamp.seq += 1
            out.append(_new(OrderAmended, (stamp.seq, stamp.ts_ns, order.order_id, order.account_id,
                                           self.symbol, order.side, price_ticks, remaining_lots,
                                           order.quantity_lots, True)))
            return order
        self._unlink(order)  # the old object stays queued as a tombstone (remaining 0)
        fresh = order.copy_for_requeue()
        if remaining_lots < old:
            fresh.cancelled_lots += old - remaining_lots
        else:
            fresh.quantity_lots += remaining_lots - old
        fresh.remaining_lots = remaining_lots
        fresh.price_ticks = price_ticks
        fresh.status = NEXT[fresh.status][_AMEND]
        stamp.seq += 1
        out.append(_new(OrderAmended, (stamp.seq, stamp.ts_ns, fresh.order_id, fresh.account_id,
                                       self.symbol, fresh.side, price_ticks, remaining_lots,
                                       fresh.quantity_lots, False)))
        self.place(fresh, out, True)
        return fresh

    def restore_order(self, order: Order) -> None:
        """Rebuild a book from a snapshot: append a live order at the back of its level as is.

        Call it for each side's live orders in priority order (what `orders(side)` yields). It emits
        nothing, and the status stays what it was (resting again from OPEN or PARTIALLY_FILLED is a
        no-op in the lifecycle table); the trade count is restored apart.
        """
        assert order.remaining_lots > 0 and order.symbol == self.symbol, order
        self._rest(order)

    # -- internals ---------------------------------------------------------------------------
    def _rest(self, order: Order) -> None:
        price = order.price_ticks
        if order.side == BUY:
            level = self.bids.get(price)
            if level is None:
                level = self.bids[price] = Level()
                self._bid_prices.add(price)
                if price > self.best_bid:
                    self.best_bid = price
        else:
            level = self.asks.get(price)
            if level is None:
                level = self.asks[price] = Level()
                self._ask_prices.add(price)
                if price < self.best_ask:
                    self.best_ask = price
        # Resting must never cross the book: the caller matched first (or refused a post-only).
        assert self.best_bid < self.best_ask, f"{self.symbol}: resting {order!r} would cross"
        level.orders.append(order)
        level.live += 1
        level.total_lots += order.remaining_lots
        order.status = NEXT[order.status][_REST]

    def _unlink(self, order: Order) -> None:
        """Take a resting order's remainder out of its level (lazily: it stays in the deque)."""
        price = order.price_ticks
        book = self.bids if order.side == BUY else self.asks
        level = book[price]
        level.live -= 1
        level.total_lots -= order.remaining_lots
        order.remaining_lots = 0
        if level.live == 0:
            self._drop_level(book, price, order.side == BUY)
        elif len(level.orders) > 2 * level.live + _COMPACT_SLACK:
            level.orders = deque(o for o in level.orders if o.remaining_lots)

    def _drop_level(self, book: dict[int, Level], price: int, is_bid: bool) -> None:
        del book[price]
        if is_bid:
            prices = self._bid_prices
            prices.remove(price)
            if price == self.best_bid:
                self.best_bid = prices[-1] if prices else NO_BID
        else:
            prices = self._ask_prices
            prices.remove(price)
            if price == self.best_ask:
                self.best_ask = prices[0] if prices else NO_ASK

    def _cancel_taker(self, taker: Order, reason: CancelReason, out: list[object]) -> None:
        lots = taker.remaining_lots
        taker.remaining_lots = 0
        taker.cancelled_lots += lots
        taker.status = NEXT[taker.status][_CANCEL]
        stamp = self._stamp
        stamp.seq += 1
        out.append(_new(OrderCancelled, (stamp.seq, stamp.ts_ns, taker.order_id, taker.account_id,
                                         self.symbol, taker.side, lots, 0, reason)))

    def _match(self, taker: Order, out: list[object], book: dict[int, Level], prices: SortedList,
               is_buy: bool) -> None:
        """Walk the opposite side from the best price while the taker's limit allows.

        The hot loop of the exchange: locals only, no calls except to build events.
        """
        stamp = self._stamp
        ts = stamp.ts_ns
        seq = stamp.seq
        symbol = self.symbol
        limit = taker.price_ticks
        remaining = taker.remaining_lots
        filled = taker.filled_lots
        taker_id = taker.order_id
        account = taker.account_id
        side = taker.side
        tick_value = self._tick_value_micros
        taker_ppm = self._taker_fee_ppm
        maker_ppm = self._maker_fee_ppm
        trade_count = self.trade_count
        stp_stop = False
        best = self.best_ask if is_buy else self.best_bid
        while remaining and (best <= limit if is_buy else best >= limit) and not stp_stop:
            level = book[best]
            queue = level.orders
            while remaining and queue:
                maker = queue[0]
                maker_rem = maker.remaining_lots
                if not maker_rem:            # tombstone of a cancelled / requeued order
                    queue.popleft()
                    continue
                if maker.account_id == account:
                    # Self-trade prevention: the two orders never trade.
                    mode = taker.stp
                    if mode == _STP_DECREMENT:
                        cut = maker_rem if maker_rem < remaining else remaining
                        maker_rem -= cut
                        maker.remaining_lots = maker_rem
                        maker.cancelled_lots += cut
                        level.total_lots -= cut
                        remaining -= cut
                        taker.cancelled_lots += cut
                        if maker_rem:
                            maker.status = NEXT[maker.status][_REDUCE]
                        else:
                            maker.status = NEXT[maker.status][_CANCEL]
                            queue.popleft()
                            level.live -= 1
                        seq += 1
                        out.append(_new(OrderCancelled, (seq, ts, maker.order_id, account, symbol,
                                                         maker.side, cut, maker_rem,
                                                         _SELF_TRADE)))
                        taker.status = NEXT[taker.status][_REDUCE if remaining else _CANCEL]
                        seq += 1
                        out.append(_new(OrderCancelled, (seq, ts, taker_id, account, symbol, side, cut,
                                                         remaining, _SELF_TRADE)))
                        continue
                    if mode != _STP_NEWEST:  # cancel_oldest or cancel_both: the resting one goes
                        queue.popleft()
                        level.live -= 1
                        level.total_lots -= maker_rem
                        maker.remaining_lots = 0
                        maker.cancelled_lots += maker_rem
                        maker.status = NEXT[maker.status][_CANCEL]
                        seq += 1
                        out.append(_new(OrderCancelled, (seq, ts, maker.order_id, account, symbol,
                                                         maker.side, maker_rem, 0,
                                                         _SELF_TRADE)))
                        if mode == _STP_OLDEST:
                            continue
                    # cancel_newest or cancel_both: the incoming remainder goes, matching stops.
                    taker.cancelled_lots += remaining
                    taker.status = NEXT[taker.status][_CANCEL]
                    seq += 1
                    out.append(_new(OrderCancelled, (seq, ts, taker_id, account, symbol, side,
                                                     remaining, 0, _SELF_TRADE)))
                    remaining = 0
                    stp_stop = True
                    break
                if maker_rem <= remaining:
                    qty = maker_rem
                    maker_rem = 0
                    queue.popleft()
                    level.live -= 1
                    maker.status = NEXT[maker.status][_FILL_FULL]
                else:
                    qty = remaining
                    maker_rem -= qty
                    maker.status = NEXT[maker.status][_FILL_PART]
                maker.remaining_lots = maker_rem
                maker.filled_lots += qty
                level.total_lots -= qty
                remaining -= qty
                filled += qty
                taker.status = NEXT[taker.status][_FILL_PART if remaining else _FILL_FULL]
                notional = best * qty * tick_value
                trade_count += 1
                seq += 1
                out.append(_new(Trade, (
                    seq, ts, symbol, trade_count, best, qty, side, maker.order_id, maker.account_id,
                    taker_id, account, maker_rem, remaining,
                    div_half_even(notional * maker_ppm, PPM) if maker_ppm else 0,
                    div_half_even(notional * taker_ppm, PPM) if taker_ppm else 0,
                )))
            if level.live == 0:
                self._drop_level(book, best, not is_buy)
                best = self.best_ask if is_buy else self.best_bid
            elif not remaining:
                break
        taker.remaining_lots = remaining
        taker.filled_lots = filled
        stamp.seq = seq
        self.trade_count = trade_count
        assert self.best_bid < self.best_ask, f"{self.symbol}: book crossed at rest"
