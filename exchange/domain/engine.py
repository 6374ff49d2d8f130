"""The core: a pure function of (state, command, time) -> (state', events).

`Engine.apply(command, ts_ns)` validates the command, checks risk, drives the series' order book
and returns the events. It never reads a clock, a random source or a file, never iterates an
unordered set, and uses integers for every amount, so replaying the same commands at the same times
rebuilds byte-identical state (see `exchange.domain.statehash`).

Rules are the rulebook's (§3–§5); numbers come from each series' `SeriesSpec` and the `EngineLimits`.
Order of checks for a new order is fixed and documented in `_place` so rejections are predictable.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from exchange.domain.account import Account, Exposure, book_fill
from exchange.domain.book import BUY, NO_ASK, NO_BID, OrderBook, Stamp
from exchange.domain.codes import CancelReason, RejectCode
from exchange.domain.commands import (
    AdvanceTime,
    AmendOrder,
    CancelAllAfter,
    CancelOrder,
    Command,
    CreateAccount,
    Deposit,
    HaltSeries,
    ListSeries,
    MassCancel,
    PlaceOrder,
    SetAccountEnabled,
    TerminateTrading,
    Withdraw,
)
from exchange.domain.events import (
    AccountCreated,
    AccountStatusChanged,
    CancelAllAfterSet,
    CashMoved,
    DeadMansSwitchFired,
    DuplicateOrder,
    Event,
    MassCancelDone,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    Rejected,
    SeriesHaltChanged,
    SeriesListed,
    Trade,
    TradingTerminated,
)
from exchange.domain.ledger import EXTERNAL, FEES, Ledger
from exchange.domain.order import Order, OrderType, StpMode, TimeInForce
from exchange.domain.spec import SeriesSpec

_new = tuple.__new__
_NEVER: Final = 2**62 - 1  # "no deadline pending" (year 2116 in ns; below 2**62 mypyc keeps ints unboxed)

_REQUESTED = CancelReason.REQUESTED  # enum member lookups cost ~100 ns on 3.11: bind hot ones once
_LIMIT: Final = 0
_MARKET: Final = 1
_GTC: Final = 0
_GTD: Final = 1
_IOC: Final = 2
_FOK: Final = 3
assert tuple(OrderType) == (_LIMIT, _MARKET) and tuple(TimeInForce) == (_GTC, _GTD, _IOC, _FOK)
_SIDES = frozenset({0, 1})
_ORDER_TYPES = frozenset(int(t) for t in OrderType)
_TIFS = frozenset(int(t) for t in TimeInForce)
_STPS = frozenset(int(m) for m in StpMode)

CLIENT_ORDER_ID_LEN_MAX: Final = 64
ACCOUNT_ID_MAX: Final = 2**53  # fits JSON numbers exactly
CASH_MOVE_MICROS_MAX: Final = 10**15  # one billion USD in a single deposit or withdrawal
CANCEL_ALL_AFTER_MS_MAX: Final = 86_400_000  # a dead man's switch is armed for at most 24 hours
NS_PER_MS: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """Exchange-wide limits that are not per series."""

    max_open_orders_per_account: int = 1_000

    def __post_init__(self) -> None:
        assert self.max_open_orders_per_account > 0


class Series:
    """Engine-side state of one listed series: its spec, book, band and margin per lot."""

    __slots__ = ("band_high_ticks", "band_low_ticks", "book", "halted", "im_per_lot_micros",
                 "reference_price_ticks", "spec", "terminated")

    def __init__(self, spec: SeriesSpec, stamp: Stamp) -> None:
        self.spec = spec
        self.book = OrderBook(spec, stamp)
        self.halted = False
        self.terminated = False
        self.reference_price_ticks = 0
        self.band_low_ticks = 0
        self.band_high_ticks = 0
        self.im_per_lot_micros = 0
        self.set_reference_price(spec.reference_price_ticks)

    def set_reference_price(self, price_ticks: int) -> None:
        self.reference_price_ticks = price_ticks
        self.band_low_ticks, self.band_high_ticks = self.spec.price_band_ticks(price_ticks)
        self.im_per_lot_micros = self.spec.initial_margin_per_lot_micros(price_ticks)


class Engine:
    def __init__(self, limits: EngineLimits | None = None, audit_every_commands: int = 0) -> None:
        """`audit_every_commands` > 0 runs the whole-state `audit()` after every that many commands
        (O(state) each time; the cheap invariants, like an uncrossed book, are checked always)."""
        assert audit_every_commands >= 0
        self.limits = limits or EngineLimits()
        self.audit_every_commands = audit_every_commands
        self.commands_applied = 0
        self.stamp = Stamp()
        self.series: dict[str, Series] = {}
        self.accounts: dict[int, Account] = {}
        self.ledger = Ledger()
        self.orders: dict[int, Order] = {}      # every live order, by id
        self.next_order_id = 1
        self.client_orders: dict[tuple[int, str], tuple[PlaceOrder, int, tuple[Event, ...]]] = {}
        self._expiries: list[tuple[int, int]] = []        # (expire_ts_ns, order_id), lazy
        self._terminations: list[tuple[int, str]] = []    # (trading_end_ns, symbol)
        self._dead_mans: list[tuple[int, int]] = []       # (cancel_all_at_ns, account_id), lazy
        self._next_deadline_ns = _NEVER
        self._handlers: dict[type, Callable[[Any, list[Any]], None]] = {
            CreateAccount: self._create_account,
            Deposit: self._deposit,
            Withdraw: self._withdraw,
            SetAccountEnabled: self._set_account_enabled,
            ListSeries: self._list_series,
            HaltSeries: self._halt_series,
            TerminateTrading: self._terminate_trading,
            PlaceOrder: self._place,
            CancelOrder: self._cancel,
            AmendOrder: self._amend,
            MassCancel: self._mass_cancel,
            AdvanceTime: self._advance_time,
            CancelAllAfter: self._cancel_all_after,
        }

    # -- entry point -------------------------------------------------------------------------
    def apply(self, command: Command, ts_ns: int) -> list[Event]:
        """Apply one command at time `ts_ns` (ns since the epoch, UTC, never decreasing)."""
        # Caller bugs (not bad input, which gets a Rejected event) raise before anything changes.
        handler = self._handlers.get(type(command))
        if handler is None:
            raise TypeError(f"not a command: {command!r}")
        stamp = self.stamp
        if ts_ns < stamp.ts_ns:
            raise ValueError(f"time went backwards: {ts_ns} < {stamp.ts_ns}")
        stamp.ts_ns = ts_ns
        out: list[Any] = []
        if ts_ns >= self._next_deadline_ns:
            self._run_deadlines(ts_ns, out)
        handler(command, out)
        self.commands_applied += 1
        if self.audit_every_commands and self.commands_applied % self.audit_every_commands == 0:
            self.audit()
        return out

    # -- helpers -----------------------------------------------------------------------------
    def _reject(self, out: list[Any], command: object, account_id: int | None, code: RejectCode,
                message: str, order_id: int | None = None, client_order_id: str | None = None) -> None:
        stamp = self.stamp
        stamp.seq += 1
        out.append(Rejected(stamp.seq, stamp.ts_ns, type(command).__name__, account_id, code, message,
                            order_id, client_order_id))

    def _emit(self, out: list[Any], event_type: type, *fields: object) -> None:
        stamp = self.stamp
        stamp.seq += 1
        out.append(_new(event_type, (stamp.seq, stamp.ts_ns, *fields)))

    def _schedule(self, deadline_ns: int) -> None:
        self._next_deadline_ns = min(self._next_deadline_ns, deadline_ns)

    @property
    def next_deadline_ns(self) -> int:
        """The earliest time (ns) at which a command, `AdvanceTime` if nothing else, has work to do
        before its own: a GTD expiry, a trading termination or a dead man's switch. A large sentinel
        (year 2116) when none is pending.

        Deadlines are kept lazily, so this may be the time of an entry that has become moot (a GTD
        order cancelled since, a switch re-armed or disarmed): a command at that time then does
        nothing extra and the next deadline moves on. It is never later than a real deadline."""
        return self._next_deadline_ns

    # -- accounts and cash -------------------------------------------------------------------
    def _create_account(self, cmd: CreateAccount, out: list[Any]) -> None:
        account_id = cmd.account_id
        if type(account_id) is not int or not 0 < account_id <= ACCOUNT_ID_MAX:
            self._reject(out, cmd, None, RejectCode.INVALID_ACCOUNT_ID,
                         f"account id must be an integer in 1..{ACCOUNT_ID_MAX}")
            return
        if account_id in self.accounts:
            self._reject(out, cmd, account_id, RejectCode.ACCOUNT_EXISTS,
                         f"account {account_id} already exists")
            return
        self.accounts[account_id] = Account(account_id)
        self.ledger.open(account_id)
        self._emit(out, AccountCreated, account_id)

    def _cash_checks(self, cmd: Deposit | Withdraw, out: list[Any]) -> Account | None:
        account = self.accounts.get(cmd.account_id)
        if account is None:
            self._reject(out, cmd, cmd.account_id, RejectCode.UNKNOWN_ACCOUNT,
                         f"no account {cmd.account_id}")
            return None
        amount = cmd.amount_micros
        if type(amount) is not int or not 0 < amount <= CASH_MOVE_MICROS_MAX:
            self._reject(out, cmd, cmd.account_id, RejectCode.INVALID_AMOUNT,
                         f"amount must be a whole number of micro-dollars in 1..{CASH_MOVE_MICROS_MAX}")
            return None
        return account

    def _deposit(self, cmd: Deposit, out: list[Any]) -> None:
        if self._cash_checks(cmd, out) is None:
            return
        self.ledger.transfer(EXTERNAL, cmd.account_id, cmd.amount_micros)
        self._emit(out, CashMoved, "deposit", EXTERNAL, cmd.account_id, cmd.amount_micros,
                   self.ledger.balances[cmd.account_id])

    def _withdraw(self, cmd: Withdraw, out: list[Any]) -> None:
        account = self._cash_checks(cmd, out)
        if account is None:
            return
        cash = self.ledger.balances[cmd.account_id]
        if cash - cmd.amount_micros < account.margin_micros:
            self._reject(out, cmd, cmd.account_id, RejectCode.INSUFFICIENT_FUNDS,
                         f"withdrawing {cmd.amount_micros} micro-USD would leave {cash - cmd.amount_micros}"
                         f", below the required margin {account.margin_micros}")
            return
        self.ledger.transfer(cmd.account_id, EXTERNAL, cmd.amount_micros)
        self._emit(out, CashMoved, "withdrawal", cmd.account_id, EXTERNAL, cmd.amount_micros,
                   self.ledger.balances[cmd.account_id])

    def _cancel_all_after(self, cmd: CancelAllAfter, out: list[Any]) -> None:
        """Arm (deadline = now + timeout), re-arm (replaces the deadline) or, with 0, disarm the
        account's dead man's switch. Allowed on a disabled account too."""
        account = self.accounts.get(cmd.account_id)
        if account is None:
            self._reject(out, cmd, cmd.account_id, RejectCode.UNKNOWN_ACCOUNT, f"no account {cmd.account_id}")
            return
        timeout_ms = cmd.timeout_ms
        if type(timeout_ms) is not int or not 0 <= timeout_ms <= CANCEL_ALL_AFTER_MS_MAX:
            self._reject(out, cmd, cmd.account_id, RejectCode.INVALID_TIMEOUT,
                         f"timeout must be a whole number of milliseconds in 0..{CANCEL_ALL_AFTER_MS_MAX}")
            return
        if timeout_ms == 0:
            account.cancel_all_at_ns = 0  # its heap entry, if any, is now stale and skipped
        else:
            deadline_ns = self.stamp.ts_ns + timeout_ms * NS_PER_MS
            account.cancel_all_at_ns = deadline_ns
            dead_mans = self._dead_mans
            heapq.heappush(dead_mans, (deadline_ns, account.account_id))
            self._schedule(deadline_ns)
            if len(dead_mans) > 2 * len(self.accounts) + 64:
                # Heartbeats re-arm often with long timeouts: drop the stale entries so the heap stays
                # O(accounts). Depends on state only, so a replay compacts at the same command.
                self._dead_mans = [(a.cancel_all_at_ns, a.account_id) for a in self.accounts.values()
                                   if a.cancel_all_at_ns]
                heapq.heapify(self._dead_mans)
        self._emit(out, CancelAllAfterSet, account.account_id, account.cancel_all_at_ns)

    def _fire_dead_mans_switch(self, account: Account, out: list[Any]) -> None:
        """Cancel all the account's open orders, in order id order, and disarm its switch."""
        victims = sorted(account.orders.values(), key=lambda o: o.order_id)
        for order in victims:
            self._cancel_resting(order, CancelReason.DEAD_MANS_SWITCH, out)
        account.cancel_all_at_ns = 0
        self._emit(out, DeadMansSwitchFired, account.account_id, len(victims))

    def _set_account_enabled(self, cmd: SetAccountEnabled, out: list[Any]) -> None:
        account = self.accounts.get(cmd.account_id)
        if account is None:
            self._reject(out, cmd, cmd.account_id, RejectCode.UNKNOWN_ACCOUNT, f"no account {cmd.account_id}")
            return
        enabled = bool(cmd.enabled)
        if not enabled:
            for order in list(account.orders.values()):
                self._cancel_resting(order, CancelReason.ACCOUNT_DISABLED, out)
        account.enabled = enabled
        self._emit(out, AccountStatusChanged, account.account_id, enabled)

    # -- series ------------------------------------------------------------------------------
    def _list_series(self, cmd: ListSeries, out: list[Any]) -> None:
        spec = cmd.spec
        if spec.symbol in self.series:
            self._reject(out, cmd, None, RejectCode.SERIES_ALREADY_LISTED, f"{spec.symbol} is already listed")
            return
        if spec.trading_end_ns <= self.stamp.ts_ns:
            self._reject(out, cmd, None, RejectCode.TRADING_TERMINATED,
                         f"{spec.symbol}: trading would already have terminated")
            return
        self.series[spec.symbol] = Series(spec, self.stamp)
        heapq.heappush(self._terminations, (spec.trading_end_ns, spec.symbol))
        self._schedule(spec.trading_end_ns)
        self._emit(out, SeriesListed, spec)

    def _open_series(self, cmd: object, symbol: str, out: list[Any]) -> Series | None:
        series = self.series.get(symbol)
        if series is None:
            self._reject(out, cmd, None, RejectCode.UNKNOWN_SERIES, f"no listed series {symbol!r}")
            return None
        if series.terminated:
            self._reject(out, cmd, None, RejectCode.TRADING_TERMINATED, f"trading in {symbol} has terminated")
            return None
        return series

    def _halt_series(self, cmd: HaltSeries, out: list[Any]) -> None:
        series = self._open_series(cmd, cmd.symbol, out)
        if series is None:
            return
        series.halted = bool(cmd.halted)
        self._emit(out, SeriesHaltChanged, cmd.symbol, series.halted)

    def _terminate_trading(self, cmd: TerminateTrading, out: list[Any]) -> None:
        series = self._open_series(cmd, cmd.symbol, out)
        if series is not None:
            self._terminate(series, out)

    def _terminate(self, series: Series, out: list[Any]) -> None:
        book = series.book
        resting = [*book.orders(BUY), *book.orders(1 - BUY)]
        resting.sort(key=lambda o: o.order_id)  # cancel in id order: deterministic, easy to follow
        for order in resting:
            self._cancel_resting(order, CancelReason.TRADING_TERMINATED, out)
        series.terminated = True
        self._emit(out, TradingTerminated, series.spec.symbol)

    # -- time --------------------------------------------------------------------------------
    def _advance_time(self, cmd: AdvanceTime, out: list[Any]) -> None:
        """Deadlines already ran in `apply`; nothing else to do."""

    def _run_deadlines(self, now_ns: int, out: list[Any]) -> None:
        """Run every deadline at or before `now_ns`, oldest first: GTD expiries, trading terminations
        and dead man's switches.

        Ties at the same nanosecond: GTD expiries first, then trading terminations, then dead man's
        switches (an order's own instruction, then the series', then the account-wide safety net);
        within one kind by order id, symbol or account id (the heaps' tuple order). Entries made moot
        since they were pushed (a cancelled GTD order, a re-armed or disarmed switch) are skipped.
        """
        expiries, terminations, dead_mans = self._expiries, self._terminations, self._dead_mans
        while True:
            due_ns, kind = now_ns + 1, -1  # strict < below: on a tie the earlier kind wins
            if expiries and expiries[0][0] < due_ns:
                due_ns, kind = expiries[0][0], 0
            if terminations and terminations[0][0] < due_ns:
                due_ns, kind = terminations[0][0], 1
            if dead_mans and dead_mans[0][0] < due_ns:
                due_ns, kind = dead_mans[0][0], 2
            if kind == 0:
                _, order_id = heapq.heappop(expiries)
                order = self.orders.get(order_id)
                if order is not None and order.expire_ts_ns == due_ns:
                    account = self.accounts[order.account_id]
                    series = self.series[order.symbol]
                    series.book.expire(order, out)
                    self._after_book(account, series, out, len(out) - 1)
            elif kind == 1:
                _, symbol = heapq.heappop(terminations)
                series = self.series[symbol]
                if not series.terminated:
                    self._terminate(series, out)
            elif kind == 2:
                _, account_id = heapq.heappop(dead_mans)
                account = self.accounts[account_id]
                if account.cancel_all_at_ns == due_ns:
                    self._fire_dead_mans_switch(account, out)
            else:
                break
        self._next_deadline_ns = min(expiries[0][0] if expiries else _NEVER,
                                     terminations[0][0] if terminations else _NEVER,
                                     dead_mans[0][0] if dead_mans else _NEVER)

    # -- orders ------------------------------------------------------------------------------
    def _place(self, cmd: PlaceOrder, out: list[Any]) -> None:
        """New order. Checks, in this order: client order id (so that a retry of an accepted
        order always gets the original result, even once the series halted), account, series,
        enums, quantity, price/type, time in force, post-only, open orders, position, margin."""
        (account_id, symbol, side, qty, price, order_type, tif, post_only, stp, client_order_id,
         expire_ts_ns) = cmd
        if client_order_id is not None:
            if (type(client_order_id) is not str or not 0 < len(client_order_id) <= CLIENT_ORDER_ID_LEN_MAX
                    or not client_order_id.isascii() or not client_order_id.isprintable()):
                self._reject(out, cmd, account_id, RejectCode.INVALID_CLIENT_ORDER_ID,
                             f"client order id must be 1..{CLIENT_ORDER_ID_LEN_MAX} printable ASCII characters")
                return
            known = self.client_orders.get((account_id, client_order_id))
            if known is not None:
                original_cmd, original_id, original_events = known
                if original_cmd == cmd:
                    self._emit(out, DuplicateOrder, account_id, client_order_id, original_id, original_events)
                else:
                    self._reject(out, cmd, account_id, RejectCode.CLIENT_ORDER_ID_CONFLICT,
                                 f"client order id {client_order_id!r} was used for a different order",
                                 order_id=original_id, client_order_id=client_order_id)
                return
        account = self.accounts.get(account_id)
        if account is None or not account.enabled:
            code = RejectCode.UNKNOWN_ACCOUNT if account is None else RejectCode.ACCOUNT_DISABLED
            self._reject(out, cmd, account_id, code, f"account {account_id} cannot trade",
                         client_order_id=client_order_id)
            return
        series = self.series.get(symbol)
        if series is None or series.terminated or series.halted:
            if series is None:
                code, why = RejectCode.UNKNOWN_SERIES, "is not listed"
            elif series.terminated:
                code, why = RejectCode.TRADING_TERMINATED, "has terminated trading"
            else:
                code, why = RejectCode.SERIES_HALTED, "is halted"
            self._reject(out, cmd, account_id, code, f"series {symbol!r} {why}",
                         client_order_id=client_order_id)
            return
        spec = series.spec
        # The common case (a plain GTC limit inside the band) in one expression; anything else
        # goes through the full, readable validation that also says what is wrong.
        if not (order_type == _LIMIT and tif == _GTC and type(qty) is int and 0 < qty <= spec.max_order_lots
                and type(price) is int and series.band_low_ticks <= price <= series.band_high_ticks
                and expire_ts_ns is None and side in _SIDES and stp in _STPS):
            invalid, message = _validate_order(cmd, series, self.stamp.ts_ns)
            if invalid is not None:
                self._reject(out, cmd, account_id, invalid, message, client_order_id=client_order_id)
                return
        limit = price if order_type == _LIMIT else (
            series.band_high_ticks if side == BUY else series.band_low_ticks)
        assert limit is not None
        if post_only and series.book.crosses(side, limit):
            self._reject(out, cmd, account_id, RejectCode.POST_ONLY_WOULD_TAKE,
                         "post-only order would trade on arrival", client_order_id=client_order_id)
            return
        can_rest = tif in (_GTC, _GTD)
        if can_rest and len(account.orders) >= self.limits.max_open_orders_per_account:
            self._reject(out, cmd, account_id, RejectCode.OPEN_ORDER_LIMIT,
                         f"account has {len(account.orders)} open orders, the maximum",
                         client_order_id=client_order_id)
            return
        # Risk: the worst case if every open order on one side filled (rulebook §5).
        exposure = account.exposures.get(symbol)
        if exposure is None:
            exposure = account.exposures[symbol] = Exposure()
        pos = exposure.position_lots
        buys = exposure.open_buy_lots
        sells = exposure.open_sell_lots
        old_worst = max(abs(pos + buys), abs(pos - sells))
        if side == BUY:
            buys += qty
        else:
            sells += qty
        new_worst = max(abs(pos + buys), abs(pos - sells))
        if new_worst > old_worst:
            if new_worst > spec.max_position_lots:
                self._reject(out, cmd, account_id, RejectCode.POSITION_LIMIT,
                             f"worst-case position {new_worst} lots would exceed the limit "
                             f"{spec.max_position_lots}", client_order_id=client_order_id)
                return
            new_margin = series.im_per_lot_micros * new_worst
            required = account.margin_micros + new_margin - exposure.margin_micros
            cash = self.ledger.balances[account_id]
            if required > cash:
                self._reject(out, cmd, account_id, RejectCode.INSUFFICIENT_MARGIN,
                             f"required initial margin {required} micro-USD exceeds cash {cash}",
                             client_order_id=client_order_id)
                return
            account.margin_micros = required
            exposure.margin_micros = new_margin
        # Accepted: from here on the order exists and every step is an event.
        exposure.open_buy_lots = buys
        exposure.open_sell_lots = sells
        order_id = self.next_order_id
        self.next_order_id = order_id + 1
        order = Order(order_id, account_id, symbol, side, limit, qty, tif, post_only, stp, client_order_id,
                      expire_ts_ns)
        self.orders[order_id] = order
        account.orders[order_id] = order
        stamp = self.stamp
        stamp.seq += 1
        first = len(out)
        out.append(_new(OrderAccepted, (stamp.seq, stamp.ts_ns, order_id, account_id, symbol, side, order_type,
                                        price, qty, tif, post_only, stp, client_order_id, expire_ts_ns)))
        series.book.place(order, out, can_rest)
        if len(out) > first + 1:
            self._after_book(account, series, out, first + 1)
        if tif == _GTD and order.remaining_lots:
            assert expire_ts_ns is not None
            heapq.heappush(self._expiries, (expire_ts_ns, order_id))
            self._schedule(expire_ts_ns)
        if client_order_id is not None:
            self.client_orders[(account_id, client_order_id)] = (cmd, order_id, tuple(out[first:]))

    def _after_book(self, account: Account, series: Series, out: list[Any], start: int) -> None:
        """Apply the book's events from `out[start:]` to positions, open orders, margin and cash.

        Fills never raise required margin (an order's worst case already counted it), so nothing
        here can fail: it only moves quantities and fees. `account` is the command's account, the
        usual owner of cancels and the taker side of trades; others are looked up.
        """
        symbol = series.spec.symbol
        im = series.im_per_lot_micros
        accounts = self.accounts
        orders = self.orders
        ledger = self.ledger
        own_id = account.account_id
        for i in range(start, len(out)):
            event = out[i]
            kind = type(event)
            if kind is Trade:
                (_, _, _, _, price, qty, aggressor, maker_oid, maker_acct_id, taker_oid, taker_acct_id,
                 maker_rem, taker_rem, maker_fee, taker_fee) = event
                maker = account if maker_acct_id == own_id else accounts[maker_acct_id]
                taker = account if taker_acct_id == own_id else accounts[taker_acct_id]
                # Both accounts have an exposure here: it was created when their order was accepted.
                if aggressor == BUY:
                    book_fill(maker, maker.exposures[symbol], -qty, price, im)
                    book_fill(taker, taker.exposures[symbol], qty, price, im)
                else:
                    book_fill(maker, maker.exposures[symbol], qty, price, im)
                    book_fill(taker, taker.exposures[symbol], -qty, price, im)
                if maker_fee:
                    ledger.transfer(maker_acct_id, FEES, maker_fee)
                if taker_fee:
                    ledger.transfer(taker_acct_id, FEES, taker_fee)
                if not maker_rem:
                    del orders[maker_oid]
                    del maker.orders[maker_oid]
                if not taker_rem:
                    del orders[taker_oid]
                    del taker.orders[taker_oid]
            elif kind is OrderCancelled or kind is OrderExpired:
                acct = account if event.account_id == own_id else accounts[event.account_id]
                lots = event.cancelled_lots if kind is OrderCancelled else event.expired_lots
                _release(acct.exposures[symbol], acct, event.side, lots, im)
                if kind is OrderExpired or not event.remaining_lots:
                    del orders[event.order_id]
                    del acct.orders[event.order_id]

    def _find_order(self, cmd: CancelOrder | AmendOrder, out: list[Any], order_id: int | None,
                    client_order_id: str | None = None) -> Order | None:
        order = None
        if order_id is not None:
            order = self.orders.get(order_id)
        elif client_order_id is not None:
            known = self.client_orders.get((cmd.account_id, client_order_id))
            order = self.orders.get(known[1]) if known is not None else None
        if order is None or order.account_id != cmd.account_id:
            # Unknown, closed and another account's orders look the same: ids do not leak.
            self._reject(out, cmd, cmd.account_id, RejectCode.ORDER_NOT_OPEN,
                         "no open order with this id for this account", order_id, client_order_id)
            return None
        return order

    def _cancel_resting(self, order: Order, reason: CancelReason, out: list[Any]) -> None:
        """Cancel a resting order's remainder and release its open quantity and margin."""
        series = self.series[order.symbol]
        lots = order.remaining_lots
        series.book.cancel(order, reason, out)
        account = self.accounts[order.account_id]
        _release(account.exposures[order.symbol], account, order.side, lots, series.im_per_lot_micros)
        del self.orders[order.order_id]
        del account.orders[order.order_id]

    def _cancel(self, cmd: CancelOrder, out: list[Any]) -> None:
        account_id, order_id, client_order_id = cmd
        if order_id is not None and client_order_id is None:  # the common case first
            order = self.orders.get(order_id)
            if order is not None and order.account_id == account_id:
                self._cancel_resting(order, _REQUESTED, out)
                return
        elif (order_id is None) == (client_order_id is None):
            self._reject(out, cmd, account_id, RejectCode.INVALID_ORDER_REFERENCE,
                         "give exactly one of order_id and client_order_id")
            return
        order = self._find_order(cmd, out, order_id, client_order_id)
        if order is not None:
            self._cancel_resting(order, _REQUESTED, out)

    def _mass_cancel(self, cmd: MassCancel, out: list[Any]) -> None:
        account = self.accounts.get(cmd.account_id)
        if account is None:
            self._reject(out, cmd, cmd.account_id, RejectCode.UNKNOWN_ACCOUNT, f"no account {cmd.account_id}")
            return
        if cmd.side is not None and cmd.side not in _SIDES:
            self._reject(out, cmd, cmd.account_id, RejectCode.INVALID_SIDE, "side must be buy or sell")
            return
        victims = [o for o in account.orders.values()
                   if (cmd.symbol is None or o.symbol == cmd.symbol) and (cmd.side is None or o.side == cmd.side)]
        for order in victims:
            self._cancel_resting(order, CancelReason.REQUESTED, out)
        self._emit(out, MassCancelDone, cmd.account_id, cmd.symbol, cmd.side, len(victims))

    def _amend(self, cmd: AmendOrder, out: list[Any]) -> None:
        if (cmd.order_id is None) == (cmd.client_order_id is None):
            self._reject(out, cmd, cmd.account_id, RejectCode.INVALID_ORDER_REFERENCE,
                         "give exactly one of order_id and client_order_id")
            return
        order = self._find_order(cmd, out, cmd.order_id, cmd.client_order_id)
        if order is None:
            return
        account = self.accounts[order.account_id]
        series = self.series[order.symbol]
        price = order.price_ticks if cmd.price_ticks is None else cmd.price_ticks
        qty = order.remaining_lots if cmd.qty_lots is None else cmd.qty_lots
        code, message = _validate_amend(cmd, order, series, price, qty)
        if code is None and not account.enabled:
            code, message = RejectCode.ACCOUNT_DISABLED, "account cannot trade"
        if code is None and order.post_only and price != order.price_ticks and series.book.crosses(order.side, price):
            code, message = RejectCode.POST_ONLY_WOULD_TAKE, "post-only order would trade at the new price"
        increase = qty - order.remaining_lots
        exposure = account.exposures[order.symbol]
        if code is None and increase > 0:
            pos = exposure.position_lots
            buys, sells = exposure.open_buy_lots, exposure.open_sell_lots
            old_worst = max(abs(pos + buys), abs(pos - sells))
            if order.side == BUY:
                buys += increase
            else:
                sells += increase
            new_worst = max(abs(pos + buys), abs(pos - sells))
            if new_worst > old_worst:
                required = account.margin_micros + series.im_per_lot_micros * new_worst - exposure.margin_micros
                if new_worst > series.spec.max_position_lots:
                    code, message = RejectCode.POSITION_LIMIT, (
                        f"worst-case position {new_worst} lots would exceed the limit {series.spec.max_position_lots}")
                elif required > self.ledger.balances[account.account_id]:
                    code, message = RejectCode.INSUFFICIENT_MARGIN, (
                        f"required initial margin {required} micro-USD exceeds cash")
        if code is not None:
            self._reject(out, cmd, cmd.account_id, code, message, order.order_id, order.client_order_id)
            return
        # Accepted: book the open quantity change first, as for a new order, then let the book act.
        delta = qty - order.remaining_lots
        if order.side == BUY:
            exposure.open_buy_lots += delta
        else:
            exposure.open_sell_lots += delta
        pos = exposure.position_lots
        margin = series.im_per_lot_micros * max(abs(pos + exposure.open_buy_lots),
                                                abs(pos - exposure.open_sell_lots))
        account.margin_micros += margin - exposure.margin_micros
        exposure.margin_micros = margin
        first = len(out)
        live = series.book.amend(order, price, qty, out)
        if live is not order:
            self.orders[live.order_id] = live
            account.orders[live.order_id] = live
        # out[first] is OrderAmended (already booked above); trades or cancels may follow it.
        if len(out) > first + 1:
            self._after_book(account, series, out, first + 1)

    # -- inspection (not used on the hot path) ----------------------------------------------
    def cash_micros(self, account_id: int) -> int:
        return self.ledger.balances[account_id]

    def top_of_book(self, symbol: str) -> tuple[int | None, int | None]:
        """(best bid, best ask) in ticks, None for an empty side. O(1)."""
        book = self.series[symbol].book
        return (book.best_bid if book.best_bid != NO_BID else None,
                book.best_ask if book.best_ask != NO_ASK else None)

    def book_levels(self, symbol: str) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        book = self.series[symbol].book
        return book.levels(BUY), book.levels(1 - BUY)

    def audit(self) -> None:
        """Check every invariant over the whole state; raises `InvariantViolation`. O(state)."""
        from exchange.domain.audit import audit_engine

        audit_engine(self)


def _release(exposure: Exposure, account: Account, side: int, lots: int, im_per_lot_micros: int) -> None:
    """`lots` of an open order left the book without trading: margin follows (it can only fall)."""
    if side == BUY:
        exposure.open_buy_lots -= lots
    else:
        exposure.open_sell_lots -= lots
    pos = exposure.position_lots
    margin = im_per_lot_micros * max(abs(pos + exposure.open_buy_lots), abs(pos - exposure.open_sell_lots))
    account.margin_micros += margin - exposure.margin_micros
    exposure.margin_micros = margin


def _validate_order(cmd: PlaceOrder, series: Series, now_ns: int) -> tuple[RejectCode | None, str]:
    """Static checks of a new order against its series. Returns (code, message) or (None, "")."""
    side, qty, price, order_type, tif = cmd.side, cmd.qty_lots, cmd.price_ticks, cmd.order_type, cmd.tif
    if side not in _SIDES:
        return RejectCode.INVALID_SIDE, "side must be buy or sell"
    if order_type not in _ORDER_TYPES:
        return RejectCode.INVALID_ORDER_TYPE, "order type must be limit or market"
    if tif not in _TIFS:
        return RejectCode.INVALID_TIME_IN_FORCE, "time in force must be gtc, gtd, ioc or fok"
    if cmd.stp not in _STPS:
        return RejectCode.INVALID_STP_MODE, "stp must be cancel_newest, cancel_oldest, cancel_both or decrement"
    if type(qty) is not int or qty <= 0:
        return RejectCode.INVALID_QUANTITY, "quantity must be a positive whole number of lots"
    if qty > series.spec.max_order_lots:
        return RejectCode.ORDER_TOO_LARGE, f"quantity {qty} lots exceeds the maximum {series.spec.max_order_lots}"
    if order_type == _LIMIT:
        if type(price) is not int or price <= 0:
            return RejectCode.INVALID_PRICE, "a limit order needs a positive price in whole ticks"
        if not series.band_low_ticks <= price <= series.band_high_ticks:
            return RejectCode.PRICE_OUTSIDE_BAND, (
                f"price {price} ticks is outside the band {series.band_low_ticks}..{series.band_high_ticks}")
    else:
        if price is not None:
            return RejectCode.PRICE_NOT_ALLOWED, "a market order takes no price"
        if tif not in (_IOC, _FOK):
            return RejectCode.INVALID_TIME_IN_FORCE, "a market order is IOC or FOK"
    if cmd.post_only and (order_type != _LIMIT or (tif not in (_GTC, _GTD))):
        return RejectCode.INVALID_TIME_IN_FORCE, "post-only needs a GTC or GTD limit order"
    expire = cmd.expire_ts_ns
    if tif == _GTD:
        if type(expire) is not int:
            return RejectCode.EXPIRE_TIME_REQUIRED, "a GTD order needs expire_ts_ns"
        if expire <= now_ns:
            return RejectCode.EXPIRE_TIME_IN_PAST, "expire time is not in the future"
    elif expire is not None:
        return RejectCode.EXPIRE_TIME_NOT_ALLOWED, "only GTD orders take an expire time"
    return None, ""


def _validate_amend(cmd: AmendOrder, order: Order, series: Series, price: int,
                    qty: int) -> tuple[RejectCode | None, str]:
    if cmd.price_ticks is None and cmd.qty_lots is None:
        return RejectCode.INVALID_AMEND, "give a new price, a new quantity, or both"
    if series.halted:
        return RejectCode.SERIES_HALTED, f"series {order.symbol} is halted"
    if type(qty) is not int or qty <= 0:
        return RejectCode.INVALID_QUANTITY, "new open quantity must be a positive whole number of lots"
    if qty > series.spec.max_order_lots:
        return RejectCode.ORDER_TOO_LARGE, f"quantity {qty} lots exceeds the maximum {series.spec.max_order_lots}"
    if type(price) is not int or price <= 0:
        return RejectCode.INVALID_PRICE, "price must be a positive whole number of ticks"
    if not series.band_low_ticks <= price <= series.band_high_ticks:
        return RejectCode.PRICE_OUTSIDE_BAND, (
            f"price {price} ticks is outside the band {series.band_low_ticks}..{series.band_high_ticks}")
    if price == order.price_ticks and qty == order.remaining_lots:
        return RejectCode.AMEND_NO_CHANGE, "the order already has this price and quantity"
    return None, ""
