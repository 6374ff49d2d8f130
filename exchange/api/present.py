"""Turn core and store values into the API's JSON shapes (and wire values back into core units).

Everything is exact: ticks and micro-dollars become decimal strings, never floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from exchange.domain.account import Exposure
from exchange.domain.events import OrderAccepted, OrderCancelled, Trade
from exchange.domain.order import OrderType, Side, StpMode, TimeInForce
from exchange.domain.spec import SeriesSpec
from exchange.domain.units import micros_to_usd, ticks_to_price
from exchange.store.store import OrderRow, PostingRow, TradeRow

PRICE_PLACES = Decimal("0.000001")   # average and entry prices: rounded half-even to a micro-dollar

SIDES = {"buy": Side.BUY, "sell": Side.SELL}
ORDER_TYPES = {"limit": OrderType.LIMIT, "market": OrderType.MARKET}
TIFS = {"GTC": TimeInForce.GTC, "GTD": TimeInForce.GTD, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}
STPS = {"cancel_newest": StpMode.CANCEL_NEWEST, "cancel_oldest": StpMode.CANCEL_OLDEST,
        "cancel_both": StpMode.CANCEL_BOTH, "decrement": StpMode.DECREMENT}
# The store keeps lower-case labels; the API spells time in force as exchanges do.
_TIF_WIRE = {"gtc": "GTC", "gtd": "GTD", "ioc": "IOC", "fok": "FOK"}


def price(ticks: int, spec: SeriesSpec) -> str:
    return str(ticks_to_price(ticks, spec.tick_micros))


def usd(micros: int) -> str:
    return str(micros_to_usd(micros))


def rate(ppm: int) -> str:
    return str((Decimal(ppm) / 1_000_000).normalize())


def _average(cost_ticks: int, lots: int, spec: SeriesSpec) -> str:
    value = Decimal(cost_ticks) * spec.tick_micros / lots / 1_000_000
    return str(value.quantize(PRICE_PLACES))


def series(spec: SeriesSpec, reference_price_ticks: int, halted: bool, terminated: bool) -> dict[str, Any]:
    low, high = spec.price_band_ticks(reference_price_ticks)
    return {
        "symbol": spec.symbol, "product": spec.product, "generation": spec.generation,
        "mfu_grade": str(spec.mfu_grade), "period": str(spec.period), "gpus_per_lot": spec.gpus_per_lot,
        "lot_gpu_hours": spec.lot_gpu_hours, "delivery_start_ns": spec.delivery_start_ns,
        "delivery_end_ns": spec.delivery_end_ns, "trading_end_ns": spec.trading_end_ns,
        "tick_size": usd(spec.tick_micros), "reference_price": price(reference_price_ticks, spec),
        "price_band_low": price(low, spec), "price_band_high": price(high, spec),
        "max_order_lots": spec.max_order_lots, "max_position_lots": spec.max_position_lots,
        "initial_margin_rate": rate(spec.initial_margin_ppm),
        "initial_margin_per_lot": usd(spec.initial_margin_per_lot_micros(reference_price_ticks)),
        "taker_fee_rate": rate(spec.taker_fee_ppm), "maker_fee_rate": rate(spec.maker_fee_ppm),
        "halted": halted, "terminated": terminated,
    }


def order(row: OrderRow, spec: SeriesSpec, fills: tuple[int, int] | None) -> dict[str, Any]:
    average = _average(fills[1], fills[0], spec) if fills and fills[0] else None
    return {
        "id": str(row.order_id), "client_order_id": row.client_order_id, "symbol": row.symbol,
        "side": row.side, "type": row.order_type, "time_in_force": _TIF_WIRE.get(row.tif, row.tif.upper()),
        "post_only": row.post_only, "stp": row.stp,
        "price": price(row.price_ticks, spec) if row.price_ticks is not None else None,
        "amount": row.qty_lots, "filled": row.filled_lots, "remaining": row.remaining_lots,
        "cancelled": row.cancelled_lots, "average": average, "status": row.status,
        "cancel_reason": row.cancel_reason, "expire_time_ns": row.expire_ts_ns,
        "created_ns": row.created_ts_ns, "updated_ns": row.updated_ts_ns, "seq": row.updated_seq,
    }


def placed_order(accepted: OrderAccepted, events: Sequence[object], spec: SeriesSpec) -> dict[str, Any]:
    """A new order as its own command's events leave it: the same shape and values the store gives
    (`order`), without reading the store (the hot path of order entry)."""
    order_id = accepted.order_id
    remaining, filled, cost, cancelled = accepted.qty_lots, 0, 0, 0
    status, reason = "open", None
    updated_seq, updated_ts = accepted.seq, accepted.ts_ns
    for event in events:
        kind = type(event)
        if kind is Trade:
            assert isinstance(event, Trade)
            if order_id in (event.taker_order_id, event.maker_order_id):
                filled += event.qty_lots
                cost += event.qty_lots * event.price_ticks
                remaining = (event.taker_remaining_lots if event.taker_order_id == order_id
                             else event.maker_remaining_lots)
                if not remaining:
                    status = "closed"
                updated_seq, updated_ts = event.seq, event.ts_ns
        elif kind is OrderCancelled:
            assert isinstance(event, OrderCancelled)
            if event.order_id == order_id:
                cancelled += event.cancelled_lots
                remaining = event.remaining_lots
                reason = str(event.reason)
                if not remaining:
                    status = "canceled"
                updated_seq, updated_ts = event.seq, event.ts_ns
    return {
        "id": str(order_id), "client_order_id": accepted.client_order_id, "symbol": accepted.symbol,
        "side": Side(accepted.side).label, "type": OrderType(accepted.order_type).label,
        "time_in_force": TimeInForce(accepted.tif).name, "post_only": accepted.post_only,
        "stp": StpMode(accepted.stp).label,
        "price": price(accepted.price_ticks, spec) if accepted.price_ticks is not None else None,
        "amount": accepted.qty_lots, "filled": filled, "remaining": remaining, "cancelled": cancelled,
        "average": _average(cost, filled, spec) if filled else None, "status": status, "cancel_reason": reason,
        "expire_time_ns": accepted.expire_ts_ns, "created_ns": accepted.ts_ns, "updated_ns": updated_ts,
        "seq": updated_seq,
    }


def trade(row: TradeRow, spec: SeriesSpec) -> dict[str, Any]:
    return {"trade_id": row.trade_id, "symbol": row.symbol, "price": price(row.price_ticks, spec),
            "amount": row.qty_lots, "side": row.aggressor_side, "ts_ns": row.ts_ns, "seq": row.seq}


def fill(row: TradeRow, account_id: int, spec: SeriesSpec) -> dict[str, Any]:
    maker = row.maker_account_id == account_id
    taker_side = row.aggressor_side
    side = taker_side if not maker else ("sell" if taker_side == "buy" else "buy")
    return {"trade_id": row.trade_id, "order_id": str(row.maker_order_id if maker else row.taker_order_id),
            "symbol": row.symbol, "side": side, "price": price(row.price_ticks, spec), "amount": row.qty_lots,
            "fee": usd(row.maker_fee_micros if maker else row.taker_fee_micros),
            "liquidity": "maker" if maker else "taker", "ts_ns": row.ts_ns, "seq": row.seq}


def position(symbol: str, exposure: Exposure, spec: SeriesSpec, mark_ticks: int) -> dict[str, Any]:
    lots = exposure.position_lots
    held = abs(lots)
    entry = _average(exposure.entry_cost_ticks, held, spec) if lots else None
    # The entry cost is price x |lots| (unsigned); the P&L at the mark is its change, signed by direction,
    # in tick-lots, times the value of one tick-lot.
    pnl_tick_lots = mark_ticks * held - exposure.entry_cost_ticks
    pnl_micros = (pnl_tick_lots if lots >= 0 else -pnl_tick_lots) * spec.lot_tick_value_micros
    return {"symbol": symbol, "size": lots, "entry_price": entry, "mark_price": price(mark_ticks, spec),
            "unrealized_pnl": usd(pnl_micros)}


def posting(row: PostingRow, account_id: int) -> dict[str, Any]:
    incoming = row.to_account == account_id
    return {"seq": row.seq, "leg": row.leg, "ts_ns": row.ts_ns, "kind": row.kind,
            "amount": usd(row.amount_micros if incoming else -row.amount_micros),
            "counterparty": row.from_account if incoming else row.to_account,
            "symbol": row.symbol, "trade_id": row.trade_id}
