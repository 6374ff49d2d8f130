"""The event projector: applies a batch of sequenced events to the SQL store in one transaction.

It works in three steps so that a batch costs a handful of statements, not one round trip per event:

1. *load*: collect every existing row the batch touches (orders, positions, balances, accounts,
   series) and read them with a few `IN (...)` queries;
2. *apply*: replay the events on those rows in memory, in sequence order;
3. *flush*: write the touched rows back with one multi-row upsert per table and insert the new
   trades and ledger postings.

`Store.project` wraps this in the transaction that also advances `projector_state.last_seq`.

Event -> rows:

| event | rows |
|---|---|
| AccountCreated | accounts: insert (enabled); balances: the account at 0 |
| AccountStatusChanged | accounts: enabled |
| CashMoved | ledger_postings: one posting (its kind; VM postings carry the series and settlement date of the
  `DailySettlement` before them, invoice and damages the series and delivery id of the `DeliverySettled`
  before them); balances: both ledger accounts |
| SeriesListed | series: insert from the spec |
| SeriesHaltChanged | series: halted |
| TradingTerminated | series: terminated |
| OrderAccepted | orders: insert, status open |
| Trade | trades: insert; orders: maker and taker filled/remaining (closed at 0); positions: both sides
  (average-cost entry, as `exchange.domain.account.book_fill`); ledger_postings + balances: the fees |
| OrderCancelled | orders: remaining, cancelled, reason; canceled when nothing remains |
| OrderExpired | orders: remaining 0, expired lots counted as cancelled, status expired |
| OrderAmended | orders: price, remaining, quantity (cancelled = quantity - filled - remaining) |
| Rejected, DuplicateOrder, MassCancelDone, CashMoveDuplicate | nothing |
| CancelAllAfterSet, DeadMansSwitchFired | nothing (the switch's cancellations come as OrderCancelled) |
| DailySettlement | daily_settlements: upsert (price, digest); series: reference price, if the latest day |
| DeliveryAssigned | deliveries: insert, status assigned; positions: seller and buyer each move `lots` toward
  zero as a fill at the final settlement price (as the core does) |
| DeliverySettled | deliveries: the settlement columns, status settled |
| SettlementDuplicate, DeliveriesAssigned, DeliveriesAlreadyAssigned, DeliverySettlementDuplicate | nothing |
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from exchange.domain.account import fill_position
from exchange.domain.engine import NS_PER_DAY
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
from exchange.domain.ledger import FEES
from exchange.domain.order import OrderType, Side, StpMode, TimeInForce
from exchange.service.sequencer import Sequenced
from exchange.store.models import Base

SIDE = {int(s): s.label for s in Side}
ORDER_TYPE = {int(t): t.label for t in OrderType}
TIF = {int(t): t.label for t in TimeInForce}
STP = {int(m): m.label for m in StpMode}

OPEN, CLOSED, CANCELED, EXPIRED = "open", "closed", "canceled", "expired"
ASSIGNED, SETTLED = "assigned", "settled"  # delivery statuses
_EPOCH = dt.date(1970, 1, 1)

IN_CHUNK = 500  # parameters per IN (...) query: well below SQLite's and PostgreSQL's limits

Row = dict[str, Any]


class ProjectionError(RuntimeError):
    """The event stream does not fit the store (a gap, or an event about a row it never saw)."""


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


ACCOUNTS, SERIES, ORDERS, TRADES = _table("accounts"), _table("series"), _table("orders"), _table("trades")
POSITIONS, POSTINGS, BALANCES = _table("positions"), _table("ledger_postings"), _table("balances")
SETTLEMENTS, DELIVERIES = _table("daily_settlements"), _table("deliveries")


def settlement_date(date_ns: int) -> dt.date:
    """The calendar date (UTC) of a settlement day given as 00:00 UTC in ns."""
    return _EPOCH + dt.timedelta(days=date_ns // NS_PER_DAY)


class Projection:
    """One batch's working set. `load`, then `apply`, then `flush`, inside one transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.accounts: dict[int, Row] = {}
        self.series: dict[str, Row] = {}
        self.orders: dict[int, Row] = {}
        self.positions: dict[tuple[int, str], Row] = {}
        self.balances: dict[int, Row] = {}
        self.settlements: dict[tuple[str, dt.date], Row] = {}
        self.latest_settlement: dict[str, dt.date] = {}   # per series with a settlement in the batch
        self.deliveries: dict[str, Row] = {}
        self.trades: list[Row] = []
        self.postings: list[Row] = []
        self.last_event_seq = 0
        # What the CashMoved postings of the current command settle: (symbol, date, delivery id).
        self._context: tuple[str | None, dt.date | None, str | None] = (None, None, None)
        self._dirty_accounts: set[int] = set()
        self._dirty_series: set[str] = set()
        self._dirty_orders: set[int] = set()
        self._dirty_positions: set[tuple[int, str]] = set()
        self._dirty_balances: set[int] = set()
        self._dirty_deliveries: set[str] = set()
        self._handlers: dict[type, Callable[[Any], None]] = {
            Trade: self._trade, OrderAccepted: self._accepted, OrderCancelled: self._cancelled,
            OrderAmended: self._amended, OrderExpired: self._expired, CashMoved: self._cash_moved,
            AccountCreated: self._account_created, AccountStatusChanged: self._account_status,
            SeriesListed: self._series_listed, SeriesHaltChanged: self._series_halt,
            TradingTerminated: self._trading_terminated,
            Rejected: self._nothing, DuplicateOrder: self._nothing, MassCancelDone: self._nothing,
            CancelAllAfterSet: self._nothing, DeadMansSwitchFired: self._nothing,
            DailySettlement: self._daily_settlement, DeliveryAssigned: self._delivery_assigned,
            DeliverySettled: self._delivery_settled, SettlementDuplicate: self._nothing,
            DeliveriesAssigned: self._nothing, DeliveriesAlreadyAssigned: self._nothing,
            DeliverySettlementDuplicate: self._nothing, CashMoveDuplicate: self._nothing,
        }

    # -- 1. load -----------------------------------------------------------------------------
    def load(self, batch: Sequence[Sequenced]) -> None:
        """Read every existing row that the batch's events touch, in a few queries."""
        new_orders: set[int] = set()
        order_ids: set[int] = set()
        position_keys: set[tuple[int, str]] = set()
        ledger_accounts: set[int] = set()
        new_accounts: set[int] = set()
        account_ids: set[int] = set()
        new_series: set[str] = set()
        symbols: set[str] = set()
        settled_symbols: set[str] = set()
        new_deliveries: set[str] = set()
        delivery_ids: set[str] = set()
        for item in batch:
            for ev in item.events:
                event: Any = ev  # dispatch on the exact type (cheaper than isinstance on the hot path)
                kind = type(event)
                if kind is Trade:
                    order_ids.add(event.maker_order_id)
                    order_ids.add(event.taker_order_id)
                    position_keys.add((event.maker_account_id, event.symbol))
                    position_keys.add((event.taker_account_id, event.symbol))
                    if event.maker_fee_micros or event.taker_fee_micros:
                        ledger_accounts.update((event.maker_account_id, event.taker_account_id, FEES))
                elif kind is OrderAccepted:
                    new_orders.add(event.order_id)
                elif kind is OrderCancelled or kind is OrderExpired or kind is OrderAmended:
                    order_ids.add(event.order_id)
                elif kind is CashMoved:
                    ledger_accounts.add(event.from_account)
                    ledger_accounts.add(event.to_account)
                elif kind is AccountCreated:
                    new_accounts.add(event.account_id)
                elif kind is AccountStatusChanged:
                    account_ids.add(event.account_id)
                elif kind is SeriesListed:
                    new_series.add(event.spec.symbol)
                elif kind is SeriesHaltChanged or kind is TradingTerminated:
                    symbols.add(event.symbol)
                elif kind is DailySettlement:
                    settled_symbols.add(event.symbol)
                elif kind is DeliveryAssigned:
                    new_deliveries.add(event.delivery_id)
                    position_keys.add((event.seller, event.symbol))
                    position_keys.add((event.buyer, event.symbol))
                elif kind is DeliverySettled:
                    delivery_ids.add(event.delivery_id)
        symbols |= settled_symbols
        for row in self._select(ORDERS, ORDERS.c.order_id, order_ids - new_orders):
            self.orders[row["order_id"]] = row
        for row in self._select(ACCOUNTS, ACCOUNTS.c.account_id, account_ids - new_accounts):
            self.accounts[row["account_id"]] = row
        for row in self._select(SERIES, SERIES.c.symbol, symbols - new_series):
            self.series[row["symbol"]] = row
        for row in self._select(BALANCES, BALANCES.c.ledger_account, ledger_accounts - new_accounts):
            self.balances[row["ledger_account"]] = row
        for row in self._select(DELIVERIES, DELIVERIES.c.delivery_id, delivery_ids - new_deliveries):
            self.deliveries[row["delivery_id"]] = row
        if settled_symbols:
            latest = select(SETTLEMENTS.c.symbol, func.max(SETTLEMENTS.c.settlement_date)).where(
                SETTLEMENTS.c.symbol.in_(sorted(settled_symbols))).group_by(SETTLEMENTS.c.symbol)
            for symbol, date in self.conn.execute(latest):
                self.latest_settlement[symbol] = date
        if position_keys:
            wanted_symbols = {symbol for _, symbol in position_keys}
            for row in self._select(POSITIONS, POSITIONS.c.account_id, {a for a, _ in position_keys}):
                if row["symbol"] in wanted_symbols:
                    self.positions[(row["account_id"], row["symbol"])] = row

    def _select(self, table: Table, key: Any, values: Iterable[Any]) -> Iterable[Row]:
        ordered = sorted(values)
        for start in range(0, len(ordered), IN_CHUNK):
            chunk = ordered[start:start + IN_CHUNK]
            for row in self.conn.execute(select(table).where(key.in_(chunk))).mappings():
                yield dict(row)

    # -- 2. apply ----------------------------------------------------------------------------
    def apply(self, batch: Sequence[Sequenced]) -> None:
        handlers = self._handlers
        for item in batch:
            self._context = (None, None, None)
            for event in item.events:
                handler = handlers.get(type(event))
                if handler is None:
                    raise ProjectionError(f"the projector does not know event type {type(event).__name__}")
                handler(event)
                self.last_event_seq = event.seq

    @staticmethod
    def _nothing(_: object) -> None:
        """Rejected, DuplicateOrder, MassCancelDone, CancelAllAfterSet, DeadMansSwitchFired, SettlementDuplicate,
        DeliveriesAssigned, DeliveriesAlreadyAssigned, DeliverySettlementDuplicate: nothing to store."""

    def _order(self, order_id: int) -> Row:
        row = self.orders.get(order_id)
        if row is None:
            raise ProjectionError(f"an event refers to order {order_id}, which the store has never seen")
        self._dirty_orders.add(order_id)
        return row

    def _account(self, account_id: int) -> Row:
        row = self.accounts.get(account_id)
        if row is None:
            raise ProjectionError(f"an event refers to account {account_id}, which the store has never seen")
        self._dirty_accounts.add(account_id)
        return row

    def _series(self, symbol: str) -> Row:
        row = self.series.get(symbol)
        if row is None:
            raise ProjectionError(f"an event refers to series {symbol}, which the store has never seen")
        self._dirty_series.add(symbol)
        return row

    def _accepted(self, e: OrderAccepted) -> None:
        self.orders[e.order_id] = {
            "order_id": e.order_id, "account_id": e.account_id, "symbol": e.symbol, "side": SIDE[e.side],
            "order_type": ORDER_TYPE[e.order_type], "price_ticks": e.price_ticks, "qty_lots": e.qty_lots,
            "remaining_lots": e.qty_lots, "filled_lots": 0, "cancelled_lots": 0, "status": OPEN,
            "cancel_reason": None, "tif": TIF[e.tif], "post_only": e.post_only, "stp": STP[e.stp],
            "client_order_id": e.client_order_id, "expire_ts_ns": e.expire_ts_ns,
            "created_seq": e.seq, "created_ts_ns": e.ts_ns, "updated_seq": e.seq, "updated_ts_ns": e.ts_ns,
        }
        self._dirty_orders.add(e.order_id)

    def _trade(self, e: Trade) -> None:
        seq, ts, symbol, qty = e.seq, e.ts_ns, e.symbol, e.qty_lots
        self.trades.append({
            "symbol": symbol, "trade_id": e.trade_id, "seq": seq, "ts_ns": ts, "price_ticks": e.price_ticks,
            "qty_lots": qty, "aggressor_side": SIDE[e.aggressor_side],
            "maker_order_id": e.maker_order_id, "maker_account_id": e.maker_account_id,
            "taker_order_id": e.taker_order_id, "taker_account_id": e.taker_account_id,
            "maker_fee_micros": e.maker_fee_micros, "taker_fee_micros": e.taker_fee_micros,
        })
        for order_id, remaining in ((e.maker_order_id, e.maker_remaining_lots),
                                    (e.taker_order_id, e.taker_remaining_lots)):
            order = self._order(order_id)
            order["filled_lots"] += qty
            order["remaining_lots"] = remaining
            if not remaining:
                order["status"] = CLOSED
            order["updated_seq"] = seq
            order["updated_ts_ns"] = ts
        taker_lots = qty if e.aggressor_side == Side.BUY else -qty
        self._fill(e.taker_account_id, symbol, taker_lots, e.price_ticks, seq, ts)
        self._fill(e.maker_account_id, symbol, -taker_lots, e.price_ticks, seq, ts)
        if e.maker_fee_micros:
            self._post(seq, 0, ts, "fee", e.maker_account_id, FEES, e.maker_fee_micros, symbol, e.trade_id)
        if e.taker_fee_micros:
            self._post(seq, 1, ts, "fee", e.taker_account_id, FEES, e.taker_fee_micros, symbol, e.trade_id)

    def _fill(self, account_id: int, symbol: str, signed_lots: int, price_ticks: int, seq: int, ts: int) -> None:
        key = (account_id, symbol)
        row = self.positions.get(key)
        if row is None:
            row = self.positions[key] = {"account_id": account_id, "symbol": symbol, "position_lots": 0,
                                         "entry_cost_ticks": 0}
        row["position_lots"], row["entry_cost_ticks"] = fill_position(
            row["position_lots"], row["entry_cost_ticks"], signed_lots, price_ticks)
        row["updated_seq"] = seq
        row["updated_ts_ns"] = ts
        self._dirty_positions.add(key)

    def _post(self, seq: int, leg: int, ts: int, kind: str, from_account: int, to_account: int, amount: int,
              symbol: str | None = None, trade_id: int | None = None, date: dt.date | None = None,
              delivery_id: str | None = None) -> None:
        self.postings.append({"seq": seq, "leg": leg, "ts_ns": ts, "kind": kind, "from_account": from_account,
                              "to_account": to_account, "amount_micros": amount, "symbol": symbol,
                              "trade_id": trade_id, "settlement_date": date, "delivery_id": delivery_id})
        self._move(from_account, -amount, seq)
        self._move(to_account, amount, seq)

    def _move(self, ledger_account: int, delta: int, seq: int) -> None:
        row = self.balances.get(ledger_account)
        if row is None:  # first posting to a system account: its row starts at zero
            row = self.balances[ledger_account] = {"ledger_account": ledger_account, "balance_micros": 0}
        row["balance_micros"] += delta
        row["updated_seq"] = seq
        self._dirty_balances.add(ledger_account)

    def _cancelled(self, e: OrderCancelled) -> None:
        order = self._order(e.order_id)
        order["remaining_lots"] = e.remaining_lots
        order["cancelled_lots"] += e.cancelled_lots
        order["cancel_reason"] = str(e.reason)
        if not e.remaining_lots:
            order["status"] = CANCELED
        order["updated_seq"] = e.seq
        order["updated_ts_ns"] = e.ts_ns

    def _expired(self, e: OrderExpired) -> None:
        order = self._order(e.order_id)
        order["remaining_lots"] = 0
        order["cancelled_lots"] += e.expired_lots
        order["status"] = EXPIRED
        order["updated_seq"] = e.seq
        order["updated_ts_ns"] = e.ts_ns

    def _amended(self, e: OrderAmended) -> None:
        order = self._order(e.order_id)
        order["price_ticks"] = e.price_ticks
        order["remaining_lots"] = e.remaining_lots
        order["qty_lots"] = e.quantity_lots
        order["cancelled_lots"] = e.quantity_lots - order["filled_lots"] - e.remaining_lots
        order["updated_seq"] = e.seq
        order["updated_ts_ns"] = e.ts_ns

    def _cash_moved(self, e: CashMoved) -> None:
        symbol, date, delivery_id = self._context
        self._post(e.seq, 0, e.ts_ns, e.kind, e.from_account, e.to_account, e.amount_micros, symbol, None, date,
                   delivery_id)
        trader = e.to_account if e.to_account > 0 else e.from_account
        projected = self.balances[trader]["balance_micros"]
        if projected != e.balance_micros:
            raise ProjectionError(f"seq {e.seq}: account {trader} cash is {e.balance_micros} in the core but "
                                  f"{projected} in the store")

    def _account_created(self, e: AccountCreated) -> None:
        self.accounts[e.account_id] = {"account_id": e.account_id, "enabled": True, "created_seq": e.seq,
                                       "created_ts_ns": e.ts_ns, "updated_seq": e.seq, "updated_ts_ns": e.ts_ns}
        self._dirty_accounts.add(e.account_id)
        self.balances[e.account_id] = {"ledger_account": e.account_id, "balance_micros": 0, "updated_seq": e.seq}
        self._dirty_balances.add(e.account_id)

    def _account_status(self, e: AccountStatusChanged) -> None:
        row = self._account(e.account_id)
        row.update(enabled=e.enabled, updated_seq=e.seq, updated_ts_ns=e.ts_ns)

    def _series_halt(self, e: SeriesHaltChanged) -> None:
        row = self._series(e.symbol)
        row.update(halted=e.halted, updated_seq=e.seq, updated_ts_ns=e.ts_ns)

    def _trading_terminated(self, e: TradingTerminated) -> None:
        row = self._series(e.symbol)
        row.update(terminated=True, updated_seq=e.seq, updated_ts_ns=e.ts_ns)

    def _series_listed(self, e: SeriesListed) -> None:
        s = e.spec
        self.series[s.symbol] = {
            "symbol": s.symbol, "product": s.product, "generation": s.generation, "mfu_grade": s.mfu_grade,
            "period": str(s.period), "gpus_per_lot": s.gpus_per_lot, "delivery_start_ns": s.delivery_start_ns,
            "delivery_end_ns": s.delivery_end_ns, "trading_end_ns": s.trading_end_ns,
            "tick_micros": s.tick_micros, "reference_price_ticks": s.reference_price_ticks,
            "price_band_ppm": s.price_band_ppm, "max_order_lots": s.max_order_lots,
            "max_position_lots": s.max_position_lots, "initial_margin_ppm": s.initial_margin_ppm,
            "taker_fee_ppm": s.taker_fee_ppm, "maker_fee_ppm": s.maker_fee_ppm, "halted": False,
            "terminated": False, "listed_seq": e.seq, "listed_ts_ns": e.ts_ns, "updated_seq": e.seq,
            "updated_ts_ns": e.ts_ns,
        }
        self._dirty_series.add(s.symbol)

    def _daily_settlement(self, e: DailySettlement) -> None:
        date = settlement_date(e.date_ns)
        self.settlements[(e.symbol, date)] = {"symbol": e.symbol, "settlement_date": date,
                                              "price_ticks": e.price_ticks, "digest": e.digest, "seq": e.seq,
                                              "ts_ns": e.ts_ns}
        latest = self.latest_settlement.get(e.symbol)
        if latest is None or date >= latest:
            self.latest_settlement[e.symbol] = date
            self._series(e.symbol).update(reference_price_ticks=e.price_ticks, updated_seq=e.seq,
                                          updated_ts_ns=e.ts_ns)
        self._context = (e.symbol, date, None)

    def _delivery_assigned(self, e: DeliveryAssigned) -> None:
        self.deliveries[e.delivery_id] = {
            "delivery_id": e.delivery_id, "symbol": e.symbol, "number": int(e.delivery_id.rpartition("/")[2]),
            "seller_account_id": e.seller, "buyer_account_id": e.buyer, "lots": e.lots, "gpus": e.gpus,
            "gpu_hours": e.gpu_hours, "fsp_ticks": e.fsp_ticks, "status": ASSIGNED, "assigned_seq": e.seq,
            "assigned_ts_ns": e.ts_ns, "digest": None, "effective_micro_gpuh": None, "invoice_micros": None,
            "damages_micros": None, "defaulted": None, "settled_seq": None, "settled_ts_ns": None,
        }
        self._dirty_deliveries.add(e.delivery_id)
        self._fill(e.seller, e.symbol, e.lots, e.fsp_ticks, e.seq, e.ts_ns)
        self._fill(e.buyer, e.symbol, -e.lots, e.fsp_ticks, e.seq, e.ts_ns)

    def _delivery_settled(self, e: DeliverySettled) -> None:
        row = self.deliveries.get(e.delivery_id)
        if row is None:
            raise ProjectionError(f"an event refers to delivery {e.delivery_id}, which the store has never seen")
        row.update(status=SETTLED, digest=e.digest, effective_micro_gpuh=e.effective_micro_gpuh,
                   invoice_micros=e.invoice_micros, damages_micros=e.damages_micros, defaulted=e.default,
                   settled_seq=e.seq, settled_ts_ns=e.ts_ns)
        self._dirty_deliveries.add(e.delivery_id)
        self._context = (row["symbol"], None, e.delivery_id)

    # -- 3. flush ----------------------------------------------------------------------------
    def flush(self) -> None:
        """Write the batch back: parents before children, so foreign keys hold at every statement."""
        conn = self.conn
        self._upsert(ACCOUNTS, [self.accounts[k] for k in sorted(self._dirty_accounts)])
        self._upsert(SERIES, [self.series[k] for k in sorted(self._dirty_series)])
        self._upsert(ORDERS, [self.orders[k] for k in sorted(self._dirty_orders)])
        if self.trades:
            conn.execute(TRADES.insert(), self.trades)
        self._upsert(POSITIONS, [self.positions[k] for k in sorted(self._dirty_positions)])
        self._upsert(SETTLEMENTS, [self.settlements[k] for k in sorted(self.settlements)])
        self._upsert(DELIVERIES, [self.deliveries[k] for k in sorted(self._dirty_deliveries)])
        if self.postings:
            conn.execute(POSTINGS.insert(), self.postings)
        self._upsert(BALANCES, [self.balances[k] for k in sorted(self._dirty_balances)])

    def _upsert(self, table: Table, rows: list[Row]) -> None:
        if not rows:
            return
        name = self.conn.dialect.name
        if name == "sqlite":
            stmt: Any = sqlite.insert(table)
        elif name == "postgresql":
            stmt = postgresql.insert(table)
        else:  # pragma: no cover - Store refuses other dialects
            raise ProjectionError(f"no upsert for the {name} dialect")
        keys = [c.name for c in table.primary_key.columns]
        stmt = stmt.on_conflict_do_update(
            index_elements=keys, set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys})
        self.conn.execute(stmt, rows)
