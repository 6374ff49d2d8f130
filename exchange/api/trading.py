"""Order entry shared by the REST routes and the WebSocket order gateway: wire bodies in, commands to
the core, the resulting order (as the store projected it) out. Every function returns (HTTP status,
JSON body) or raises `ApiError`, so both transports answer identically."""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal
from typing import Any

from starlette.concurrency import run_in_threadpool

from exchange.api import present
from exchange.api.auth import Principal
from exchange.api.errors import ApiCode, ApiError, engine_refusal, rejected
from exchange.api.runtime import Runtime
from exchange.api.schemas import AmendOrderBody, CancelAllAfterBody, CancelAllBody, PlaceOrderBody
from exchange.domain.codes import RejectCode
from exchange.domain.commands import AmendOrder, CancelAllAfter, CancelOrder, MassCancel, PlaceOrder
from exchange.domain.events import CancelAllAfterSet, DuplicateOrder, MassCancelDone, OrderAccepted, Rejected
from exchange.domain.order import OrderType, TimeInForce
from exchange.domain.spec import SeriesSpec
from exchange.domain.units import UnitError, price_to_ticks, ticks_to_price

OrderRef = tuple[int | None, str | None]   # (exchange order id, client order id): exactly one is set


def _series_spec(runtime: Runtime, symbol: str) -> SeriesSpec:
    series = runtime.engine.series.get(symbol)
    if series is None:
        raise ApiError(404, RejectCode.UNKNOWN_SERIES, f"no listed series {symbol!r}")
    return series.spec


def _ticks(price: str, spec: SeriesSpec) -> int:
    try:
        return price_to_ticks(price, spec.tick_micros)
    except UnitError:
        raise off_tick(price, spec) from None


def off_tick(price: str, spec: SeriesSpec) -> ApiError:
    """A price off the series' tick grid (the schema has made sure it is a plain decimal): which tick,
    and the valid prices on either side of it."""
    tick = ticks_to_price(1, spec.tick_micros)
    below = int((Decimal(price) / tick).to_integral_value(ROUND_FLOOR))
    nearest = [present.price(t, spec) for t in (below, below + 1) if t > 0]
    return ApiError(422, RejectCode.INVALID_PRICE,
                    f"price {price} is not a multiple of the tick {tick} USD per GPU-hour: the nearest valid "
                    f"prices are {' and '.join(nearest)}",
                    {"price": price, "tick": str(tick), "nearest_valid": nearest})


async def order_view(runtime: Runtime, account_id: int, ref: OrderRef) -> dict[str, Any]:
    """The account's order as the store has it (read-your-writes: the projection is updated before a
    command's result is released); 404 for an unknown id or another account's order."""
    def read() -> dict[str, Any] | None:
        row = runtime.store.order(account_id, ref[0], ref[1])
        if row is None:
            return None
        totals = runtime.store.fill_totals([row.order_id])
        return present.order(row, runtime.spec(row.symbol), totals.get(row.order_id))

    view = await run_in_threadpool(read)
    if view is None:
        raise ApiError(404, ApiCode.NOT_FOUND, "order not found")
    return view


def _raise_rejection(events: list[Any]) -> None:
    for event in events:
        if isinstance(event, Rejected):
            more = {"order_id": str(event.order_id)} if event.order_id is not None else {}
            raise engine_refusal(event, **more)


async def place(runtime: Runtime, principal: Principal, body: PlaceOrderBody) -> tuple[int, dict[str, Any]]:
    spec = _series_spec(runtime, body.symbol)
    order_type = present.ORDER_TYPES[body.type]
    tif_name = body.time_in_force or ("IOC" if order_type is OrderType.MARKET else "GTC")
    command = PlaceOrder(
        account_id=principal.account_id, symbol=body.symbol, side=present.SIDES[body.side], qty_lots=body.amount,
        price_ticks=_ticks(body.price, spec) if body.price is not None else None, order_type=order_type,
        tif=present.TIFS[tif_name], post_only=body.post_only, stp=present.STPS[body.stp],
        client_order_id=body.client_order_id, expire_ts_ns=body.expire_time_ns)
    if command.tif is TimeInForce.GTD and command.expire_ts_ns is None:
        raise ApiError(422, RejectCode.EXPIRE_TIME_REQUIRED, "GTD orders need expire_time_ns")
    started_ns = runtime.clock_ns()
    events = await runtime.submit(command)
    if any(isinstance(e, Rejected) for e in events):
        runtime.metrics.observe_order("rejected")
    _raise_rejection(events)
    for event in events:
        if isinstance(event, DuplicateOrder):
            runtime.metrics.observe_order("duplicate")
            return 200, await order_view(runtime, principal.account_id, (event.order_id, None))
        if isinstance(event, OrderAccepted):
            runtime.metrics.observe_order("accepted", runtime.clock_ns() - started_ns)
            return 201, present.placed_order(event, events, spec)
    raise AssertionError(f"PlaceOrder produced neither acceptance nor rejection: {events!r}")


async def amend(runtime: Runtime, principal: Principal, ref: OrderRef,
                body: AmendOrderBody) -> tuple[int, dict[str, Any]]:
    if body.price is None and body.amount is None:
        raise ApiError(422, RejectCode.INVALID_AMEND, "give a new price, a new amount, or both")
    price_ticks = None
    if body.price is not None:
        current = await order_view(runtime, principal.account_id, ref)
        if current["status"] != "open":   # what the engine would answer: not a price off this series' grid
            raise rejected(RejectCode.ORDER_NOT_OPEN, "no open order with this id for this account")
        price_ticks = _ticks(body.price, runtime.spec(current["symbol"]))
    events = await runtime.submit(AmendOrder(principal.account_id, ref[0], price_ticks, body.amount, ref[1]))
    _raise_rejection(events)
    return 200, await order_view(runtime, principal.account_id, ref)


async def cancel(runtime: Runtime, principal: Principal, ref: OrderRef) -> tuple[int, dict[str, Any]]:
    events = await runtime.submit(CancelOrder(principal.account_id, ref[0], ref[1]))
    _raise_rejection(events)
    return 200, await order_view(runtime, principal.account_id, ref)


async def cancel_all(runtime: Runtime, principal: Principal, body: CancelAllBody) -> tuple[int, dict[str, Any]]:
    if body.symbol is not None:
        _series_spec(runtime, body.symbol)
    side = present.SIDES[body.side] if body.side is not None else None
    events = await runtime.submit(MassCancel(principal.account_id, body.symbol, side))
    _raise_rejection(events)
    done = next(e for e in events if isinstance(e, MassCancelDone))
    return 200, {"cancelled": done.cancelled_orders}


async def cancel_all_after(runtime: Runtime, principal: Principal,
                           body: CancelAllAfterBody) -> tuple[int, dict[str, Any]]:
    events = await runtime.submit(CancelAllAfter(principal.account_id, body.timeout_seconds * 1_000))
    _raise_rejection(events)
    armed = next(e for e in events if isinstance(e, CancelAllAfterSet))
    return 200, {"deadline_ns": armed.deadline_ns or None}
