"""Request and response bodies of the REST API (and the WebSocket order entry, which reuses them).

Prices and cash are decimal strings (never JSON numbers: a float cannot carry an exact price);
quantities are whole lots as JSON integers; times are integer nanoseconds since the epoch (UTC).
Request models forbid unknown fields and coerce nothing, so whatever the schema does not allow is
refused with 422 before it can reach the engine.
"""

from __future__ import annotations

from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from exchange.catalog import load_catalog

T = TypeVar("T")

# Bounds of the wire format equal the engine's static limits, so that a request the schema accepts is never
# refused as malformed: an order (or amend) is at most the contracts' per-order maximum (500 lots).
# Limits that depend on state (the band, margin, the order's filled lots) are the engine's to check.
LOTS_MAX = load_catalog().rules.max_order_lots
# Bounds past 2**53 in the OpenAPI document are written as round decimals, so that a client or tool that
# reads JSON numbers as doubles (JavaScript, Schemathesis) reads exactly the bound the server checks:
# 2**63 - 1 or 2**62 read as a double is a little more than itself. 4e18 ns is in the year 2096.
TS_NS_MAX = 4 * 10**18
ID_MAX = 4 * 10**18
ACCOUNT_ID_MAX = 2**31 - 1
TIMEOUT_S_MAX = 86_400



def _integral_float_to_int(value: object) -> object:
    """JSON has one kind of number, and to JSON Schema (so to the OpenAPI document) 5.0 is the integer 5:
    accept it as one. 5.5 stays a float, which the strict int then refuses."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WholeNumber = BeforeValidator(_integral_float_to_int)


def _not_zero(value: str) -> str:
    if not value.strip("0."):
        raise ValueError("must be greater than zero")
    return value


DecimalStr = Annotated[str, Field(pattern=r"^[0-9]{1,12}(\.[0-9]{1,8})?$", max_length=21,
                                  examples=["2.3500"], description="a non-negative decimal number, as a string")]
# A deposit or withdrawal: whole micro-dollars, more than zero and below the engine's $1bn per move.
CashAmount = Annotated[str, Field(pattern=r"^[0-9]{1,9}(\.[0-9]{1,6})?$", max_length=16, examples=["500.25"],
                                  json_schema_extra={"not": {"pattern": r"^[0.]+$"}},
                                  description="USD, more than 0 and less than 1,000,000,000, at most 6 decimals"),
                       AfterValidator(_not_zero)]
Lots = Annotated[int, Field(ge=1, le=LOTS_MAX, description="whole lots"), WholeNumber]
Symbol = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{0,31}$", max_length=32, examples=["H100-M40-Z26"])]
ClientOrderId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,36}$", max_length=36,
                                     description="your id for the order, unique per account; retries are safe")]
SideName = Literal["buy", "sell"]
OrderTypeName = Literal["limit", "market"]
TifName = Literal["GTC", "GTD", "IOC", "FOK"]
StpName = Literal["cancel_newest", "cancel_oldest", "cancel_both", "decrement"]
OrderStatusName = Literal["open", "closed", "canceled", "expired", "rejected"]
Scope = Literal["read", "trade", "operator"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# -- requests --------------------------------------------------------------------------------------
class PlaceOrderBody(Strict):
    """A new order: a limit order (with a price) or a market order (an IOC or FOK at the band edge)."""

    symbol: Symbol
    side: SideName
    type: OrderTypeName = "limit"
    price: DecimalStr | None = Field(default=None, description="limit orders only: USD per GPU-hour")
    amount: Lots
    time_in_force: TifName | None = Field(default=None, description="default GTC (limit) or IOC (market)")
    post_only: bool = False
    stp: StpName = "cancel_newest"
    client_order_id: ClientOrderId | None = None
    expire_time_ns: Annotated[int, Field(ge=0, le=TS_NS_MAX), WholeNumber] | None = Field(default=None,
                                                                             description="GTD only")


class AmendOrderBody(Strict):
    """A new price and/or a new open quantity for an open order (at least one of the two)."""

    # At least one of the two, not null: said in the schema so that it admits no body the API refuses.
    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["price"], "properties": {"price": {"type": "string"}}},
        {"required": ["amount"], "properties": {"amount": {"type": "integer"}}},
    ]})

    price: DecimalStr | None = None
    amount: Lots | None = Field(default=None, description="the new open (remaining) quantity")


class CancelAllBody(Strict):
    """Which open orders to cancel: all of the account's, or only one series' and/or one side's."""

    symbol: Symbol | None = None
    side: SideName | None = None


class CancelAllAfterBody(Strict):
    """Arm, re-arm or (with 0) disarm the account's dead man's switch."""

    timeout_seconds: Annotated[int, Field(ge=0, le=TIMEOUT_S_MAX, description="0 disarms the switch"),
                               WholeNumber]


class CreateAccountBody(Strict):
    """A new trader account."""

    account_id: Annotated[int, Field(ge=1, le=ACCOUNT_ID_MAX), WholeNumber] | None = Field(
        default=None, description="default: one more than the highest existing id")


class CashBody(Strict):
    """A deposit or withdrawal."""

    amount: CashAmount


class EnabledBody(Strict):
    """The account kill switch."""

    enabled: bool


class HaltBody(Strict):
    """Halt or resume a series."""

    halted: bool


class CreateKeyBody(Strict):
    """A new API key for an account, with its scopes."""

    account_id: Annotated[int, Field(ge=1, le=ACCOUNT_ID_MAX), WholeNumber]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=3)]


class ListSeriesBody(Strict):
    """A series of the catalog to list for trading."""

    symbol: Symbol


# -- responses -------------------------------------------------------------------------------------
class ErrorOut(BaseModel):
    """Every error: a stable code, a message for a person and the numbers behind it."""

    code: str
    message: str
    details: dict[str, object]


class StatusOut(BaseModel):
    """The process is up."""

    status: str


class ReadyOut(BaseModel):
    """Ready to take orders, and how far the journal and the SQL store are."""

    status: str
    journal_seq: int
    projected_seq: int


class ProductOut(BaseModel):
    """A product (GPU generation × minimum MFU grade) and its listed series."""

    product: str
    generation: str
    description: str
    mfu_grade: str
    gpus_per_lot: int
    reference_price: str | None
    series: list[str] = Field(description="symbols of this product's listed series")


class SeriesOut(BaseModel):
    """A series' full contract terms, price band, limits, margin and fees."""

    symbol: str
    product: str
    generation: str
    mfu_grade: str
    period: str
    gpus_per_lot: int
    lot_gpu_hours: int
    delivery_start_ns: int
    delivery_end_ns: int
    trading_end_ns: int
    tick_size: str
    reference_price: str
    price_band_low: str
    price_band_high: str
    max_order_lots: int
    max_position_lots: int
    initial_margin_rate: str
    initial_margin_per_lot: str
    taker_fee_rate: str
    maker_fee_rate: str
    halted: bool
    terminated: bool


class BookOut(BaseModel):
    """A level-2 snapshot of a series' order book."""

    symbol: str
    seq: int
    ts_ns: int
    book_seq: int | None = Field(default=None, description="the series' book seq in the market feed (the feed "
                                 "gateway's book; null on the API server)")
    bids: list[tuple[str, int, int]] = Field(description="[price, lots, orders], best first")
    asks: list[tuple[str, int, int]]


class TradeOut(BaseModel):
    """A public trade."""

    trade_id: int
    symbol: str
    price: str
    amount: int
    side: SideName
    ts_ns: int
    seq: int


class TickerOut(BaseModel):
    """Best bid and ask, the last price and 24-hour statistics."""

    symbol: str
    bid: str | None
    ask: str | None
    last: str | None
    open_24h: str | None
    high_24h: str | None
    low_24h: str | None
    change_24h: str | None
    volume_24h: int
    seq: int
    ts_ns: int


class CandleOut(BaseModel):
    """One OHLCV bar (bars without trades are left out)."""

    start_ns: int
    open: str
    high: str
    low: str
    close: str
    volume: int
    trades: int


class OrderOut(BaseModel):
    """An order as the exchange holds it (CCXT-like: amount, filled, remaining, average, status)."""

    id: str
    client_order_id: str | None
    symbol: str
    side: SideName
    type: OrderTypeName
    time_in_force: TifName
    post_only: bool
    stp: StpName
    price: str | None
    amount: int
    filled: int
    remaining: int
    cancelled: int
    average: str | None
    status: OrderStatusName
    cancel_reason: str | None
    expire_time_ns: int | None
    created_ns: int
    updated_ns: int
    seq: int


class FillOut(BaseModel):
    """One of your trades, from your side."""

    trade_id: int
    order_id: str
    symbol: str
    side: SideName
    price: str
    amount: int
    fee: str
    liquidity: Literal["maker", "taker"]
    ts_ns: int
    seq: int


class PositionOut(BaseModel):
    """A net position with its entry price and P&L at the mark."""

    symbol: str
    size: int
    entry_price: str | None
    mark_price: str
    unrealized_pnl: str


class BalanceOut(BaseModel):
    """Cash, the initial margin held, and what is available."""

    account_id: int
    currency: Literal["USD"]
    cash: str
    margin: str
    available: str


class PostingOut(BaseModel):
    """One cash movement in the double-entry ledger, from the account's side."""

    seq: int
    leg: int
    ts_ns: int
    kind: str
    amount: str = Field(description="signed: positive credits the account")
    counterparty: int
    symbol: str | None
    trade_id: int | None


class AccountOut(BaseModel):
    """An account and whether it may trade."""

    account_id: int
    enabled: bool


class WhoAmIOut(BaseModel):
    """The signed-in key: its account and scopes."""

    account_id: int
    enabled: bool
    key_id: str
    scopes: list[str]


class CashOut(BaseModel):
    """The account's cash after a deposit or withdrawal."""

    account_id: int
    cash: str


class CancelledOut(BaseModel):
    """How many orders were cancelled."""

    cancelled: int


class DeadlineOut(BaseModel):
    """When the dead man's switch fires (null: disarmed)."""

    deadline_ns: int | None


class KeyOut(BaseModel):
    """A new API key and its secret (shown only once)."""

    key_id: str
    secret: str
    account_id: int
    scopes: list[str]


class SettlementOut(BaseModel):
    """A published daily settlement price."""

    symbol: str
    date: str
    price: str
    final: bool
    seq: int
    ts_ns: int


class DeliveryOut(BaseModel):
    """A delivery of a terminated series: who delivers what to whom, and its settlement once posted."""

    delivery_id: str
    symbol: str
    seller: int
    buyer: int
    lots: int
    gpus: int
    gpu_hours: int
    final_settlement_price: str
    status: str
    effective_gpu_hours: str | None
    invoice: str | None
    damages: str | None
    default: bool | None


class RevokedOut(BaseModel):
    """A revoked API key."""

    key_id: str
    revoked: bool


class Page(BaseModel, Generic[T]):
    """A page of items with a cursor to the next."""

    items: list[T]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class TradePage(BaseModel, Generic[T]):
    """A page of trades, newest first, with opaque cursors both ways."""

    items: list[T] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as `cursor` for the older trades after this page; null when "
                                    "there are none", examples=["o1234"])
    prev_cursor: str | None = Field(description="pass as `cursor` for trades newer than this page (poll with it "
                                    "for new trades); null only past the oldest end", examples=["n1241"])


class PositionViewOut(BaseModel):
    """One series' position and open orders of an account."""

    symbol: str = Field(description="the series", examples=["H100-M40-261203"])
    position_lots: int = Field(description="the net position in lots: positive long, negative short", examples=[2])
    average_entry: str | None = Field(description="the average entry price (USD per GPU-hour); null when flat",
                                      examples=["2.400000"])
    open_buy_lots: int = Field(description="lots of open buy orders", examples=[0])
    open_sell_lots: int = Field(description="lots of open sell orders", examples=[5])


class AccountViewOut(BaseModel):
    """An account as the core holds it now (operator view)."""

    account_id: int = Field(description="the account's id", examples=[1001])
    enabled: bool = Field(description="whether it may trade", examples=[True])
    cash: str = Field(description="cash (USD)", examples=["10000.000000"])
    initial_margin: str = Field(description="initial margin held (USD)", examples=["605.296000"])
    open_orders: int = Field(description="open orders", examples=[3])
    positions: list[PositionViewOut] = Field(description="per series")
    seq: int = Field(description="the journal seq this reflects", examples=[120345])


class LedgerRowOut(BaseModel):
    """One posting to or from a ledger account."""

    seq: int = Field(description="the event seq that posted it", examples=[120345])
    leg: int = Field(description="the posting's number within its event", examples=[0])
    ts_ns: int = Field(description="when, ns since the epoch", examples=[1796225400000000000])
    kind: str = Field(description="deposit, withdrawal, fee, variation_margin, delivery_invoice, delivery_damages",
                      examples=["deposit"])
    from_: int = Field(alias="from", description="the paying ledger account (-1 external, -2 fees, -3 settlement)",
                       examples=[-1])
    to: int = Field(description="the receiving ledger account", examples=[1001])
    amount: str = Field(description="USD moved, positive", examples=["2500.000000"])
    symbol: str | None = Field(description="the series, for fees, variation margin and deliveries",
                               examples=[None])


class LedgerOut(BaseModel):
    """A ledger account's postings, oldest first, and its balance."""

    ledger_account: int = Field(description="the ledger account", examples=[1001])
    balance: str = Field(description="its balance now (USD)", examples=["2500.000000"])
    items: list[LedgerRowOut] = Field(description="this page's postings")
    next_after_seq: int | None = Field(description="pass as `after_seq` for the next page; null on the last",
                                       examples=[None])


class SnapshotOut(BaseModel):
    """A snapshot requested."""

    seq: int = Field(description="the journal seq the snapshot is taken after", examples=[120345])
    snapshot_dir: str = Field(description="where it is written", examples=["/var/lib/exchange/snapshots"])
