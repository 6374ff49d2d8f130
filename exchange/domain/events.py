"""Events: what the core says happened. Immutable, and each carries a gapless global `seq` and the
`ts_ns` its command was given.

Events are `NamedTuple`s: immutable, compact, comparable with `==`, and cheap to build on the hot
path (`tuple.__new__(Trade, (...))` skips the Python-level constructor).
"""

from __future__ import annotations

from typing import NamedTuple

from exchange.domain.codes import CancelReason, RejectCode
from exchange.domain.spec import SeriesSpec

RejectDetails = tuple[tuple[str, str | int | tuple[str, ...]], ...]
"""The numbers behind a refusal, as (name, value) pairs in a fixed order: prices and cash as the API writes
them (decimal strings), lots as ints, lists of prices as tuples. A tuple, not a dict, so that the event
stays immutable and hashable."""


class Rejected(NamedTuple):
    """A command was refused. Nothing else changed. `message` states the numbers in a trader's units (USD,
    lots, prices per GPU-hour); `details` carries them for programs (e.g. band_low, band_high, tick)."""

    seq: int
    ts_ns: int
    command: str                 # the command's type name, e.g. "PlaceOrder"
    account_id: int | None
    code: RejectCode
    message: str
    order_id: int | None = None
    client_order_id: str | None = None
    details: RejectDetails = ()


class DuplicateOrder(NamedTuple):
    """A retry of an already accepted order (same account, client order id and payload).

    Nothing changed; `original` holds the events the first attempt produced, so the caller gets
    the original result."""

    seq: int
    ts_ns: int
    account_id: int
    client_order_id: str
    order_id: int
    original: tuple[object, ...]


class OrderAccepted(NamedTuple):
    seq: int
    ts_ns: int
    order_id: int
    account_id: int
    symbol: str
    side: int
    order_type: int
    price_ticks: int | None      # None for market orders
    qty_lots: int
    tif: int
    post_only: bool
    stp: int
    client_order_id: str | None
    expire_ts_ns: int | None


class Trade(NamedTuple):
    """One fill between a resting (maker) and an incoming (taker) order, at the maker's price."""

    seq: int
    ts_ns: int
    symbol: str
    trade_id: int                # per series, from 1
    price_ticks: int
    qty_lots: int
    aggressor_side: int          # the taker's side
    maker_order_id: int
    maker_account_id: int
    taker_order_id: int
    taker_account_id: int
    maker_remaining_lots: int
    taker_remaining_lots: int
    maker_fee_micros: int
    taker_fee_micros: int


class OrderCancelled(NamedTuple):
    """`cancelled_lots` left the order; if `remaining_lots` > 0 the order lives on (STP decrement)."""

    seq: int
    ts_ns: int
    order_id: int
    account_id: int
    symbol: str
    side: int
    cancelled_lots: int
    remaining_lots: int
    reason: CancelReason


class OrderAmended(NamedTuple):
    seq: int
    ts_ns: int
    order_id: int
    account_id: int
    symbol: str
    side: int
    price_ticks: int
    remaining_lots: int
    quantity_lots: int           # filled + remaining + cancelled after the amend
    priority_kept: bool


class OrderExpired(NamedTuple):
    seq: int
    ts_ns: int
    order_id: int
    account_id: int
    symbol: str
    side: int
    expired_lots: int


class MassCancelDone(NamedTuple):
    """Acknowledges a mass cancel; the cancellations themselves precede it as OrderCancelled."""

    seq: int
    ts_ns: int
    account_id: int
    symbol: str | None
    side: int | None
    cancelled_orders: int


class AccountCreated(NamedTuple):
    seq: int
    ts_ns: int
    account_id: int


class AccountStatusChanged(NamedTuple):
    seq: int
    ts_ns: int
    account_id: int
    enabled: bool


class CashMoved(NamedTuple):
    """A ledger posting outside trading: `amount_micros` from one ledger account to another. Fees
    travel inside `Trade`.

    Kinds: "deposit" (EXTERNAL -> account), "withdrawal" (account -> EXTERNAL), "variation_margin"
    (SETTLEMENT <-> account; follows its `DailySettlement`), "delivery_invoice" (buyer -> seller, or
    back in an amendment) and "delivery_damages" (seller -> buyer, or back), both following their
    `DeliverySettled`. `balance_micros` is the cash after the posting of `to_account` if that is a
    trader account, else of `from_account`."""

    seq: int
    ts_ns: int
    kind: str
    from_account: int
    to_account: int
    amount_micros: int
    balance_micros: int


class SeriesListed(NamedTuple):
    seq: int
    ts_ns: int
    spec: SeriesSpec


class SeriesHaltChanged(NamedTuple):
    seq: int
    ts_ns: int
    symbol: str
    halted: bool


class TradingTerminated(NamedTuple):
    seq: int
    ts_ns: int
    symbol: str


class CancelAllAfterSet(NamedTuple):
    """An account's dead man's switch was armed (until `deadline_ns`) or disarmed (`deadline_ns` 0)."""

    seq: int
    ts_ns: int
    account_id: int
    deadline_ns: int


class DeadMansSwitchFired(NamedTuple):
    """The account's cancel-all-after deadline passed: its open orders were cancelled (as the
    `OrderCancelled` events before this one, reason `dead_mans_switch`) and the switch disarmed."""

    seq: int
    ts_ns: int
    account_id: int
    cancelled: int               # orders cancelled


class DailySettlement(NamedTuple):
    """A series was settled for a day (`SettleDaily`). Its variation margin postings follow as
    `CashMoved` events of kind "variation_margin", `accounts` of them, crediting trader accounts
    `total_vm_micros` net (an amendment: only the corrections). `amended` is True when it replaced an
    earlier settlement of the same day. The series' reference price (band and margin) follows the
    latest settled day."""

    seq: int
    ts_ns: int
    symbol: str
    date_ns: int                 # 00:00 UTC of the settlement date
    price_ticks: int
    digest: str
    accounts: int                # CashMoved postings that follow
    total_vm_micros: int
    amended: bool


class CashMoveDuplicate(NamedTuple):
    """A `Deposit` or `Withdraw` whose reference the account used within the last 24 h, for the same move:
    nothing changed (a retry)."""

    seq: int
    ts_ns: int
    account_id: int
    reference: str


class SettlementDuplicate(NamedTuple):
    """A `SettleDaily` with the digest already recorded for the day: nothing changed."""

    seq: int
    ts_ns: int
    symbol: str
    date_ns: int
    digest: str


class DeliveriesAssigned(NamedTuple):
    """`AssignDeliveries` ran: `deliveries` `DeliveryAssigned` events follow (none if no open positions)."""

    seq: int
    ts_ns: int
    symbol: str
    fsp_ticks: int               # the final settlement price
    deliveries: int


class DeliveryAssigned(NamedTuple):
    """One delivery obligation (rulebook §7): the seller's and the buyer's positions each moved by
    `lots` toward zero at the final settlement price."""

    seq: int
    ts_ns: int
    delivery_id: str             # "<symbol>/<n>", n from 1 in allocation order
    symbol: str
    seller: int
    buyer: int
    lots: int
    gpus: int                    # G = lots × GPUs per lot
    gpu_hours: int               # Q = G × hours of the delivery period
    fsp_ticks: int


class DeliveriesAlreadyAssigned(NamedTuple):
    """A repeated `AssignDeliveries`: nothing changed."""

    seq: int
    ts_ns: int
    symbol: str
    deliveries: int              # how many the first call made


class DeliverySettled(NamedTuple):
    """A delivery was settled (`SettleDelivery`); its postings follow as `CashMoved` events of kind
    "delivery_invoice" and "delivery_damages" (an amendment: only the corrections, in either direction)."""

    seq: int
    ts_ns: int
    delivery_id: str
    digest: str
    effective_micro_gpuh: int
    invoice_micros: int
    damages_micros: int
    default: bool
    amended: bool


class DeliverySettlementDuplicate(NamedTuple):
    """A `SettleDelivery` with the digest already recorded for the delivery: nothing changed."""

    seq: int
    ts_ns: int
    delivery_id: str
    digest: str


Event = (
    Rejected | DuplicateOrder | MassCancelDone | OrderAccepted | Trade | OrderCancelled | OrderAmended | OrderExpired
    | AccountCreated | AccountStatusChanged | CashMoved | SeriesListed | SeriesHaltChanged | TradingTerminated
    | CancelAllAfterSet | DeadMansSwitchFired | DailySettlement | SettlementDuplicate | DeliveriesAssigned
    | DeliveryAssigned | DeliveriesAlreadyAssigned | DeliverySettled | DeliverySettlementDuplicate | CashMoveDuplicate
)
