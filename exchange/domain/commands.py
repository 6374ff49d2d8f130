"""Commands: the only way to change the core's state. Small immutable values.

A command carries no sequence number or time: the sequencer gives it both (`Engine.apply(cmd, ts_ns)`)
so that a client's retry of the same command compares equal to the original.
"""

from __future__ import annotations

from typing import NamedTuple

from exchange.domain.order import OrderType, Side, StpMode, TimeInForce
from exchange.domain.spec import SeriesSpec


class CreateAccount(NamedTuple):
    account_id: int


class Deposit(NamedTuple):
    """Operator: cash arrives from outside (bank wire, stablecoin...).

    `reference` (optional, 1..128 printable ASCII: the operator's id of the transfer, or the API's
    Idempotency-Key) makes it exactly once: the same reference again for the account within 24 h
    moves nothing (`CashMoveDuplicate`); with another amount or kind it is refused (`reference_conflict`)."""

    account_id: int
    amount_micros: int
    reference: str | None = None


class Withdraw(NamedTuple):
    """Operator: cash leaves; refused if what is left would not cover the required margin. `reference`:
    as for `Deposit`."""

    account_id: int
    amount_micros: int
    reference: str | None = None


class SetAccountEnabled(NamedTuple):
    """Operator kill switch: disabling cancels the account's orders and refuses new ones."""

    account_id: int
    enabled: bool


class ListSeries(NamedTuple):
    spec: SeriesSpec


class HaltSeries(NamedTuple):
    """Operator: halt (no new orders or amends; cancels still allowed) or resume a series."""

    symbol: str
    halted: bool


class TerminateTrading(NamedTuple):
    """End trading in a series now (it also ends by itself at the spec's trading_end_ns)."""

    symbol: str


class PlaceOrder(NamedTuple):
    account_id: int
    symbol: str
    side: Side
    qty_lots: int
    price_ticks: int | None = None          # required for LIMIT, forbidden for MARKET
    order_type: OrderType = OrderType.LIMIT
    tif: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    stp: StpMode = StpMode.CANCEL_NEWEST
    client_order_id: str | None = None      # idempotency key, unique per account
    expire_ts_ns: int | None = None         # GTD only


class CancelOrder(NamedTuple):
    """Cancel by exchange order id or by client order id (exactly one of them)."""

    account_id: int
    order_id: int | None = None
    client_order_id: str | None = None


class AmendOrder(NamedTuple):
    """Change price and/or open quantity.

    `qty_lots` is the new *open* (remaining) quantity: for an order of 10 with 4 filled, qty 3
    reduces the open 6 to 3 and keeps time priority; qty 8 increases it and loses priority. A new
    price always loses priority and may match at once. The order is named by exchange order id or
    by client order id (exactly one of them).
    """

    account_id: int
    order_id: int | None
    price_ticks: int | None = None
    qty_lots: int | None = None
    client_order_id: str | None = None


class MassCancel(NamedTuple):
    """Cancel all of an account's open orders, optionally only in one series and/or one side."""

    account_id: int
    symbol: str | None = None
    side: Side | None = None


class CancelAllAfter(NamedTuple):
    """Dead man's switch: cancel all of the account's open orders unless re-armed within `timeout_ms`.

    Arming at time t sets the deadline to t + timeout_ms; arming again replaces it; 0 disarms. At the
    deadline the core cancels every open order of the account (reason `dead_mans_switch`) and disarms,
    without any other command needed (the service sends `AdvanceTime` when a deadline is due).
    """

    account_id: int
    timeout_ms: int                         # 0..CANCEL_ALL_AFTER_MS_MAX; 0 disarms


class AdvanceTime(NamedTuple):
    """No-op carrying only the sequencer's time: lets GTD expiry, trading termination and dead man's
    switches happen when no other command arrives."""


class SettleDaily(NamedTuple):
    """Operator (the daily settlement job): a series' settlement price for a day and the variation
    margin it computed for each account (rulebook §6).

    `date_ns` is 00:00 UTC of the settlement date. `postings` are (account id, VM in micro-dollars,
    positive credits the account), in strictly ascending account id order (each account once; zero VM
    allowed). `digest` (64 lowercase hex: the SHA-256 of the job's inputs) is the idempotency key of
    the (series, date): the same digest again posts nothing (`SettlementDuplicate`); another digest is
    refused (`settlement_conflict`) unless `amend`, which posts only the differences per account as
    correcting entries and records the new price, postings and digest.
    """

    symbol: str
    date_ns: int
    price_ticks: int
    postings: tuple[tuple[int, int], ...]
    digest: str
    amend: bool = False


class AssignDeliveries(NamedTuple):
    """Operator (the expiry job): turn every open position of a terminated, finally settled series into
    deliveries (rulebook §7); positions go flat and release their margin. Idempotent."""

    symbol: str


class SettleDelivery(NamedTuple):
    """Operator (the delivery job): post a delivery's invoice (buyer -> seller) and liquidated damages
    (seller -> buyer) as computed from the probe's telemetry (rulebook §8). Same idempotency rules as
    `SettleDaily`: same digest posts nothing, another is refused unless `amend` (post the differences)."""

    delivery_id: str                        # "<symbol>/<n>"
    digest: str
    effective_micro_gpuh: int               # E in millionths of a GPU-hour
    invoice_micros: int
    damages_micros: int
    default: bool
    amend: bool = False


Command = (
    CreateAccount | Deposit | Withdraw | SetAccountEnabled | ListSeries | HaltSeries | TerminateTrading
    | PlaceOrder | CancelOrder | AmendOrder | MassCancel | AdvanceTime | CancelAllAfter
    | SettleDaily | AssignDeliveries | SettleDelivery
)
