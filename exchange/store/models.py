"""SQLAlchemy 2 models of the SQL store: a projection of the event stream (DESIGN.md principle 3).

Every amount is an exact integer (`BigInteger`): micro-dollars, ticks, lots, nanoseconds since the
epoch (UTC). The only `Numeric` column is a series' MFU grade, a `Decimal` in the spec.

`seq` columns hold the *event* sequence number (the gapless counter every event carries);
`projector_state.last_seq` holds the *journal* (command) sequence number of the last command whose
events were applied, which is what a restart catches up from.

The schema is created by the Alembic migrations in `exchange/store/migrations/` (`Store.migrate`),
never by `metadata.create_all`; a test checks that the migrations produce exactly this metadata.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SYMBOL_LEN = 32
LABEL_LEN = 16  # side, order type, time in force, STP mode, status, posting kind
CLIENT_ORDER_ID_LEN = 64
IDEMPOTENCY_KEY_LEN = 64
DELIVERY_ID_LEN = 64  # "<symbol>/<n>"
DIGEST_LEN = 64       # a settlement job's input digest: SHA-256 as hex


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _id() -> Mapped[int]:
    """A BigInteger key we assign ourselves (never a database sequence)."""
    return mapped_column(BigInteger, primary_key=True, autoincrement=False)


class AccountRecord(Base):
    __tablename__ = "accounts"

    account_id: Mapped[int] = _id()
    enabled: Mapped[bool] = mapped_column(Boolean)
    created_seq: Mapped[int] = mapped_column(BigInteger)
    created_ts_ns: Mapped[int] = mapped_column(BigInteger)
    updated_seq: Mapped[int] = mapped_column(BigInteger)
    updated_ts_ns: Mapped[int] = mapped_column(BigInteger)


class ApiKeyRecord(Base):
    """An API key. Only a salted scrypt hash of the secret is stored (`hash_params` says how)."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.account_id"), index=True)
    hash_params: Mapped[str] = mapped_column(String(64))     # "scrypt:n=16384,r=8,p=1"
    salt: Mapped[bytes] = mapped_column(LargeBinary(32))
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(64))
    scopes: Mapped[str] = mapped_column(String(256))         # space-separated
    created_ts_ns: Mapped[int] = mapped_column(BigInteger)
    revoked_ts_ns: Mapped[int | None] = mapped_column(BigInteger)


class SeriesRecord(Base):
    __tablename__ = "series"

    symbol: Mapped[str] = mapped_column(String(SYMBOL_LEN), primary_key=True)
    product: Mapped[str] = mapped_column(String(SYMBOL_LEN))
    generation: Mapped[str] = mapped_column(String(SYMBOL_LEN))
    mfu_grade: Mapped[Decimal] = mapped_column(Numeric(6, 4))
    period: Mapped[str] = mapped_column(String(LABEL_LEN))
    gpus_per_lot: Mapped[int] = mapped_column(BigInteger)
    delivery_start_ns: Mapped[int] = mapped_column(BigInteger)
    delivery_end_ns: Mapped[int] = mapped_column(BigInteger)
    trading_end_ns: Mapped[int] = mapped_column(BigInteger)
    tick_micros: Mapped[int] = mapped_column(BigInteger)
    reference_price_ticks: Mapped[int] = mapped_column(BigInteger)
    price_band_ppm: Mapped[int] = mapped_column(BigInteger)
    max_order_lots: Mapped[int] = mapped_column(BigInteger)
    max_position_lots: Mapped[int] = mapped_column(BigInteger)
    initial_margin_ppm: Mapped[int] = mapped_column(BigInteger)
    taker_fee_ppm: Mapped[int] = mapped_column(BigInteger)
    maker_fee_ppm: Mapped[int] = mapped_column(BigInteger)
    halted: Mapped[bool] = mapped_column(Boolean)
    terminated: Mapped[bool] = mapped_column(Boolean)
    listed_seq: Mapped[int] = mapped_column(BigInteger)
    listed_ts_ns: Mapped[int] = mapped_column(BigInteger)
    updated_seq: Mapped[int] = mapped_column(BigInteger)
    updated_ts_ns: Mapped[int] = mapped_column(BigInteger)


class OrderRecord(Base):
    """An order and its current state. `status` is CCXT's: open, closed (filled), canceled, expired.

    `qty_lots` is the current quantity (an amend that increases the open quantity raises it), so
    `filled_lots + remaining_lots + cancelled_lots == qty_lots` always (expired lots count as cancelled).
    """

    __tablename__ = "orders"
    __table_args__ = (
        # Not unique: the core forgets a client order id 24 h after its order closed, so an id may name
        # an older order and a newer one; a lookup by client order id takes the newest.
        Index(None, "account_id", "client_order_id"),
        Index(None, "account_id", "order_id"),
        Index(None, "account_id", "status"),
        Index(None, "account_id", "symbol", "order_id"),
    )

    order_id: Mapped[int] = _id()
    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.account_id"))
    symbol: Mapped[str] = mapped_column(String(SYMBOL_LEN), ForeignKey("series.symbol"))
    side: Mapped[str] = mapped_column(String(LABEL_LEN))
    order_type: Mapped[str] = mapped_column(String(LABEL_LEN))
    price_ticks: Mapped[int | None] = mapped_column(BigInteger)   # None for market orders
    qty_lots: Mapped[int] = mapped_column(BigInteger)
    remaining_lots: Mapped[int] = mapped_column(BigInteger)
    filled_lots: Mapped[int] = mapped_column(BigInteger)
    cancelled_lots: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(LABEL_LEN))
    cancel_reason: Mapped[str | None] = mapped_column(String(32))
    tif: Mapped[str] = mapped_column(String(LABEL_LEN))
    post_only: Mapped[bool] = mapped_column(Boolean)
    stp: Mapped[str] = mapped_column(String(LABEL_LEN))
    client_order_id: Mapped[str | None] = mapped_column(String(CLIENT_ORDER_ID_LEN))
    expire_ts_ns: Mapped[int | None] = mapped_column(BigInteger)
    created_seq: Mapped[int] = mapped_column(BigInteger)
    created_ts_ns: Mapped[int] = mapped_column(BigInteger)
    updated_seq: Mapped[int] = mapped_column(BigInteger)
    updated_ts_ns: Mapped[int] = mapped_column(BigInteger)


class TradeRecord(Base):
    __tablename__ = "trades"
    __table_args__ = (
        Index(None, "seq"),
        Index(None, "maker_account_id", "seq"),
        Index(None, "taker_account_id", "seq"),
        Index(None, "maker_order_id"),
        Index(None, "taker_order_id"),
        Index(None, "symbol", "ts_ns"),
    )

    symbol: Mapped[str] = mapped_column(String(SYMBOL_LEN), ForeignKey("series.symbol"), primary_key=True)
    trade_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    ts_ns: Mapped[int] = mapped_column(BigInteger)
    price_ticks: Mapped[int] = mapped_column(BigInteger)
    qty_lots: Mapped[int] = mapped_column(BigInteger)
    aggressor_side: Mapped[str] = mapped_column(String(LABEL_LEN))
    maker_order_id: Mapped[int] = mapped_column(BigInteger)
    maker_account_id: Mapped[int] = mapped_column(BigInteger)
    taker_order_id: Mapped[int] = mapped_column(BigInteger)
    taker_account_id: Mapped[int] = mapped_column(BigInteger)
    maker_fee_micros: Mapped[int] = mapped_column(BigInteger)
    taker_fee_micros: Mapped[int] = mapped_column(BigInteger)


class PositionRecord(Base):
    """Net position and its average-cost entry cost in tick-lots (as `exchange.domain.account.Exposure`)."""

    __tablename__ = "positions"

    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.account_id"), primary_key=True,
                                            autoincrement=False)
    symbol: Mapped[str] = mapped_column(String(SYMBOL_LEN), ForeignKey("series.symbol"), primary_key=True)
    position_lots: Mapped[int] = mapped_column(BigInteger)
    entry_cost_ticks: Mapped[int] = mapped_column(BigInteger)
    updated_seq: Mapped[int] = mapped_column(BigInteger)
    updated_ts_ns: Mapped[int] = mapped_column(BigInteger)


class LedgerPostingRecord(Base):
    """One double-entry transfer. Keyed by (event seq, leg): a trade posts up to two fees."""

    __tablename__ = "ledger_postings"
    __table_args__ = (
        Index(None, "from_account", "seq"),
        Index(None, "to_account", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    leg: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    ts_ns: Mapped[int] = mapped_column(BigInteger)
    # deposit | withdrawal | fee | variation_margin | delivery_invoice | delivery_damages
    kind: Mapped[str] = mapped_column(String(LABEL_LEN))
    from_account: Mapped[int] = mapped_column(BigInteger)
    to_account: Mapped[int] = mapped_column(BigInteger)
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    symbol: Mapped[str | None] = mapped_column(String(SYMBOL_LEN))   # fees, VM, deliveries: the series
    trade_id: Mapped[int | None] = mapped_column(BigInteger)         # fees: the trade
    settlement_date: Mapped[dt.date | None] = mapped_column(Date)    # variation margin: the settlement day
    delivery_id: Mapped[str | None] = mapped_column(String(DELIVERY_ID_LEN))  # invoices and damages


class BalanceRecord(Base):
    """Cash per ledger account; system accounts (negative ids) included, so the column sums to zero."""

    __tablename__ = "balances"

    ledger_account: Mapped[int] = _id()
    balance_micros: Mapped[int] = mapped_column(BigInteger)
    updated_seq: Mapped[int] = mapped_column(BigInteger)


class DailySettlementRecord(Base):
    """A series' settlement for a day (`DailySettlement`): its price and the settlement job's digest, as
    last posted (an amendment overwrites the row; its corrections are in `ledger_postings`)."""

    __tablename__ = "daily_settlements"

    symbol: Mapped[str] = mapped_column(String(SYMBOL_LEN), ForeignKey("series.symbol"), primary_key=True)
    settlement_date: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    price_ticks: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(DIGEST_LEN))
    seq: Mapped[int] = mapped_column(BigInteger)
    ts_ns: Mapped[int] = mapped_column(BigInteger)


class DeliveryRecord(Base):
    """One delivery obligation between a seller and a buyer (`DeliveryAssigned`), and its settlement
    (`DeliverySettled`, as last posted: NULL until then). Keyed by the core's id `<symbol>/<n>`."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("symbol", "number"),
        Index(None, "seller_account_id"),
        Index(None, "buyer_account_id"),
    )

    delivery_id: Mapped[str] = mapped_column(String(DELIVERY_ID_LEN), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(SYMBOL_LEN), ForeignKey("series.symbol"))
    number: Mapped[int] = mapped_column(BigInteger)        # n of `<symbol>/<n>`, from 1 in allocation order
    seller_account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.account_id"))
    buyer_account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.account_id"))
    lots: Mapped[int] = mapped_column(BigInteger)
    gpus: Mapped[int] = mapped_column(BigInteger)          # G
    gpu_hours: Mapped[int] = mapped_column(BigInteger)     # Q
    fsp_ticks: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(LABEL_LEN))  # assigned | settled
    assigned_seq: Mapped[int] = mapped_column(BigInteger)
    assigned_ts_ns: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str | None] = mapped_column(String(DIGEST_LEN))
    effective_micro_gpuh: Mapped[int | None] = mapped_column(BigInteger)
    invoice_micros: Mapped[int | None] = mapped_column(BigInteger)
    damages_micros: Mapped[int | None] = mapped_column(BigInteger)
    defaulted: Mapped[bool | None] = mapped_column(Boolean)
    settled_seq: Mapped[int | None] = mapped_column(BigInteger)
    settled_ts_ns: Mapped[int | None] = mapped_column(BigInteger)


class IdempotencyRecord(Base):
    """The stored response to a mutation sent with an `Idempotency-Key` (per API key), so that a retry
    gets the original answer instead of acting twice. Rows older than the retention window are purged."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index(None, "created_ts_ns"),)

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_LEN), primary_key=True)
    request_digest: Mapped[str] = mapped_column(String(64))     # sha256 of method, path and body
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[bytes] = mapped_column(LargeBinary)
    created_ts_ns: Mapped[int] = mapped_column(BigInteger)


class ProjectorState(Base):
    """A single row (id 1): the journal seq of the last command whose events the store applied."""

    __tablename__ = "projector_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_event_seq: Mapped[int] = mapped_column(BigInteger)
    last_ts_ns: Mapped[int] = mapped_column(BigInteger)


class StatementRecord(Base):
    """One account's statement of record: a daily statement (`ref` the date, YYYY-MM-DD) or a delivery
    statement (`ref` the delivery id), its JSON as the settlement job wrote it. Written by the jobs, not
    by the projector (a statement is derived from a job's plan, not from events alone), so it is never
    reset with the projection. Served by `GET /v1/statements`."""

    __tablename__ = "statements"
    __table_args__ = (Index(None, "account_id", "date_ns"),)

    kind: Mapped[str] = mapped_column(String(LABEL_LEN), primary_key=True)        # daily | delivery
    ref: Mapped[str] = mapped_column(String(DELIVERY_ID_LEN), primary_key=True)
    account_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    date_ns: Mapped[int] = mapped_column(BigInteger)        # the settlement date, or the delivery's start
    body: Mapped[bytes] = mapped_column(LargeBinary)        # UTF-8 JSON
    written_ts_ns: Mapped[int] = mapped_column(BigInteger)


class StatementSetRecord(Base):
    """A settlement date whose statements are all written (the daily job's completion mark: a run
    killed after posting and before its statements leaves the date unmarked for the next run)."""

    __tablename__ = "statement_sets"

    kind: Mapped[str] = mapped_column(String(LABEL_LEN), primary_key=True)
    ref: Mapped[str] = mapped_column(String(DELIVERY_ID_LEN), primary_key=True)
    statements: Mapped[int] = mapped_column(BigInteger)
    written_ts_ns: Mapped[int] = mapped_column(BigInteger)


class JobRunRecord(Base):
    """One run of a settlement job by the exchange's scheduler (exchange/jobs/scheduler.py)."""

    __tablename__ = "job_runs"
    __table_args__ = (Index(None, "job_key"),)

    run_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(LABEL_LEN))            # daily | delivery
    job_key: Mapped[str] = mapped_column(String(128))              # what it settles: "daily:2026-12-04"
    trigger: Mapped[str] = mapped_column(String(LABEL_LEN))         # schedule | catch-up | retry
    attempt: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(LABEL_LEN))           # running | succeeded | failed | interrupted
    started_ts_ns: Mapped[int] = mapped_column(BigInteger)
    finished_ts_ns: Mapped[int | None] = mapped_column(BigInteger)
    progress_done: Mapped[int] = mapped_column(BigInteger)
    progress_total: Mapped[int | None] = mapped_column(BigInteger)
    counts: Mapped[str] = mapped_column(String(4_000))             # JSON object of the job's summary counts
    error: Mapped[str | None] = mapped_column(String(4_000))
