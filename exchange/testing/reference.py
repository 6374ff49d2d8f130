"""A deliberately naive reference engine: the oracle the fast core is tested against.

Same rules, same commands, same events as `exchange.domain.engine.Engine`, written the obvious way:
one flat list of live orders per series, a linear scan for the best price on every fill, margin and
open quantities recomputed from scratch for every check, no caches, no tombstones, no fast paths.
It is slow on purpose and must stay that way: when the two disagree, this one is easier to believe.
It shares only the vocabulary (commands, events, codes, specs, rounding) with the fast engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exchange.domain.codes import CancelReason, RejectCode
from exchange.domain.commands import (
    AdvanceTime,
    AmendOrder,
    CancelAllAfter,
    CancelOrder,
    CreateAccount,
    Deposit,
    HaltSeries,
    ListSeries,
    MassCancel,
    PlaceOrder,
    SetAccountEnabled,
    SettleDaily,
    TerminateTrading,
    Withdraw,
)
from exchange.domain.events import (
    AccountCreated,
    AccountStatusChanged,
    CancelAllAfterSet,
    CashMoved,
    CashMoveDuplicate,
    DailySettlement,
    DeadMansSwitchFired,
    DuplicateOrder,
    MassCancelDone,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    Rejected,
    SeriesHaltChanged,
    SeriesListed,
    SettlementDuplicate,
    Trade,
    TradingTerminated,
)
from exchange.domain.spec import SeriesSpec
from exchange.domain.units import PPM, div_half_even

BUY, SELL = 0, 1
NS_PER_DAY = 86_400 * 1_000_000_000
LIMIT, MARKET = 0, 1
GTC, GTD, IOC, FOK = 0, 1, 2, 3
NEWEST, OLDEST, BOTH, DECREMENT = 0, 1, 2, 3
EXTERNAL, FEES = -1, -2
MAX_OPEN_ORDERS = 1_000
MAX_ID = 2**53
MAX_CASH = 10**15
MAX_TIMEOUT_MS = 86_400_000


@dataclass
class RefOrder:
    order_id: int
    account_id: int
    symbol: str
    side: int
    price: int
    quantity: int
    remaining: int
    tif: int
    post_only: bool
    stp: int
    client_order_id: str | None
    expire: int | None
    priority: int = 0
    filled: int = 0
    cancelled: int = 0


@dataclass
class RefSeries:
    spec: SeriesSpec
    reference: int
    halted: bool = False
    terminated: bool = False
    trades: int = 0
    resting: list[RefOrder] = field(default_factory=list)
    settlements: dict[int, tuple[int, str]] = field(default_factory=dict)  # date -> (price, digest)

    @property
    def low(self) -> int:
        return -((-self.reference * (PPM - self.spec.price_band_ppm)) // PPM)

    @property
    def high(self) -> int:
        return (self.reference * (PPM + self.spec.price_band_ppm)) // PPM

    @property
    def im_per_lot(self) -> int:
        return div_half_even(self.reference * self.spec.lot_tick_value_micros * self.spec.initial_margin_ppm, PPM)


@dataclass
class RefPosition:
    lots: int = 0
    cost: int = 0  # entry cost in tick-lots, average-cost method (see exchange.domain.account)


class ReferenceEngine:
    def __init__(self, max_open_orders: int = MAX_OPEN_ORDERS) -> None:
        self.max_open_orders = max_open_orders
        self.seq = 0
        self.now = 0
        self.series: dict[str, RefSeries] = {}
        self.enabled: dict[int, bool] = {}
        self.cancel_all_at: dict[int, int] = {}  # account -> dead man's switch deadline (ns), 0 when disarmed
        self.cash: dict[int, int] = {EXTERNAL: 0, FEES: 0}
        self.positions: dict[tuple[int, str], RefPosition] = {}
        self.next_id = 1
        self.next_priority = 1
        self.client_orders: dict[tuple[int, str], tuple[PlaceOrder, int, tuple[Any, ...]]] = {}
        self.references: dict[tuple[int, str], tuple[Deposit | Withdraw, int]] = {}   # cash moves, with their time
        self.out: list[Any] = []

    # -- plumbing ------------------------------------------------------------------------------
    def emit(self, kind: type, *fields: Any) -> None:
        self.seq += 1
        self.out.append(kind(self.seq, self.now, *fields))

    def reject(self, command: object, account: int | None, code: RejectCode, order_id: int | None = None,
               client_order_id: str | None = None) -> None:
        self.emit(Rejected, type(command).__name__, account, code, code.value, order_id, client_order_id)

    def live_orders(self) -> list[RefOrder]:
        return sorted((o for s in self.series.values() for o in s.resting), key=lambda o: o.order_id)

    def find(self, order_id: int) -> RefOrder | None:
        return next((o for o in self.live_orders() if o.order_id == order_id), None)

    def position(self, account: int, symbol: str) -> RefPosition:
        return self.positions.setdefault((account, symbol), RefPosition())

    def open_lots(self, account: int, symbol: str, side: int) -> int:
        return sum(o.remaining for o in self.series[symbol].resting if o.account_id == account and o.side == side)

    def worst(self, account: int, symbol: str, extra_buy: int = 0, extra_sell: int = 0) -> int:
        pos = self.position(account, symbol).lots
        return max(abs(pos + self.open_lots(account, symbol, BUY) + extra_buy),
                   abs(pos - self.open_lots(account, symbol, SELL) - extra_sell))

    def margin(self, account: int) -> int:
        symbols = {s for (a, s) in self.positions if a == account}
        symbols |= {o.symbol for o in self.live_orders() if o.account_id == account}
        return sum(self.series[s].im_per_lot * self.worst(account, s) for s in symbols)

    # -- entry point ---------------------------------------------------------------------------
    def apply(self, command: Any, ts_ns: int) -> list[Any]:
        assert ts_ns >= self.now
        self.now = ts_ns
        self.out = []
        self.deadlines()
        getattr(self, "do_" + type(command).__name__)(command)
        return self.out

    def deadlines(self) -> None:
        """Everything due, by time; on a tie GTD expiries, then terminations, then dead man's switches."""
        due: list[tuple[int, int, Any]] = []
        for order in self.live_orders():
            if order.tif == GTD and order.expire is not None and order.expire <= self.now:
                due.append((order.expire, 0, order.order_id))
        for symbol, series in self.series.items():
            if not series.terminated and series.spec.trading_end_ns <= self.now:
                due.append((series.spec.trading_end_ns, 1, symbol))
        for account, deadline in self.cancel_all_at.items():
            if deadline and deadline <= self.now:
                due.append((deadline, 2, account))
        for _, kind, key in sorted(due):
            if kind == 2:
                victims = [o for o in self.live_orders() if o.account_id == key]
                for order in victims:
                    self.remove(order, CancelReason.DEAD_MANS_SWITCH)
                self.cancel_all_at[key] = 0
                self.emit(DeadMansSwitchFired, key, len(victims))
            elif kind == 0:
                expiring = self.find(key)
                if expiring is not None:
                    order = expiring
                    self.series[order.symbol].resting.remove(order)
                    order.cancelled += order.remaining
                    self.emit(OrderExpired, order.order_id, order.account_id, order.symbol, order.side,
                              order.remaining)
                    order.remaining = 0
            elif not self.series[key].terminated:
                self.terminate(self.series[key])

    def terminate(self, series: RefSeries) -> None:
        for order in sorted(series.resting, key=lambda o: o.order_id):
            self.remove(order, CancelReason.TRADING_TERMINATED)
        series.terminated = True
        self.emit(TradingTerminated, series.spec.symbol)

    def remove(self, order: RefOrder, reason: CancelReason) -> None:
        self.series[order.symbol].resting.remove(order)
        order.cancelled += order.remaining
        self.emit(OrderCancelled, order.order_id, order.account_id, order.symbol, order.side, order.remaining, 0,
                  reason)
        order.remaining = 0

    # -- accounts ------------------------------------------------------------------------------
    def do_CreateAccount(self, c: CreateAccount) -> None:
        if type(c.account_id) is not int or not 0 < c.account_id <= MAX_ID:
            return self.reject(c, None, RejectCode.INVALID_ACCOUNT_ID)
        if c.account_id in self.enabled:
            return self.reject(c, c.account_id, RejectCode.ACCOUNT_EXISTS)
        self.enabled[c.account_id] = True
        self.cash[c.account_id] = 0
        self.emit(AccountCreated, c.account_id)

    def cash_ok(self, c: Deposit | Withdraw) -> bool:
        if c.account_id not in self.enabled:
            self.reject(c, c.account_id, RejectCode.UNKNOWN_ACCOUNT)
            return False
        if type(c.amount_micros) is not int or not 0 < c.amount_micros <= MAX_CASH:
            self.reject(c, c.account_id, RejectCode.INVALID_AMOUNT)
            return False
        return True

    WINDOW_NS = 24 * 3_600 * 1_000_000_000   # the core's idempotency window, restated

    def known_reference(self, c: Deposit | Withdraw) -> bool:
        """A reference seen within the window: a retry (nothing moves) or a conflict; a bad reference."""
        self.references = {k: v for k, v in self.references.items() if v[1] > self.now - self.WINDOW_NS}
        r = c.reference
        if r is None:
            return False
        if not (isinstance(r, str) and 0 < len(r) <= 128 and r.isascii() and r.isprintable()):
            self.reject(c, c.account_id, RejectCode.INVALID_REFERENCE)
            return True
        if (c.account_id, r) not in self.references:
            return False
        known = self.references[(c.account_id, r)][0]
        if type(known) is type(c) and known == c:
            self.emit(CashMoveDuplicate, c.account_id, r)
        else:
            self.reject(c, c.account_id, RejectCode.REFERENCE_CONFLICT)
        return True

    def remember_reference(self, c: Deposit | Withdraw) -> None:
        if c.reference is not None:
            self.references[(c.account_id, c.reference)] = (c, self.now)

    def do_Deposit(self, c: Deposit) -> None:
        if self.known_reference(c):
            return
        if self.cash_ok(c):
            self.remember_reference(c)
            self.cash[EXTERNAL] -= c.amount_micros
            self.cash[c.account_id] += c.amount_micros
            self.emit(CashMoved, "deposit", EXTERNAL, c.account_id, c.amount_micros, self.cash[c.account_id])

    def do_Withdraw(self, c: Withdraw) -> None:
        if self.known_reference(c) or not self.cash_ok(c):
            return
        if self.cash[c.account_id] - c.amount_micros < self.margin(c.account_id):
            return self.reject(c, c.account_id, RejectCode.INSUFFICIENT_FUNDS)
        self.remember_reference(c)
        self.cash[c.account_id] -= c.amount_micros
        self.cash[EXTERNAL] += c.amount_micros
        self.emit(CashMoved, "withdrawal", c.account_id, EXTERNAL, c.amount_micros, self.cash[c.account_id])

    def do_SetAccountEnabled(self, c: SetAccountEnabled) -> None:
        if c.account_id not in self.enabled:
            return self.reject(c, c.account_id, RejectCode.UNKNOWN_ACCOUNT)
        if not c.enabled:
            for order in [o for o in self.live_orders() if o.account_id == c.account_id]:
                self.remove(order, CancelReason.ACCOUNT_DISABLED)
        self.enabled[c.account_id] = bool(c.enabled)
        self.emit(AccountStatusChanged, c.account_id, bool(c.enabled))

    def do_CancelAllAfter(self, c: CancelAllAfter) -> None:
        if c.account_id not in self.enabled:
            return self.reject(c, c.account_id, RejectCode.UNKNOWN_ACCOUNT)
        if type(c.timeout_ms) is not int or not 0 <= c.timeout_ms <= MAX_TIMEOUT_MS:
            return self.reject(c, c.account_id, RejectCode.INVALID_TIMEOUT)
        self.cancel_all_at[c.account_id] = self.now + c.timeout_ms * 1_000_000 if c.timeout_ms else 0
        self.emit(CancelAllAfterSet, c.account_id, self.cancel_all_at[c.account_id])

    # -- series --------------------------------------------------------------------------------
    def do_ListSeries(self, c: ListSeries) -> None:
        if c.spec.symbol in self.series:
            return self.reject(c, None, RejectCode.SERIES_ALREADY_LISTED)
        if c.spec.trading_end_ns <= self.now:
            return self.reject(c, None, RejectCode.TRADING_TERMINATED)
        self.series[c.spec.symbol] = RefSeries(c.spec, c.spec.reference_price_ticks)
        self.emit(SeriesListed, c.spec)

    def open_series(self, c: Any, symbol: str) -> RefSeries | None:
        if symbol not in self.series:
            self.reject(c, None, RejectCode.UNKNOWN_SERIES)
            return None
        if self.series[symbol].terminated:
            self.reject(c, None, RejectCode.TRADING_TERMINATED)
            return None
        return self.series[symbol]

    def do_HaltSeries(self, c: HaltSeries) -> None:
        series = self.open_series(c, c.symbol)
        if series is not None:
            series.halted = bool(c.halted)
            self.emit(SeriesHaltChanged, c.symbol, series.halted)

    def do_TerminateTrading(self, c: TerminateTrading) -> None:
        series = self.open_series(c, c.symbol)
        if series is not None:
            self.terminate(series)

    def do_AdvanceTime(self, c: AdvanceTime) -> None:
        pass

    def do_SettleDaily(self, c: SettleDaily) -> None:
        """Only what moves the band: a day's price without variation margin postings (VM is checked
        against an independent computation elsewhere). The latest settled day sets the reference price,
        and every resting order outside the new band is cancelled (rulebook §4 v2), in order id order."""
        assert not c.postings and not c.amend, "the reference engine models SettleDaily without VM or amendments"
        if c.symbol not in self.series:
            return self.reject(c, None, RejectCode.UNKNOWN_SERIES)
        series = self.series[c.symbol]
        final_day = series.spec.trading_end_ns // NS_PER_DAY * NS_PER_DAY
        if (type(c.date_ns) is not int or c.date_ns < 0 or c.date_ns % NS_PER_DAY or c.date_ns > self.now
                or c.date_ns > final_day or type(c.price_ticks) is not int or c.price_ticks <= 0):
            return self.reject(c, None, RejectCode.INVALID_SETTLEMENT)
        earlier = series.settlements.get(c.date_ns)
        if earlier is not None:
            if earlier == (c.price_ticks, c.digest):
                return self.emit(SettlementDuplicate, c.symbol, c.date_ns, c.digest)
            return self.reject(c, None, RejectCode.SETTLEMENT_CONFLICT)
        self.emit(DailySettlement, c.symbol, c.date_ns, c.price_ticks, c.digest, 0, 0, False)
        series.settlements[c.date_ns] = (c.price_ticks, c.digest)
        if c.date_ns == max(series.settlements):
            series.reference = series.settlements[c.date_ns][0]
            for order in sorted(series.resting, key=lambda o: o.order_id):
                if not series.low <= order.price <= series.high:
                    self.remove(order, CancelReason.OUTSIDE_BAND)

    # -- orders --------------------------------------------------------------------------------
    def check_order(self, c: PlaceOrder, series: RefSeries) -> RejectCode | None:
        if c.side not in (BUY, SELL):
            return RejectCode.INVALID_SIDE
        if c.order_type not in (LIMIT, MARKET):
            return RejectCode.INVALID_ORDER_TYPE
        if c.tif not in (GTC, GTD, IOC, FOK):
            return RejectCode.INVALID_TIME_IN_FORCE
        if c.stp not in (NEWEST, OLDEST, BOTH, DECREMENT):
            return RejectCode.INVALID_STP_MODE
        if type(c.qty_lots) is not int or c.qty_lots <= 0:
            return RejectCode.INVALID_QUANTITY
        if c.qty_lots > series.spec.max_order_lots:
            return RejectCode.ORDER_TOO_LARGE
        if c.order_type == LIMIT:
            if type(c.price_ticks) is not int or c.price_ticks <= 0:
                return RejectCode.INVALID_PRICE
            if not series.low <= c.price_ticks <= series.high:
                return RejectCode.PRICE_OUTSIDE_BAND
        else:
            if c.price_ticks is not None:
                return RejectCode.PRICE_NOT_ALLOWED
            if c.tif not in (IOC, FOK):
                return RejectCode.INVALID_TIME_IN_FORCE
        if c.post_only and (c.order_type != LIMIT or c.tif not in (GTC, GTD)):
            return RejectCode.INVALID_TIME_IN_FORCE
        if c.tif == GTD:
            if type(c.expire_ts_ns) is not int:
                return RejectCode.EXPIRE_TIME_REQUIRED
            if c.expire_ts_ns <= self.now:
                return RejectCode.EXPIRE_TIME_IN_PAST
        elif c.expire_ts_ns is not None:
            return RejectCode.EXPIRE_TIME_NOT_ALLOWED
        return None

    def best_opposite(self, series: RefSeries, side: int) -> RefOrder | None:
        makers = [o for o in series.resting if o.side != side]
        if not makers:
            return None
        if side == BUY:
            return min(makers, key=lambda o: (o.price, o.priority))
        return min(makers, key=lambda o: (-o.price, o.priority))

    def crosses(self, series: RefSeries, side: int, price: int) -> bool:
        best = self.best_opposite(series, side)
        return best is not None and (price >= best.price if side == BUY else price <= best.price)

    def do_PlaceOrder(self, c: PlaceOrder) -> None:
        a, cid = c.account_id, c.client_order_id
        # Forgotten: ids whose order was placed a window ago or more and is closed (see the core's rule).
        live = {o.order_id for o in self.live_orders()}
        self.client_orders = {k: v for k, v in self.client_orders.items()
                              if v[2][0].ts_ns > self.now - self.WINDOW_NS or v[1] in live}
        if cid is not None:
            if not (isinstance(cid, str) and 0 < len(cid) <= 64 and cid.isascii() and cid.isprintable()):
                return self.reject(c, a, RejectCode.INVALID_CLIENT_ORDER_ID)
            if (a, cid) in self.client_orders:
                original, order_id, events = self.client_orders[(a, cid)]
                if original == c:
                    return self.emit(DuplicateOrder, a, cid, order_id, events)
                return self.reject(c, a, RejectCode.CLIENT_ORDER_ID_CONFLICT, order_id, cid)
        if not self.enabled.get(a, False):
            code = RejectCode.UNKNOWN_ACCOUNT if a not in self.enabled else RejectCode.ACCOUNT_DISABLED
            return self.reject(c, a, code, client_order_id=cid)
        series = self.series.get(c.symbol)
        if series is None or series.terminated or series.halted:
            code = (RejectCode.UNKNOWN_SERIES if series is None else
                    RejectCode.TRADING_TERMINATED if series.terminated else RejectCode.SERIES_HALTED)
            return self.reject(c, a, code, client_order_id=cid)
        invalid = self.check_order(c, series)
        if invalid is not None:
            return self.reject(c, a, invalid, client_order_id=cid)
        limit = c.price_ticks if c.order_type == LIMIT else (series.high if c.side == BUY else series.low)
        assert limit is not None
        if c.post_only and self.crosses(series, c.side, limit):
            return self.reject(c, a, RejectCode.POST_ONLY_WOULD_TAKE, client_order_id=cid)
        can_rest = c.tif in (GTC, GTD)
        if can_rest and sum(1 for o in self.live_orders() if o.account_id == a) >= self.max_open_orders:
            return self.reject(c, a, RejectCode.OPEN_ORDER_LIMIT, client_order_id=cid)
        old_worst = self.worst(a, c.symbol)
        new_worst = self.worst(a, c.symbol, c.qty_lots if c.side == BUY else 0, c.qty_lots if c.side == SELL else 0)
        if new_worst > old_worst:
            if new_worst > series.spec.max_position_lots:
                return self.reject(c, a, RejectCode.POSITION_LIMIT, client_order_id=cid)
            required = self.margin(a) + series.im_per_lot * (new_worst - old_worst)
            if required > self.cash[a]:
                return self.reject(c, a, RejectCode.INSUFFICIENT_MARGIN, client_order_id=cid)
        order = RefOrder(self.next_id, a, c.symbol, c.side, limit, c.qty_lots, c.qty_lots, c.tif, c.post_only, c.stp,
                         cid, c.expire_ts_ns)
        self.next_id += 1
        first = len(self.out)
        self.emit(OrderAccepted, order.order_id, a, c.symbol, c.side, c.order_type, c.price_ticks, c.qty_lots, c.tif,
                  c.post_only, c.stp, cid, c.expire_ts_ns)
        self.execute(series, order, can_rest)
        if cid is not None:
            self.client_orders[(a, cid)] = (c, order.order_id, tuple(self.out[first:]))

    def fillable(self, series: RefSeries, taker: RefOrder) -> int:
        makers = sorted((o for o in series.resting if o.side != taker.side), key=lambda o: (
            o.price if taker.side == BUY else -o.price, o.priority))
        available = 0
        for maker in makers:
            if (maker.price > taker.price) if taker.side == BUY else (maker.price < taker.price):
                break
            if maker.account_id == taker.account_id:
                if taker.stp == OLDEST:
                    continue
                break
            available += maker.remaining
        return available

    def execute(self, series: RefSeries, taker: RefOrder, can_rest: bool) -> None:
        """Match, then rest or cancel the remainder."""
        if taker.tif == FOK and self.fillable(series, taker) < taker.remaining:
            taker.cancelled += taker.remaining
            self.emit(OrderCancelled, taker.order_id, taker.account_id, taker.symbol, taker.side, taker.remaining, 0,
                      CancelReason.FOK_UNFILLABLE)
            taker.remaining = 0
            return
        while taker.remaining:
            maker = self.best_opposite(series, taker.side)
            if maker is None or (maker.price > taker.price if taker.side == BUY else maker.price < taker.price):
                break
            if maker.account_id == taker.account_id:
                if taker.stp == DECREMENT:
                    cut = min(maker.remaining, taker.remaining)
                    maker.remaining -= cut
                    maker.cancelled += cut
                    taker.remaining -= cut
                    taker.cancelled += cut
                    if not maker.remaining:
                        series.resting.remove(maker)
                    self.emit(OrderCancelled, maker.order_id, maker.account_id, maker.symbol, maker.side, cut,
                              maker.remaining, CancelReason.SELF_TRADE)
                    self.emit(OrderCancelled, taker.order_id, taker.account_id, taker.symbol, taker.side, cut,
                              taker.remaining, CancelReason.SELF_TRADE)
                    continue
                if taker.stp in (OLDEST, BOTH):
                    self.remove(maker, CancelReason.SELF_TRADE)
                    if taker.stp == OLDEST:
                        continue
                taker.cancelled += taker.remaining
                self.emit(OrderCancelled, taker.order_id, taker.account_id, taker.symbol, taker.side, taker.remaining,
                          0, CancelReason.SELF_TRADE)
                taker.remaining = 0
                return
            qty = min(maker.remaining, taker.remaining)
            maker.remaining -= qty
            maker.filled += qty
            taker.remaining -= qty
            taker.filled += qty
            if not maker.remaining:
                series.resting.remove(maker)
            series.trades += 1
            notional = maker.price * qty * series.spec.lot_tick_value_micros
            maker_fee = div_half_even(notional * series.spec.maker_fee_ppm, PPM)
            taker_fee = div_half_even(notional * series.spec.taker_fee_ppm, PPM)
            self.emit(Trade, series.spec.symbol, series.trades, maker.price, qty, taker.side, maker.order_id,
                      maker.account_id, taker.order_id, taker.account_id, maker.remaining, taker.remaining,
                      maker_fee, taker_fee)
            for account, signed in ((maker.account_id, qty if maker.side == BUY else -qty),
                                    (taker.account_id, qty if taker.side == BUY else -qty)):
                self.fill_position(self.position(account, series.spec.symbol), signed, maker.price)
            for account, fee in ((maker.account_id, maker_fee), (taker.account_id, taker_fee)):
                self.cash[account] -= fee
                self.cash[FEES] += fee
        if taker.remaining:
            if can_rest:
                taker.priority = self.next_priority
                self.next_priority += 1
                series.resting.append(taker)
            else:
                taker.cancelled += taker.remaining
                self.emit(OrderCancelled, taker.order_id, taker.account_id, taker.symbol, taker.side, taker.remaining,
                          0, CancelReason.IOC_REMAINDER)
                taker.remaining = 0

    @staticmethod
    def fill_position(position: RefPosition, signed: int, price: int) -> None:
        old = position.lots
        new = old + signed
        if old == 0 or (old > 0) == (signed > 0):
            position.cost += price * abs(signed)
        elif new == 0:
            position.cost = 0
        elif (new > 0) == (old > 0):
            position.cost -= div_half_even(position.cost * abs(signed), abs(old))
        else:
            position.cost = price * abs(new)
        position.lots = new

    def owned(self, c: CancelOrder | AmendOrder, order_id: int | None, cid: str | None) -> RefOrder | None:
        order = None
        if order_id is not None:
            order = self.find(order_id)
        elif cid is not None and (c.account_id, cid) in self.client_orders:
            order = self.find(self.client_orders[(c.account_id, cid)][1])
        if order is None or order.account_id != c.account_id:
            self.reject(c, c.account_id, RejectCode.ORDER_NOT_OPEN, order_id, cid)
            return None
        return order

    def do_CancelOrder(self, c: CancelOrder) -> None:
        if (c.order_id is None) == (c.client_order_id is None):
            return self.reject(c, c.account_id, RejectCode.INVALID_ORDER_REFERENCE)
        order = self.owned(c, c.order_id, c.client_order_id)
        if order is not None:
            self.remove(order, CancelReason.REQUESTED)

    def do_MassCancel(self, c: MassCancel) -> None:
        if c.account_id not in self.enabled:
            return self.reject(c, c.account_id, RejectCode.UNKNOWN_ACCOUNT)
        if c.side is not None and c.side not in (BUY, SELL):
            return self.reject(c, c.account_id, RejectCode.INVALID_SIDE)
        victims = [o for o in self.live_orders() if o.account_id == c.account_id
                   and (c.symbol is None or o.symbol == c.symbol) and (c.side is None or o.side == c.side)]
        for order in victims:
            self.remove(order, CancelReason.REQUESTED)
        self.emit(MassCancelDone, c.account_id, c.symbol, c.side, len(victims))

    def do_AmendOrder(self, c: AmendOrder) -> None:
        if (c.order_id is None) == (c.client_order_id is None):
            return self.reject(c, c.account_id, RejectCode.INVALID_ORDER_REFERENCE)
        order = self.owned(c, c.order_id, c.client_order_id)
        if order is None:
            return
        series = self.series[order.symbol]
        price = order.price if c.price_ticks is None else c.price_ticks
        qty = order.remaining if c.qty_lots is None else c.qty_lots
        code = None
        if c.price_ticks is None and c.qty_lots is None:
            code = RejectCode.INVALID_AMEND
        elif series.halted and not (price == order.price and type(qty) is int and 0 < qty < order.remaining):
            code = RejectCode.SERIES_HALTED
        elif type(qty) is not int or qty <= 0:
            code = RejectCode.INVALID_QUANTITY
        elif qty > series.spec.max_order_lots or (qty > order.remaining
                                                    and order.filled + qty > series.spec.max_order_lots):
            code = RejectCode.ORDER_TOO_LARGE
        elif type(price) is not int or price <= 0:
            code = RejectCode.INVALID_PRICE
        elif not series.low <= price <= series.high:
            code = RejectCode.PRICE_OUTSIDE_BAND
        elif price == order.price and qty == order.remaining:
            code = RejectCode.AMEND_NO_CHANGE
        elif not self.enabled[order.account_id]:
            code = RejectCode.ACCOUNT_DISABLED
        elif order.post_only and price != order.price and self.crosses(series, order.side, price):
            code = RejectCode.POST_ONLY_WOULD_TAKE
        elif qty > order.remaining:
            extra = qty - order.remaining
            old_worst = self.worst(order.account_id, order.symbol)
            new_worst = self.worst(order.account_id, order.symbol, extra if order.side == BUY else 0,
                                   extra if order.side == SELL else 0)
            if new_worst > old_worst:
                if new_worst > series.spec.max_position_lots:
                    code = RejectCode.POSITION_LIMIT
                elif (self.margin(order.account_id) + series.im_per_lot * (new_worst - old_worst)
                      > self.cash[order.account_id]):
                    code = RejectCode.INSUFFICIENT_MARGIN
        if code is not None:
            return self.reject(c, c.account_id, code, order.order_id, order.client_order_id)
        if price == order.price and qty < order.remaining:
            order.cancelled += order.remaining - qty
            order.remaining = qty
            self.emit(OrderAmended, order.order_id, order.account_id, order.symbol, order.side, price, qty,
                      order.quantity, True)
            return
        series.resting.remove(order)
        if qty < order.remaining:
            order.cancelled += order.remaining - qty
        else:
            order.quantity += qty - order.remaining
        order.remaining = qty
        order.price = price
        self.emit(OrderAmended, order.order_id, order.account_id, order.symbol, order.side, price, qty,
                  order.quantity, False)
        self.execute(series, order, True)

    # -- views for comparison --------------------------------------------------------------------
    def book(self, symbol: str, side: int) -> list[tuple[int, int, int]]:
        """(order_id, price, remaining) in priority order."""
        orders = sorted((o for o in self.series[symbol].resting if o.side == side),
                        key=lambda o: (-o.price if side == BUY else o.price, o.priority))
        return [(o.order_id, o.price, o.remaining) for o in orders]
