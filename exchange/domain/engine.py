"""The core: a pure function of (state, command, time) -> (state', events).

`Engine.apply(command, ts_ns)` validates the command, checks risk, drives the series' order book
and returns the events. It never reads a clock, a random source or a file, never iterates an
unordered set, and uses integers for every amount, so replaying the same commands at the same times
rebuilds byte-identical state (see `exchange.domain.statehash`).

Rules are the rulebook's (§3–§8); numbers come from each series' `SeriesSpec` and the `EngineLimits`.
Order of checks for a new order is fixed and documented in `_place` so rejections are predictable.

Settlement (§6–§8) enters as operator commands carrying amounts a batch job computed from the journal
and the probe's telemetry (`SettleDaily`, `AssignDeliveries`, `SettleDelivery`): the core checks them,
posts them through the ledger and keeps what it posted, keyed by each job's input digest, so that a
rerun posts nothing twice and an amendment posts only the differences.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from exchange.domain.account import Account, Exposure, book_fill, fill_position
from exchange.domain.book import BUY, NO_ASK, NO_BID, OrderBook, Stamp
from exchange.domain.codes import CancelReason, RejectCode
from exchange.domain.commands import (
    AdvanceTime,
    AmendOrder,
    AssignDeliveries,
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
    SettleDaily,
    SettleDelivery,
    TerminateTrading,
    Withdraw,
)
from exchange.domain.delivery import assign_deliveries
from exchange.domain.events import (
    AccountCreated,
    AccountStatusChanged,
    CancelAllAfterSet,
    CashMoved,
    CashMoveDuplicate,
    DailySettlement,
    DeadMansSwitchFired,
    DeliveriesAlreadyAssigned,
    DeliveriesAssigned,
    DeliveryAssigned,
    DeliverySettled,
    DeliverySettlementDuplicate,
    DuplicateOrder,
    Event,
    MassCancelDone,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    RejectDetails,
    Rejected,
    SeriesHaltChanged,
    SeriesListed,
    SettlementDuplicate,
    Trade,
    TradingTerminated,
)
from exchange.domain.ledger import EXTERNAL, FEES, SETTLEMENT, Ledger
from exchange.domain.order import Order, OrderType, StpMode, TimeInForce
from exchange.domain.spec import SeriesSpec
from exchange.domain.units import micros_to_usd, ticks_to_price, usd_text

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
CASH_REFERENCE_LEN_MAX: Final = 128
# How long the core remembers a client order id (for retries to be exactly once) and a cash move's
# reference: 24 h of command time, like the API's Idempotency-Keys. The rule: a PlaceOrder at time t
# finds a client order id forgotten when its order was placed at or before t - 24 h and is closed (an
# open order keeps its id: cancel and amend by client id need it). So memory and snapshots hold one day
# of ids plus the open orders', never every order ever placed.
IDEMPOTENCY_WINDOW_NS: Final = 24 * 3_600 * 1_000_000_000
ACCOUNT_ID_MAX: Final = 2**53  # fits JSON numbers exactly
CASH_MOVE_MICROS_MAX: Final = 10**15  # one billion USD in a single deposit or withdrawal
CANCEL_ALL_AFTER_MS_MAX: Final = 86_400_000  # a dead man's switch is armed for at most 24 hours
NS_PER_MS: Final = 1_000_000
NS_PER_DAY: Final = 86_400 * 1_000_000_000
DIGEST_LEN: Final = 64  # a settlement job's input digest: SHA-256 as lowercase hex
MICRO_GPUH_PER_GPUH: Final = 1_000_000
_HEX: Final = frozenset("0123456789abcdef")


def settlement_day_ns(ts_ns: int) -> int:
    """00:00 UTC of the day of `ts_ns`."""
    return ts_ns - ts_ns % NS_PER_DAY


class Settlement(NamedTuple):
    """One day's settlement of a series as last posted: its price, the job's digest and the variation
    margin per account (ascending account id) that the ledger now holds for that day."""

    price_ticks: int
    digest: str
    postings: tuple[tuple[int, int], ...]


class DeliverySettlement(NamedTuple):
    """What a delivery was settled with, as last posted (an amendment replaces it)."""

    digest: str
    effective_micro_gpuh: int
    invoice_micros: int
    damages_micros: int
    default: bool


class Delivery(NamedTuple):
    """One delivery obligation (rulebook §7), `settlement` None until `SettleDelivery`."""

    delivery_id: str             # "<symbol>/<n>"
    symbol: str
    seller: int
    buyer: int
    lots: int
    gpus: int                    # G = lots × GPUs per lot
    gpu_hours: int               # Q = G × hours of the delivery period
    fsp_ticks: int               # final settlement price
    settlement: DeliverySettlement | None = None


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """Exchange-wide limits that are not per series."""

    max_open_orders_per_account: int = 1_000

    def __post_init__(self) -> None:
        assert self.max_open_orders_per_account > 0


class Series:
    """Engine-side state of one listed series: its spec, book, band and margin per lot, its daily
    settlements and, once assigned, its deliveries' ids."""

    __slots__ = ("band_high_ticks", "band_low_ticks", "book", "delivery_ids", "halted", "im_per_lot_micros",
                 "reference_price_ticks", "settlements", "spec", "terminated")

    def __init__(self, spec: SeriesSpec, stamp: Stamp) -> None:
        self.spec = spec
        self.book = OrderBook(spec, stamp)
        self.halted = False
        self.terminated = False
        self.settlements: dict[int, Settlement] = {}      # by settlement date (00:00 UTC, ns)
        self.delivery_ids: tuple[str, ...] | None = None  # None until AssignDeliveries
        self.reference_price_ticks = 0
        self.band_low_ticks = 0
        self.band_high_ticks = 0
        self.im_per_lot_micros = 0
        self.set_reference_price(spec.reference_price_ticks)

    def set_reference_price(self, price_ticks: int) -> None:
        self.reference_price_ticks = price_ticks
        self.band_low_ticks, self.band_high_ticks = self.spec.price_band_ticks(price_ticks)
        self.im_per_lot_micros = self.spec.initial_margin_per_lot_micros(price_ticks)

    @property
    def final_settlement_day_ns(self) -> int:
        """The settlement date whose price is the final settlement price: the day trading terminates."""
        return settlement_day_ns(self.spec.trading_end_ns)


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
        # Every key of `client_orders` is in exactly one of: the queue of ids inside the window, by
        # placement (placed ts, order id, key), or `lingering`: past the window with its order still
        # open (order id -> key), forgotten when the order closes.
        self.client_order_queue: deque[tuple[int, int, tuple[int, str]]] = deque()
        self.client_orders_lingering: dict[int, tuple[int, str]] = {}
        # Cash moves by (account, reference): the command, when it was applied; oldest first.
        self.cash_references: dict[tuple[int, str], tuple[Deposit | Withdraw, int]] = {}
        self.deliveries: dict[str, Delivery] = {}  # by delivery id, in assignment order
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
            SettleDaily: self._settle_daily,
            AssignDeliveries: self._assign_deliveries,
            SettleDelivery: self._settle_delivery,
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
                message: str, order_id: int | None = None, client_order_id: str | None = None,
                details: RejectDetails = ()) -> None:
        stamp = self.stamp
        stamp.seq += 1
        out.append(Rejected(stamp.seq, stamp.ts_ns, type(command).__name__, account_id, code, message,
                            order_id, client_order_id, details))

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

        Deadlines are kept lazily, so this may be the time of a GTD order cancelled since: a command at
        that time then does nothing extra and the next deadline moves on. A dead man's switch re-armed
        or disarmed is never the answer (`_drop_stale_dead_mans`). It is never later than a real
        deadline."""
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
                         f"amount must be more than $0 and at most {usd_text(CASH_MOVE_MICROS_MAX)}, in whole "
                         "micro-dollars", details=(("max", _usd(CASH_MOVE_MICROS_MAX)),))
            return None
        return account

    def _known_reference(self, cmd: Deposit | Withdraw, out: list[Any]) -> bool:
        """True if `cmd` was handled here: a retry of a move made within the window (nothing moves), a
        reference used for another move, or a malformed reference. Forgets references past the window."""
        references = self.cash_references
        horizon = self.stamp.ts_ns - IDEMPOTENCY_WINDOW_NS
        while references:   # insertion order is time order (command times never decrease)
            oldest = next(iter(references))
            if references[oldest][1] > horizon:
                break
            del references[oldest]
        reference = cmd.reference
        if reference is None:
            return False
        if (type(reference) is not str or not 0 < len(reference) <= CASH_REFERENCE_LEN_MAX
                or not reference.isascii() or not reference.isprintable()):
            self._reject(out, cmd, cmd.account_id, RejectCode.INVALID_REFERENCE,
                         f"a cash move's reference is 1..{CASH_REFERENCE_LEN_MAX} printable ASCII characters")
            return True
        known = references.get((cmd.account_id, reference))
        if known is None:
            return False
        if type(known[0]) is type(cmd) and known[0] == cmd:   # (a Withdraw equals a Deposit as a tuple)
            self._emit(out, CashMoveDuplicate, cmd.account_id, reference)
        else:
            self._reject(out, cmd, cmd.account_id, RejectCode.REFERENCE_CONFLICT,
                         f"reference {reference!r} was used for another cash move of account {cmd.account_id}")
        return True

    def _remember_reference(self, cmd: Deposit | Withdraw) -> None:
        if cmd.reference is not None:
            self.cash_references[(cmd.account_id, cmd.reference)] = (cmd, self.stamp.ts_ns)

    def _deposit(self, cmd: Deposit, out: list[Any]) -> None:
        if self._known_reference(cmd, out) or self._cash_checks(cmd, out) is None:
            return
        self._remember_reference(cmd)
        self.ledger.transfer(EXTERNAL, cmd.account_id, cmd.amount_micros)
        self._emit(out, CashMoved, "deposit", EXTERNAL, cmd.account_id, cmd.amount_micros,
                   self.ledger.balances[cmd.account_id])

    def _withdraw(self, cmd: Withdraw, out: list[Any]) -> None:
        if self._known_reference(cmd, out):
            return
        account = self._cash_checks(cmd, out)
        if account is None:
            return
        cash = self.ledger.balances[cmd.account_id]
        if cash - cmd.amount_micros < account.margin_micros:
            available = cash - account.margin_micros
            self._reject(out, cmd, cmd.account_id, RejectCode.INSUFFICIENT_FUNDS,
                         f"withdrawing {usd_text(cmd.amount_micros)} would leave {usd_text(cash - cmd.amount_micros)}"
                         f" of cash, below the {usd_text(account.margin_micros)} of initial margin held: at most "
                         f"{usd_text(max(available, 0))} is available",
                         details=(("amount", _usd(cmd.amount_micros)), ("cash", _usd(cash)),
                                  ("margin_held", _usd(account.margin_micros)), ("available", _usd(available))))
            return
        self._remember_reference(cmd)
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
        self._drop_stale_dead_mans()
        self._emit(out, CancelAllAfterSet, account.account_id, account.cancel_all_at_ns)

    def _drop_stale_dead_mans(self) -> None:
        """Pop switch deadlines made moot (re-armed or disarmed since) off the top of the heap and
        recompute the next deadline: else the service would submit an AdvanceTime at a deadline that
        does nothing (a heartbeat re-arming every few seconds left one stale entry per beat)."""
        dead_mans, accounts = self._dead_mans, self.accounts
        while dead_mans and accounts[dead_mans[0][1]].cancel_all_at_ns != dead_mans[0][0]:
            heapq.heappop(dead_mans)
        self._next_deadline_ns = min(self._expiries[0][0] if self._expiries else _NEVER,
                                     self._terminations[0][0] if self._terminations else _NEVER,
                                     dead_mans[0][0] if dead_mans else _NEVER)

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
        self._drop_stale_dead_mans()

    # -- settlement (rulebook §6–§8) ---------------------------------------------------------
    def _settle_daily(self, cmd: SettleDaily, out: list[Any]) -> None:
        """Record a day's settlement price and post its variation margin (see `SettleDaily`).

        Checks, in this order, all before anything changes: series, fields (`invalid_settlement`),
        accounts, then the day's earlier settlement if any (same digest and content: duplicate; same
        digest, other content, or another digest without `amend`: conflict; the final settlement once
        deliveries are assigned: conflict). Then `DailySettlement`, and one `CashMoved` per account whose
        posted VM changes, in ascending account id. The reference price (band, margin) follows the
        latest settled day; every account's margin in the series is recomputed at the new price."""
        series = self.series.get(cmd.symbol) if type(cmd.symbol) is str else None
        if series is None:
            self._reject(out, cmd, None, RejectCode.UNKNOWN_SERIES, f"no listed series {cmd.symbol!r}")
            return
        problem = _settle_daily_problem(cmd, series, self.stamp.ts_ns)
        if problem:
            self._reject(out, cmd, None, RejectCode.INVALID_SETTLEMENT, problem)
            return
        postings = tuple((account_id, vm) for account_id, vm in cmd.postings)
        for account_id, _ in postings:
            if account_id not in self.accounts:
                self._reject(out, cmd, account_id, RejectCode.UNKNOWN_ACCOUNT, f"no account {account_id}")
                return
        symbol, date_ns, price, digest = cmd.symbol, cmd.date_ns, cmd.price_ticks, cmd.digest
        previous = series.settlements.get(date_ns)
        if previous is not None:
            if previous.digest == digest:
                if previous.price_ticks == price and previous.postings == postings:
                    self._emit(out, SettlementDuplicate, symbol, date_ns, digest)
                else:
                    self._reject(out, cmd, None, RejectCode.SETTLEMENT_CONFLICT,
                                 f"{symbol} {_day(date_ns)} was settled with digest {digest} and other content")
                return
            if not cmd.amend:
                self._reject(out, cmd, None, RejectCode.SETTLEMENT_CONFLICT,
                             f"{symbol} {_day(date_ns)} is already settled with another digest; "
                             f"send an amendment to correct it")
                return
            if series.delivery_ids is not None and date_ns == series.final_settlement_day_ns:
                self._reject(out, cmd, None, RejectCode.SETTLEMENT_CONFLICT,
                             f"{symbol}: deliveries were assigned at the final settlement price; it cannot change")
                return
        # Accepted: from here on nothing can fail.
        old = dict(previous.postings) if previous is not None else {}
        new = dict(postings)
        corrections = [(account_id, new.get(account_id, 0) - old.get(account_id, 0))
                       for account_id in sorted(old.keys() | new.keys())]
        corrections = [(account_id, delta) for account_id, delta in corrections if delta]
        self._emit(out, DailySettlement, symbol, date_ns, price, digest, len(corrections),
                   sum(delta for _, delta in corrections), previous is not None)
        ledger = self.ledger
        balances = ledger.balances
        for account_id, delta in corrections:
            if delta > 0:
                ledger.transfer(SETTLEMENT, account_id, delta)
                self._emit(out, CashMoved, "variation_margin", SETTLEMENT, account_id, delta, balances[account_id])
            else:
                ledger.transfer(account_id, SETTLEMENT, -delta)
                self._emit(out, CashMoved, "variation_margin", account_id, SETTLEMENT, -delta, balances[account_id])
        series.settlements[date_ns] = Settlement(price, digest, postings)
        if date_ns == max(series.settlements):
            self._reprice(series, price, out)

    def _reprice(self, series: Series, price_ticks: int, out: list[Any]) -> None:
        """New reference price: band and margin per lot follow, and every exposure's margin with them.

        Rulebook §4 (v2): no trade ever prints outside the band in force, so resting orders priced
        outside the new band are cancelled at once (`outside_band`, one event each, ascending order
        id) - left resting, a market order could take them at a price the band no longer allows, and
        that print would feed the next settlement price."""
        series.set_reference_price(price_ticks)
        symbol = series.spec.symbol
        im = series.im_per_lot_micros
        for account in self.accounts.values():
            exposure = account.exposures.get(symbol)
            if exposure is not None:
                margin = im * exposure.worst_lots()
                account.margin_micros += margin - exposure.margin_micros
                exposure.margin_micros = margin
        low, high = series.band_low_ticks, series.band_high_ticks
        book = series.book
        outside = [o for side in (BUY, 1 - BUY) for o in book.orders(side) if not low <= o.price_ticks <= high]
        outside.sort(key=lambda o: o.order_id)
        for order in outside:
            self._cancel_resting(order, CancelReason.OUTSIDE_BAND, out)

    def _assign_deliveries(self, cmd: AssignDeliveries, out: list[Any]) -> None:
        """Turn the open positions of a terminated series into deliveries at the final settlement price
        (rulebook §7, `exchange.domain.delivery.assign_deliveries`): `DeliveriesAssigned`, then one
        `DeliveryAssigned` per allocation. Positions move to zero (each allocation as a fill at the FSP
        for both sides) and their margin is released. A second call: `DeliveriesAlreadyAssigned`."""
        series = self.series.get(cmd.symbol) if type(cmd.symbol) is str else None
        if series is None:
            self._reject(out, cmd, None, RejectCode.UNKNOWN_SERIES, f"no listed series {cmd.symbol!r}")
            return
        symbol = series.spec.symbol
        if series.delivery_ids is not None:
            self._emit(out, DeliveriesAlreadyAssigned, symbol, len(series.delivery_ids))
            return
        if not series.terminated:
            self._reject(out, cmd, None, RejectCode.TRADING_NOT_TERMINATED, f"trading in {symbol} has not terminated")
            return
        final = series.settlements.get(series.final_settlement_day_ns)
        if final is None:
            self._reject(out, cmd, None, RejectCode.NOT_SETTLED,
                         f"{symbol} has no final settlement for {_day(series.final_settlement_day_ns)}")
            return
        holders = sorted((account_id, account.exposures[symbol]) for account_id, account in self.accounts.items()
                         if symbol in account.exposures and account.exposures[symbol].position_lots)
        allocations = assign_deliveries(symbol, {account_id: x.position_lots for account_id, x in holders})
        moved: dict[int, int] = {}
        for a in allocations:
            moved[a.seller] = moved.get(a.seller, 0) + a.lots
            moved[a.buyer] = moved.get(a.buyer, 0) - a.lots
        assert moved == {account_id: -x.position_lots for account_id, x in holders}, "assignment leaves a position"
        # Accepted: from here on nothing can fail.
        spec = series.spec
        fsp = final.price_ticks
        self._emit(out, DeliveriesAssigned, symbol, fsp, len(allocations))
        for a in allocations:
            gpus = a.lots * spec.gpus_per_lot
            delivery = Delivery(a.delivery_id, symbol, a.seller, a.buyer, a.lots, gpus, gpus * spec.delivery_hours,
                                fsp)
            self.deliveries[a.delivery_id] = delivery
            for account_id, signed_lots in ((a.seller, a.lots), (a.buyer, -a.lots)):
                exposure = self.accounts[account_id].exposures[symbol]
                exposure.position_lots, exposure.entry_cost_ticks = fill_position(
                    exposure.position_lots, exposure.entry_cost_ticks, signed_lots, fsp)
            self._emit(out, DeliveryAssigned, *delivery[:-1])
        im = series.im_per_lot_micros
        for account_id, exposure in holders:
            account = self.accounts[account_id]
            margin = im * exposure.worst_lots()
            account.margin_micros += margin - exposure.margin_micros
            exposure.margin_micros = margin
        series.delivery_ids = tuple(a.delivery_id for a in allocations)

    def _settle_delivery(self, cmd: SettleDelivery, out: list[Any]) -> None:
        """Post a delivery's invoice (buyer -> seller) and damages (seller -> buyer), see `SettleDelivery`.

        Checks, in this order, all before anything changes: delivery, fields (`invalid_settlement`:
        0 <= E <= Q, 0 <= invoice <= FSP × Q, 0 <= damages <= CASH_MOVE_MICROS_MAX), then the earlier
        settlement if any (as `_settle_daily`). Then `DeliverySettled` and the postings that change: the
        invoice's difference, then the damages' (an amendment may move cash back)."""
        delivery = self.deliveries.get(cmd.delivery_id) if type(cmd.delivery_id) is str else None
        if delivery is None:
            self._reject(out, cmd, None, RejectCode.UNKNOWN_DELIVERY, f"no delivery {cmd.delivery_id!r}")
            return
        problem = _settle_delivery_problem(cmd, delivery, self.series[delivery.symbol].spec.tick_micros)
        if problem:
            self._reject(out, cmd, None, RejectCode.INVALID_SETTLEMENT, problem)
            return
        settlement = DeliverySettlement(cmd.digest, cmd.effective_micro_gpuh, cmd.invoice_micros, cmd.damages_micros,
                                        cmd.default)
        previous = delivery.settlement
        if previous is not None:
            if previous.digest == cmd.digest:
                if previous == settlement:
                    self._emit(out, DeliverySettlementDuplicate, delivery.delivery_id, cmd.digest)
                else:
                    self._reject(out, cmd, None, RejectCode.SETTLEMENT_CONFLICT,
                                 f"delivery {delivery.delivery_id} was settled with digest {cmd.digest} "
                                 f"and other amounts")
                return
            if not cmd.amend:
                self._reject(out, cmd, None, RejectCode.SETTLEMENT_CONFLICT,
                             f"delivery {delivery.delivery_id} is already settled with another digest; "
                             f"send an amendment to correct it")
                return
        # Accepted: from here on nothing can fail.
        self._emit(out, DeliverySettled, delivery.delivery_id, cmd.digest, cmd.effective_micro_gpuh,
                   cmd.invoice_micros, cmd.damages_micros, cmd.default, previous is not None)
        seller, buyer = delivery.seller, delivery.buyer
        invoice_delta = cmd.invoice_micros - (previous.invoice_micros if previous is not None else 0)
        damages_delta = cmd.damages_micros - (previous.damages_micros if previous is not None else 0)
        for kind, payer, payee, delta in (("delivery_invoice", buyer, seller, invoice_delta),
                                          ("delivery_damages", seller, buyer, damages_delta)):
            source, target, amount = (payer, payee, delta) if delta > 0 else (payee, payer, -delta)
            if amount:
                self.ledger.transfer(source, target, amount)
                self._emit(out, CashMoved, kind, source, target, amount, self.ledger.balances[target])
        self.deliveries[delivery.delivery_id] = delivery._replace(settlement=settlement)

    # -- orders ------------------------------------------------------------------------------
    def _place(self, cmd: PlaceOrder, out: list[Any]) -> None:
        """New order. Checks, in this order: client order id (so that a retry of an accepted
        order always gets the original result, even once the series halted), account, series,
        enums, quantity, price/type, time in force, post-only, open orders, position, margin."""
        (account_id, symbol, side, qty, price, order_type, tif, post_only, stp, client_order_id,
         expire_ts_ns) = cmd
        queue = self.client_order_queue
        if queue and queue[0][0] <= self.stamp.ts_ns - IDEMPOTENCY_WINDOW_NS:
            self._forget_client_orders()
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
                self._reject(out, cmd, account_id, invalid, message, client_order_id=client_order_id,
                             details=_order_details(invalid, series, price, qty))
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
                         client_order_id=client_order_id,
                         details=(("open_orders", len(account.orders)),
                                  ("max_open_orders", self.limits.max_open_orders_per_account)))
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
                             f"{spec.max_position_lots} lots", client_order_id=client_order_id,
                             details=_position_details(new_worst, spec.max_position_lots))
                return
            new_margin = series.im_per_lot_micros * new_worst
            required = account.margin_micros + new_margin - exposure.margin_micros
            cash = self.ledger.balances[account_id]
            if required > cash:
                message, details = _margin_shortfall(required, account.margin_micros, cash)
                self._reject(out, cmd, account_id, RejectCode.INSUFFICIENT_MARGIN, message,
                             client_order_id=client_order_id, details=details)
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
            key = (account_id, client_order_id)
            self.client_orders[key] = (cmd, order_id, tuple(out[first:]))
            self.client_order_queue.append((self.stamp.ts_ns, order_id, key))

    def _forget_client_orders(self) -> None:
        """The ids placed a window ago leave the queue: forgotten if their order closed, else lingering
        until it closes. Runs when a placement finds the oldest due: amortised O(1) per id."""
        horizon = self.stamp.ts_ns - IDEMPOTENCY_WINDOW_NS
        queue, client_orders, orders = self.client_order_queue, self.client_orders, self.orders
        lingering = self.client_orders_lingering
        while queue and queue[0][0] <= horizon:
            _, order_id, key = queue.popleft()
            if order_id in orders:
                lingering[order_id] = key
            else:
                del client_orders[key]
        assert len(queue) + len(lingering) == len(client_orders), "each remembered client order id in one place"

    def _forget_lingering(self, order_id: int) -> None:
        """An order past the window closed: its client order id goes."""
        del self.client_orders[self.client_orders_lingering.pop(order_id)]

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
        lingering = self.client_orders_lingering
        ledger = self.ledger
        own_id = account.account_id
        for i in range(start, len(out)):
            event = out[i]
            kind = type(event)
            if kind is Trade:
                (_, _, _, _, price, qty, aggressor, maker_oid, maker_acct_id, taker_oid, taker_acct_id,
                 maker_rem, taker_rem, maker_fee, taker_fee) = event
                # Rulebook §4 (v2): no print outside the band in force. Orders are checked against the
                # band on entry and amend, and a reference move cancels what the new band leaves out,
                # so a print here outside it is a bug in one of those, never a market event.
                assert series.band_low_ticks <= price <= series.band_high_ticks, (symbol, price)
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
                    if lingering and maker_oid in lingering:
                        self._forget_lingering(maker_oid)
                if not taker_rem:
                    del orders[taker_oid]
                    del taker.orders[taker_oid]
                    if lingering and taker_oid in lingering:
                        self._forget_lingering(taker_oid)
            elif kind is OrderCancelled or kind is OrderExpired:
                acct = account if event.account_id == own_id else accounts[event.account_id]
                lots = event.cancelled_lots if kind is OrderCancelled else event.expired_lots
                _release(acct.exposures[symbol], acct, event.side, lots, im)
                if kind is OrderExpired or not event.remaining_lots:
                    del orders[event.order_id]
                    if lingering and event.order_id in lingering:
                        self._forget_lingering(event.order_id)
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
        if self.client_orders_lingering and order.order_id in self.client_orders_lingering:
            self._forget_lingering(order.order_id)
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
        details = _order_details(code, series, price, qty) if code is not None else ()
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
                        f"worst-case position {new_worst} lots would exceed the limit {series.spec.max_position_lots}"
                        " lots")
                    details = _position_details(new_worst, series.spec.max_position_lots)
                elif required > self.ledger.balances[account.account_id]:
                    code = RejectCode.INSUFFICIENT_MARGIN
                    message, details = _margin_shortfall(required, account.margin_micros,
                                                         self.ledger.balances[account.account_id])
        if code is not None:
            self._reject(out, cmd, cmd.account_id, code, message, order.order_id, order.client_order_id, details)
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


def _day(date_ns: int) -> str:
    """A settlement date for messages: yyyy-mm-dd (UTC)."""
    return datetime.fromtimestamp(date_ns // 1_000_000_000, UTC).strftime("%Y-%m-%d")


def _is_digest(value: object) -> bool:
    return type(value) is str and len(value) == DIGEST_LEN and _HEX.issuperset(value)


def _settle_daily_problem(cmd: SettleDaily, series: Series, now_ns: int) -> str:
    """What is wrong with a `SettleDaily`'s fields, or "" (the accounts are checked by the caller)."""
    date_ns, price = cmd.date_ns, cmd.price_ticks
    postings: Any = cmd.postings  # a sequence of pairs as sent: tuples, or lists from a JSON caller
    if type(date_ns) is not int or date_ns < 0 or date_ns % NS_PER_DAY:
        return "date_ns must be 00:00 UTC of the settlement date, in ns"
    if date_ns > now_ns:
        return f"cannot settle {_day(date_ns)} before that day has begun"
    if date_ns > series.final_settlement_day_ns:
        return (f"{series.spec.symbol} has its final settlement on {_day(series.final_settlement_day_ns)}; "
                f"{_day(date_ns)} is after it")
    if type(price) is not int or price <= 0:
        return "price must be a positive whole number of ticks"
    if not _is_digest(cmd.digest):
        return f"digest must be {DIGEST_LEN} lowercase hex characters (a SHA-256)"
    if type(cmd.amend) is not bool:
        return "amend must be true or false"
    if type(postings) is not tuple and type(postings) is not list:
        return "postings must be a sequence of (account id, variation margin) pairs"
    last = 0
    entry: Any
    for entry in postings:
        if (type(entry) is not tuple and type(entry) is not list) or len(entry) != 2:
            return "each posting is an (account id, variation margin) pair"
        account_id, vm = entry
        if type(account_id) is not int or type(vm) is not int:
            return "account ids and variation margins are whole numbers (micro-dollars)"
        if account_id <= last:
            return "postings must be in strictly ascending account id order, each account once"
        if not -CASH_MOVE_MICROS_MAX <= vm <= CASH_MOVE_MICROS_MAX:
            return f"variation margin of account {account_id} is beyond ±{CASH_MOVE_MICROS_MAX} micro-USD"
        last = account_id
    return ""


def _settle_delivery_problem(cmd: SettleDelivery, delivery: Delivery, tick_micros: int) -> str:
    """What is wrong with a `SettleDelivery`'s fields, or ""."""
    e_max = delivery.gpu_hours * MICRO_GPUH_PER_GPUH
    invoice_max = delivery.fsp_ticks * tick_micros * delivery.gpu_hours
    if not _is_digest(cmd.digest):
        return f"digest must be {DIGEST_LEN} lowercase hex characters (a SHA-256)"
    if type(cmd.effective_micro_gpuh) is not int or not 0 <= cmd.effective_micro_gpuh <= e_max:
        return f"effective quantity must be a whole number of micro-GPU-hours in 0..{e_max}"
    if type(cmd.invoice_micros) is not int or not 0 <= cmd.invoice_micros <= invoice_max:
        return f"invoice must be a whole number of micro-dollars in 0..{invoice_max} (FSP × Q)"
    if type(cmd.damages_micros) is not int or not 0 <= cmd.damages_micros <= CASH_MOVE_MICROS_MAX:
        return f"damages must be a whole number of micro-dollars in 0..{CASH_MOVE_MICROS_MAX}"
    if type(cmd.default) is not bool or type(cmd.amend) is not bool:
        return "default and amend must be true or false"
    return ""


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
        return RejectCode.ORDER_TOO_LARGE, (
            f"quantity {qty} lots exceeds the maximum {series.spec.max_order_lots} lots")
    if order_type == _LIMIT:
        if type(price) is not int or price <= 0:
            return RejectCode.INVALID_PRICE, "a limit order needs a price above 0"
        if not series.band_low_ticks <= price <= series.band_high_ticks:
            return RejectCode.PRICE_OUTSIDE_BAND, _band_message(series, price)
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
    reduction = price == order.price_ticks and type(qty) is int and 0 < qty < order.remaining_lots
    if series.halted and not reduction:
        # Rulebook §4 v2: reducing the quantity of any resting order is always allowed, halt or not.
        return RejectCode.SERIES_HALTED, f"series {order.symbol} is halted: only a reduction is allowed"
    if type(qty) is not int or qty <= 0:
        return RejectCode.INVALID_QUANTITY, "new open quantity must be a positive whole number of lots"
    if qty > series.spec.max_order_lots:
        return RejectCode.ORDER_TOO_LARGE, (
            f"quantity {qty} lots exceeds the maximum {series.spec.max_order_lots} lots")
    if qty > order.remaining_lots and order.filled_lots + qty > series.spec.max_order_lots:
        # Rulebook §4: the order's total (filled + open) never exceeds the per-order maximum, amend
        # included; a reduction is always allowed, so only an increase is checked.
        return RejectCode.ORDER_TOO_LARGE, (
            f"{order.filled_lots} lots already filled + {qty} lots open would exceed the maximum "
            f"{series.spec.max_order_lots} lots per order")
    if type(price) is not int or price <= 0:
        return RejectCode.INVALID_PRICE, "price must be a positive whole number of ticks"
    if not series.band_low_ticks <= price <= series.band_high_ticks:
        return RejectCode.PRICE_OUTSIDE_BAND, _band_message(series, price)
    if price == order.price_ticks and qty == order.remaining_lots:
        return RejectCode.AMEND_NO_CHANGE, "the order already has this price and quantity"
    return None, ""


# -- reject messages and details: the numbers in a trader's units ---------------------------------
# Prices as the API writes them (decimal USD per GPU-hour on the series' tick grid), cash as decimal USD
# with six places, lots as ints; the message says the same numbers for a person ("$8,349.696").


def _usd(micros: int) -> str:
    return str(micros_to_usd(micros))


def _price(series: Series, price_ticks: int) -> str:
    return str(ticks_to_price(price_ticks, series.spec.tick_micros))


def _band_message(series: Series, price_ticks: int) -> str:
    return (f"price {_price(series, price_ticks)} USD per GPU-hour is outside the band "
            f"{_price(series, series.band_low_ticks)}..{_price(series, series.band_high_ticks)} (the reference "
            f"price {_price(series, series.reference_price_ticks)} ± the band)")


def _order_details(code: RejectCode, series: Series, price_ticks: object, qty: object) -> RejectDetails:
    """The details of a static order or amend refusal: what was asked, and the bound it broke."""
    if code == RejectCode.PRICE_OUTSIDE_BAND and type(price_ticks) is int:
        low, high = series.band_low_ticks, series.band_high_ticks
        nearest = low if price_ticks < low else high
        return (("price", _price(series, price_ticks)), ("band_low", _price(series, low)),
                ("band_high", _price(series, high)), ("reference_price", _price(series, series.reference_price_ticks)),
                ("tick", _price(series, 1)), ("nearest_valid", (_price(series, nearest),)))
    if code == RejectCode.ORDER_TOO_LARGE and type(qty) is int:
        return (("amount", qty), ("max_order_lots", series.spec.max_order_lots))
    return ()


def _position_details(worst_lots: int, max_lots: int) -> RejectDetails:
    return (("worst_case_position_lots", worst_lots), ("max_position_lots", max_lots))


def _margin_shortfall(required_micros: int, held_micros: int, cash_micros: int) -> tuple[str, RejectDetails]:
    """Message and details of `insufficient_margin`: the account's total initial margin with the order
    (`required`) would exceed its cash. Said as the order's own margin against what is available
    (cash less the margin already held, as GET /v1/balances shows it): the same comparison."""
    order_micros = required_micros - held_micros
    available = cash_micros - held_micros
    message = (f"this order needs {usd_text(order_micros)} of initial margin but {usd_text(available)} is available "
               f"(cash {usd_text(cash_micros)} less {usd_text(held_micros)} already held; total required "
               f"{usd_text(required_micros)})")
    return message, (("required", _usd(required_micros)), ("order_margin", _usd(order_micros)),
                     ("margin_held", _usd(held_micros)), ("cash", _usd(cash_micros)), ("available", _usd(available)))
