"""The SQL store: a projection of the event stream (DESIGN.md principle 3), plus API keys.

`Store(url)` opens SQLite (the embedded default: `sqlite:///path/exchange.db`, WAL,
`synchronous=FULL`, foreign keys on) or PostgreSQL (`postgresql+psycopg://user@host/db`).
`migrate()` brings the schema to the newest Alembic revision.

`project(batch)` is the sequencer's `on_events` callback (and the service's catch-up target): it
applies a batch of `Sequenced` results in ONE transaction that also records the journal seq of the
last command applied (`last_seq()`). Commands at or below that seq are skipped, so feeding a batch
twice, or batches that overlap, is harmless, and a crash at any point leaves the store exactly at the
end of some batch: a restart feeds it everything after `last_seq()`. A batch that would leave a gap
(its first new seq is not `last_seq() + 1`) is refused with `ProjectionError`, never applied.

Reads return plain frozen dataclasses, never ORM objects.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from exchange.service.sequencer import Sequenced
from exchange.store.models import (
    AccountRecord,
    ApiKeyRecord,
    BalanceRecord,
    DailySettlementRecord,
    DeliveryRecord,
    IdempotencyRecord,
    LedgerPostingRecord,
    OrderRecord,
    PositionRecord,
    ProjectorState,
    SeriesRecord,
    TradeRecord,
)
from exchange.store.projector import OPEN, Projection, ProjectionError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
LIMIT_MAX = 1_000
TRADES_SCAN_MAX = 100_000   # trades read at once for candles (a bounded window of them)
SCOPE_RE = re.compile(r"^[a-z][a-z0-9_:.-]{0,31}$")

# API key secrets are 256 random bits, so the hash needs no great cost to resist guessing; scrypt with a
# per-key salt still makes a leaked table useless. The parameters are stored with each key.
SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_LEN = 2**14, 8, 1, 32


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    key_id: str
    account_id: int
    scopes: tuple[str, ...]
    created_ts_ns: int
    revoked_ts_ns: int | None


@dataclass(frozen=True, slots=True)
class AccountRow:
    account_id: int
    enabled: bool
    created_seq: int
    created_ts_ns: int


@dataclass(frozen=True, slots=True)
class SeriesRow:
    symbol: str
    product: str
    halted: bool
    terminated: bool
    reference_price_ticks: int
    trading_end_ns: int


@dataclass(frozen=True, slots=True)
class OrderRow:
    order_id: int
    account_id: int
    symbol: str
    side: str
    order_type: str
    price_ticks: int | None
    qty_lots: int
    remaining_lots: int
    filled_lots: int
    cancelled_lots: int
    status: str
    cancel_reason: str | None
    tif: str
    post_only: bool
    stp: str
    client_order_id: str | None
    expire_ts_ns: int | None
    created_seq: int
    created_ts_ns: int
    updated_seq: int
    updated_ts_ns: int


@dataclass(frozen=True, slots=True)
class TradeRow:
    symbol: str
    trade_id: int
    seq: int
    ts_ns: int
    price_ticks: int
    qty_lots: int
    aggressor_side: str
    maker_order_id: int
    maker_account_id: int
    taker_order_id: int
    taker_account_id: int
    maker_fee_micros: int
    taker_fee_micros: int


@dataclass(frozen=True, slots=True)
class PositionRow:
    account_id: int
    symbol: str
    position_lots: int
    entry_cost_ticks: int


@dataclass(frozen=True, slots=True)
class PostingRow:
    seq: int
    leg: int
    ts_ns: int
    kind: str
    from_account: int
    to_account: int
    amount_micros: int
    symbol: str | None
    trade_id: int | None
    settlement_date: dt.date | None = None   # variation margin: the settlement day
    delivery_id: str | None = None           # delivery invoices and damages


@dataclass(frozen=True, slots=True)
class DailySettlementRow:
    symbol: str
    settlement_date: dt.date
    price_ticks: int
    digest: str
    seq: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """A delivery; the settlement fields are None until it is settled (status "assigned" -> "settled")."""

    delivery_id: str
    symbol: str
    number: int
    seller_account_id: int
    buyer_account_id: int
    lots: int
    gpus: int
    gpu_hours: int
    fsp_ticks: int
    status: str
    assigned_seq: int
    assigned_ts_ns: int
    digest: str | None
    effective_micro_gpuh: int | None
    invoice_micros: int | None
    damages_micros: int | None
    defaulted: bool | None
    settled_seq: int | None
    settled_ts_ns: int | None


def _check_limit(limit: int) -> None:
    if not 0 < limit <= LIMIT_MAX:
        raise ValueError(f"limit must be in 1..{LIMIT_MAX}, got {limit}")


def _scrypt(secret: str, salt: bytes, params: str) -> bytes:
    scheme, _, rest = params.partition(":")
    if scheme != "scrypt":
        raise ValueError(f"unknown API key hash scheme {scheme!r}")
    p = dict(kv.split("=") for kv in rest.split(","))
    n, r, par = int(p["n"]), int(p["r"]), int(p["p"])
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=par, dklen=HASH_LEN, maxmem=256 * n * r + 2**20)


def existing_store_seq(url: str) -> int | None:
    """The projected seq of the store at `url` if it exists and has been migrated, else None; creates
    nothing (a SQLite URL to a missing file is no store)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not (parsed.database and Path(parsed.database).exists()):
        return None
    store = Store(url)
    try:
        return store.last_seq()
    except SQLAlchemyError:
        return None
    finally:
        store.close()


class Store:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"the store runs on SQLite or PostgreSQL, not {backend!r}")
        self.url = url
        self.dialect = backend
        if backend == "sqlite" and parsed.database and parsed.database != ":memory:":
            # Created private (0600); SQLite gives its -wal and -shm files the database file's mode.
            with contextlib.suppress(FileExistsError, FileNotFoundError):
                os.close(os.open(parsed.database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self.engine: Engine = create_engine(url, echo=echo)
        if backend == "sqlite":
            _sqlite_setup(self.engine)
        self._dummy_salt = secrets.token_bytes(16)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ------------------------------------------------------------------------------
    def alembic_config(self, connection: Connection | None = None) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        if connection is not None:
            config.attributes["connection"] = connection
        return config

    def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema to `revision` (the newest by default). Idempotent."""
        with self._begin(immediate=True) as conn:
            command.upgrade(self.alembic_config(conn), revision)

    # -- transactions ------------------------------------------------------------------------
    @contextmanager
    def _begin(self, immediate: bool = False) -> Iterator[Connection]:
        """A transaction. `immediate` takes SQLite's write lock at BEGIN (no lock upgrade that could fail)."""
        with self.engine.connect() as conn:
            if immediate:
                conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    def transaction(self, write: bool = False) -> AbstractContextManager[Connection]:
        """A transaction for the store's other tables (statements, job runs: exchange/store/*.py)."""
        return self._begin(immediate=write)

    # -- projection --------------------------------------------------------------------------
    def last_seq(self) -> int:
        """The journal seq of the last command whose events the store has applied (0: none)."""
        with self._begin() as conn:
            return int(conn.execute(select(ProjectorState.last_seq).where(ProjectorState.id == 1)).scalar_one())

    def project(self, batch: Sequence[Sequenced]) -> None:
        """Apply a batch of sequenced events in one transaction; skip what was already applied."""
        if not batch:
            return
        with self._begin(immediate=True) as conn:
            state = conn.execute(
                select(ProjectorState.last_seq, ProjectorState.last_event_seq)
                .where(ProjectorState.id == 1).with_for_update()).one()
            last = int(state.last_seq)
            todo = [item for item in batch if item.seq > last]
            if not todo:
                return
            expected = last + 1
            for item in todo:
                if item.seq != expected:
                    raise ProjectionError(f"seq {item.seq} does not follow {expected - 1}: the store would miss "
                                          "commands (feed it from the journal)")
                expected += 1
            projection = Projection(conn)
            projection.load(todo)
            projection.apply(todo)
            projection.flush()
            conn.execute(update(ProjectorState).where(ProjectorState.id == 1).values(
                last_seq=todo[-1].seq, last_ts_ns=todo[-1].ts_ns,
                last_event_seq=max(int(state.last_event_seq), projection.last_event_seq)))

    def reset_projection(self, accounts: set[int]) -> None:
        """Forget every projected row so that the projection is rebuilt from the journal's first seq:
        the operator's way out after accepting a loss of committed journal records (`exchange recover
        --accept-loss`), when the store is ahead of the journal. API keys stay (they are not in the
        journal), except those of accounts the journal no longer has (`accounts` are the ones it has);
        idempotency answers go, since they may describe commands that were lost."""
        with self._begin(immediate=True) as conn:
            for record in (TradeRecord, LedgerPostingRecord, DeliveryRecord, DailySettlementRecord, PositionRecord,
                           BalanceRecord, OrderRecord, IdempotencyRecord):
                conn.execute(delete(record))
            conn.execute(delete(ApiKeyRecord).where(ApiKeyRecord.account_id.not_in(accounts)))
            conn.execute(delete(AccountRecord).where(AccountRecord.account_id.not_in(accounts)))
            conn.execute(delete(SeriesRecord))
            conn.execute(update(ProjectorState).where(ProjectorState.id == 1).values(
                last_seq=0, last_ts_ns=0, last_event_seq=0))

    # -- API keys ----------------------------------------------------------------------------
    def create_api_key(self, account_id: int, scopes: Sequence[str], now_ns: int,
                       derive_secret: Callable[[str], str] | None = None) -> tuple[str, str]:
        """A new key for an account: (key_id, secret). The secret is returned only here; the store
        keeps a salted scrypt hash of it. `derive_secret(key_id)`, if given, makes the secret (the API
        server derives secrets from its master key, so that it can check signatures without storing
        them: `exchange.signing.derive_secret`); otherwise it is random."""
        scope_set = sorted(set(scopes))
        for scope in scope_set:
            if not SCOPE_RE.match(scope):
                raise ValueError(f"invalid scope {scope!r}")
        key_id = "ak_" + secrets.token_hex(8)
        secret = derive_secret(key_id) if derive_secret is not None else secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        params = f"scrypt:n={SCRYPT_N},r={SCRYPT_R},p={SCRYPT_P}"
        digest = _scrypt(secret, salt, params)
        with self._begin(immediate=True) as conn:
            if conn.execute(select(AccountRecord.account_id).where(AccountRecord.account_id == account_id)).first() \
                    is None:
                raise ValueError(f"no account {account_id} in the store")
            conn.execute(insert(ApiKeyRecord).values(
                key_id=key_id, account_id=account_id, hash_params=params, salt=salt, secret_hash=digest,
                scopes=" ".join(scope_set), created_ts_ns=now_ns, revoked_ts_ns=None))
        return key_id, secret

    def verify_api_key(self, key_id: str, secret: str) -> ApiKeyRow | None:
        """The key if `secret` is its secret and it is not revoked, else None. Constant time in the
        secret; an unknown key id costs a hash too, so timing does not tell which ids exist."""
        with self._begin() as conn:
            record = conn.execute(select(ApiKeyRecord.__table__).where(ApiKeyRecord.key_id == key_id)).first()
        if record is None:
            _scrypt(secret, self._dummy_salt, f"scrypt:n={SCRYPT_N},r={SCRYPT_R},p={SCRYPT_P}")
            return None
        ok = hmac.compare_digest(_scrypt(secret, record.salt, record.hash_params), record.secret_hash)
        if not ok or record.revoked_ts_ns is not None:
            return None
        return ApiKeyRow(record.key_id, record.account_id, tuple(record.scopes.split()), record.created_ts_ns,
                         record.revoked_ts_ns)

    def api_key_count(self) -> int:
        with self._begin() as conn:
            return int(conn.execute(select(func.count()).select_from(ApiKeyRecord)).scalar_one())

    def api_key(self, key_id: str) -> ApiKeyRow | None:
        """A key by id, revoked or not (no secret check: the API checks signatures itself)."""
        with self._begin() as conn:
            record = conn.execute(select(ApiKeyRecord.__table__).where(ApiKeyRecord.key_id == key_id)).first()
        if record is None:
            return None
        return ApiKeyRow(record.key_id, record.account_id, tuple(record.scopes.split()), record.created_ts_ns,
                         record.revoked_ts_ns)

    def revoke_api_key(self, key_id: str, now_ns: int) -> bool:
        """Revoke a key; False if there is no such live key."""
        with self._begin(immediate=True) as conn:
            result = conn.execute(update(ApiKeyRecord).where(ApiKeyRecord.key_id == key_id,
                                                             ApiKeyRecord.revoked_ts_ns.is_(None))
                                  .values(revoked_ts_ns=now_ns))
            return bool(result.rowcount)

    def api_key_record(self, key_id: str) -> dict[str, Any] | None:
        """The stored row of a key, hash and salt included (for audits and tests)."""
        with self._begin() as conn:
            row = conn.execute(select(ApiKeyRecord.__table__).where(ApiKeyRecord.key_id == key_id)).mappings().first()
        return dict(row) if row is not None else None

    # -- reads -------------------------------------------------------------------------------
    def accounts(self) -> list[AccountRow]:
        with self._begin() as conn:
            rows = conn.execute(select(AccountRecord.account_id, AccountRecord.enabled, AccountRecord.created_seq,
                                       AccountRecord.created_ts_ns).order_by(AccountRecord.account_id)).all()
        return [AccountRow(*row) for row in rows]

    def series(self) -> list[SeriesRow]:
        with self._begin() as conn:
            rows = conn.execute(select(SeriesRecord.symbol, SeriesRecord.product, SeriesRecord.halted,
                                       SeriesRecord.terminated, SeriesRecord.reference_price_ticks,
                                       SeriesRecord.trading_end_ns).order_by(SeriesRecord.symbol)).all()
        return [SeriesRow(*row) for row in rows]

    def orders(self, account_id: int, open_only: bool = False, limit: int = 100,
               after_order_id: int = 0, *, closed_only: bool = False, symbol: str | None = None) -> list[OrderRow]:
        """An account's orders by ascending id, after `after_order_id` (keyset pagination)."""
        _check_limit(limit)
        assert not (open_only and closed_only)
        query = select(OrderRecord.__table__).where(OrderRecord.account_id == account_id,
                                                    OrderRecord.order_id > after_order_id)
        if open_only:
            query = query.where(OrderRecord.status == OPEN)
        if closed_only:
            query = query.where(OrderRecord.status != OPEN)
        if symbol is not None:
            query = query.where(OrderRecord.symbol == symbol)
        with self._begin() as conn:
            rows = conn.execute(query.order_by(OrderRecord.order_id).limit(limit)).mappings().all()
        return [OrderRow(**row) for row in rows]

    def order(self, account_id: int, order_id: int | None = None,
              client_order_id: str | None = None) -> OrderRow | None:
        """One of the account's orders, by exchange id or by client order id (another account's: None). A
        client order id used again after the core forgot it (24 h after its order closed) names the newest."""
        assert (order_id is None) != (client_order_id is None)
        query = select(OrderRecord.__table__).where(OrderRecord.account_id == account_id)
        if order_id is not None:
            query = query.where(OrderRecord.order_id == order_id)
        else:
            query = query.where(OrderRecord.client_order_id == client_order_id).order_by(OrderRecord.order_id.desc())
        with self._begin() as conn:
            row = conn.execute(query).mappings().first()
        return OrderRow(**row) if row is not None else None

    def fill_totals(self, order_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        """{order_id: (lots filled, sum of price_ticks x lots)} over the orders' trades (average prices)."""
        totals: dict[int, tuple[int, int]] = {}
        if not order_ids:
            return totals
        notional = func.sum(TradeRecord.price_ticks * TradeRecord.qty_lots)
        with self._begin() as conn:
            for column in (TradeRecord.maker_order_id, TradeRecord.taker_order_id):
                rows = conn.execute(select(column, func.sum(TradeRecord.qty_lots), notional)
                                    .where(column.in_(list(order_ids))).group_by(column)).all()
                for order_id, lots, cost in rows:
                    old_lots, old_cost = totals.get(order_id, (0, 0))
                    totals[int(order_id)] = (old_lots + int(lots), old_cost + int(cost))
        return totals

    def fills(self, account_id: int, symbol: str | None = None, limit: int = 100,
              after_seq: int = 0) -> list[TradeRow]:
        """Trades in which the account was maker or taker, by ascending seq, after `after_seq`. One
        command's trades share a seq, so a page is extended to the end of its last seq (like `ledger`)."""
        _check_limit(limit)
        mine = or_(TradeRecord.maker_account_id == account_id, TradeRecord.taker_account_id == account_id)
        if symbol is not None:
            mine = and_(mine, TradeRecord.symbol == symbol)
        order = (TradeRecord.seq, TradeRecord.symbol, TradeRecord.trade_id)
        table = TradeRecord.__table__
        with self._begin() as conn:
            rows = list(conn.execute(select(table).where(mine, TradeRecord.seq > after_seq)
                                     .order_by(*order).limit(limit)).mappings())
            if len(rows) == limit:
                last = rows[-1]
                rows += conn.execute(select(table).where(mine, TradeRecord.seq == last["seq"],
                                                         TradeRecord.trade_id > last["trade_id"])
                                     .order_by(*order)).mappings()
        return [TradeRow(**row) for row in rows]

    def trades_between(self, symbol: str, start_ns: int, end_ns: int, limit: int) -> list[TradeRow]:
        """A series' trades with start_ns <= ts_ns < end_ns, oldest first, at most `limit`."""
        if not 0 < limit <= TRADES_SCAN_MAX:
            raise ValueError(f"limit must be in 1..{TRADES_SCAN_MAX}, got {limit}")
        with self._begin() as conn:
            rows = conn.execute(select(TradeRecord.__table__).where(
                TradeRecord.symbol == symbol, TradeRecord.ts_ns >= start_ns, TradeRecord.ts_ns < end_ns)
                .order_by(TradeRecord.trade_id).limit(limit)).mappings().all()
        return [TradeRow(**row) for row in rows]

    def trade_stats(self, symbol: str, start_ns: int) -> tuple[int, int | None, int | None, int | None, int | None]:
        """(lots traded, high, low, first price, last price) of a series' trades since `start_ns`."""
        where = (TradeRecord.symbol == symbol, TradeRecord.ts_ns >= start_ns)
        with self._begin() as conn:
            lots, high, low = conn.execute(select(func.coalesce(func.sum(TradeRecord.qty_lots), 0),
                                                  func.max(TradeRecord.price_ticks),
                                                  func.min(TradeRecord.price_ticks)).where(*where)).one()
            first = conn.execute(select(TradeRecord.price_ticks).where(*where)
                                 .order_by(TradeRecord.trade_id).limit(1)).scalar()
            last = conn.execute(select(TradeRecord.price_ticks).where(TradeRecord.symbol == symbol)
                                .order_by(TradeRecord.trade_id.desc()).limit(1)).scalar()
        return int(lots), high, low, first, last

    # -- idempotency keys ----------------------------------------------------------------------
    def idempotent_response(self, key_id: str, idempotency_key: str) -> tuple[str, int, bytes] | None:
        """(request digest, status, body) stored for this key, or None."""
        with self._begin() as conn:
            row = conn.execute(select(IdempotencyRecord.request_digest, IdempotencyRecord.status_code,
                                      IdempotencyRecord.response_body)
                               .where(IdempotencyRecord.key_id == key_id,
                                      IdempotencyRecord.idempotency_key == idempotency_key)).first()
        return (row[0], int(row[1]), bytes(row[2])) if row is not None else None

    def save_idempotent_response(self, key_id: str, idempotency_key: str, request_digest: str, status_code: int,
                                 body: bytes, now_ns: int, retention_ns: int) -> None:
        """Store a response (first writer wins) and purge rows older than the retention window."""
        with self._begin(immediate=True) as conn:
            exists = conn.execute(select(IdempotencyRecord.key_id).where(
                IdempotencyRecord.key_id == key_id, IdempotencyRecord.idempotency_key == idempotency_key)).first()
            if exists is None:
                conn.execute(insert(IdempotencyRecord).values(
                    key_id=key_id, idempotency_key=idempotency_key, request_digest=request_digest,
                    status_code=status_code, response_body=body, created_ts_ns=now_ns))
            conn.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_ts_ns < now_ns - retention_ns))

    def trades(self, symbol: str, limit: int = 100, after_trade_id: int = 0) -> list[TradeRow]:
        """A series' trades by ascending trade id, after `after_trade_id`."""
        _check_limit(limit)
        with self._begin() as conn:
            rows = conn.execute(select(TradeRecord.__table__).where(
                TradeRecord.symbol == symbol, TradeRecord.trade_id > after_trade_id)
                .order_by(TradeRecord.trade_id).limit(limit)).mappings().all()
        return [TradeRow(**row) for row in rows]

    def recent_trades(self, limit: int, *, symbol: str | None = None, account_id: int | None = None,
                      before: tuple[Any, ...] | None = None, after: tuple[Any, ...] | None = None,
                      since_ns: int | None = None, until_ns: int | None = None) -> tuple[list[TradeRow], bool]:
        """Trades newest first, at most `limit`, and whether more lie beyond them in the direction of travel.

        Without `account_id`: a series' public trades, keyed by trade id (`(trade_id,)`). With it: the
        account's fills (maker or taker), optionally of one series, keyed by `(seq, symbol, trade_id)`
        (trade ids are per series; seq orders them across series). `before` pages towards older trades
        (keys < before), `after` towards newer ones (keys > after); `since_ns` <= ts_ns < `until_ns`."""
        _check_limit(limit)
        if account_id is None:
            assert symbol is not None, "public trades are per series"
            key = tuple_(TradeRecord.trade_id)
            where = [TradeRecord.symbol == symbol]
        else:
            key = tuple_(TradeRecord.seq, TradeRecord.symbol, TradeRecord.trade_id)
            where = [or_(TradeRecord.maker_account_id == account_id, TradeRecord.taker_account_id == account_id)]
            if symbol is not None:
                where.append(TradeRecord.symbol == symbol)
        if since_ns is not None:
            where.append(TradeRecord.ts_ns >= since_ns)
        if until_ns is not None:
            where.append(TradeRecord.ts_ns < until_ns)
        if before is not None:
            where.append(key < tuple_(*[literal(v) for v in before]))
        if after is not None:
            where.append(key > tuple_(*[literal(v) for v in after]))
        columns = list(key.clauses)
        order = [c.asc() for c in columns] if after is not None else [c.desc() for c in columns]
        with self._begin() as conn:
            rows = [TradeRow(**row) for row in conn.execute(select(TradeRecord.__table__).where(*where)
                                                            .order_by(*order).limit(limit + 1)).mappings()]
        more = len(rows) > limit
        rows = rows[:limit]
        if after is not None:
            rows.reverse()
        return rows, more

    def trade_totals(self) -> tuple[int, int]:
        """(number of trades, total lots traded) over all series."""
        with self._begin() as conn:
            count, lots = conn.execute(select(func.count(), func.coalesce(func.sum(TradeRecord.qty_lots), 0))).one()
        return int(count), int(lots)

    def positions(self, account_id: int) -> list[PositionRow]:
        """An account's positions by symbol (flat ones included once the account has traded the series)."""
        with self._begin() as conn:
            rows = conn.execute(select(PositionRecord.account_id, PositionRecord.symbol, PositionRecord.position_lots,
                                       PositionRecord.entry_cost_ticks)
                                .where(PositionRecord.account_id == account_id)
                                .order_by(PositionRecord.symbol)).all()
        return [PositionRow(*row) for row in rows]

    def balances(self) -> dict[int, int]:
        """Cash of every ledger account, system accounts (negative ids) included; sums to zero."""
        with self._begin() as conn:
            rows = conn.execute(select(BalanceRecord.ledger_account, BalanceRecord.balance_micros)
                                .order_by(BalanceRecord.ledger_account)).all()
        return {int(account): int(balance) for account, balance in rows}

    def ledger(self, account_id: int, limit: int = 100, after_seq: int = 0) -> list[PostingRow]:
        """Postings to or from a ledger account by ascending (seq, leg), after `after_seq`.

        A page never splits one event's postings (a trade posts two fees to the fee account under one
        seq), so paging on the last row's seq misses nothing; a page may hold a row more than `limit`.
        """
        _check_limit(limit)
        table = LedgerPostingRecord.__table__
        mine = or_(LedgerPostingRecord.from_account == account_id, LedgerPostingRecord.to_account == account_id)
        order = (LedgerPostingRecord.seq, LedgerPostingRecord.leg)
        with self._begin() as conn:
            rows = list(conn.execute(select(table).where(mine, LedgerPostingRecord.seq > after_seq)
                                     .order_by(*order).limit(limit)).mappings())
            if len(rows) == limit:
                last = rows[-1]
                rows += conn.execute(select(table).where(mine, LedgerPostingRecord.seq == last["seq"],
                                                         LedgerPostingRecord.leg > last["leg"])
                                     .order_by(*order)).mappings()
        return [PostingRow(**row) for row in rows]

    # -- settlement --------------------------------------------------------------------------
    def daily_settlements(self, symbol: str | None = None, date: dt.date | None = None) -> list[DailySettlementRow]:
        """Daily settlements by (symbol, date), optionally of one series and/or one date."""
        query = select(DailySettlementRecord.__table__)
        if symbol is not None:
            query = query.where(DailySettlementRecord.symbol == symbol)
        if date is not None:
            query = query.where(DailySettlementRecord.settlement_date == date)
        with self._begin() as conn:
            rows = conn.execute(query.order_by(DailySettlementRecord.symbol,
                                               DailySettlementRecord.settlement_date)).mappings().all()
        return [DailySettlementRow(**row) for row in rows]

    def deliveries(self, symbol: str | None = None, account_id: int | None = None) -> list[DeliveryRow]:
        """Deliveries by (symbol, number), optionally of one series and/or with one account as seller or buyer."""
        query = select(DeliveryRecord.__table__)
        if symbol is not None:
            query = query.where(DeliveryRecord.symbol == symbol)
        if account_id is not None:
            query = query.where(or_(DeliveryRecord.seller_account_id == account_id,
                                    DeliveryRecord.buyer_account_id == account_id))
        with self._begin() as conn:
            rows = conn.execute(query.order_by(DeliveryRecord.symbol, DeliveryRecord.number)).mappings().all()
        return [DeliveryRow(**row) for row in rows]

    def delivery(self, delivery_id: str) -> DeliveryRow | None:
        with self._begin() as conn:
            row = conn.execute(select(DeliveryRecord.__table__)
                               .where(DeliveryRecord.delivery_id == delivery_id)).mappings().first()
        return DeliveryRow(**row) if row is not None else None


def _sqlite_setup(engine: Engine) -> None:
    """WAL, synchronous=FULL, foreign keys, and transactions the store controls (pysqlite's own
    implicit BEGIN is turned off; see SQLAlchemy's "Serializable isolation / Savepoints" recipe)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")
