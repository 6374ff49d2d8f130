"""Order entry and order queries (signed; `trade` scope to change, `read` to look)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.convertors import StringConvertor, register_url_convertor

from exchange.api import present, trading
from exchange.api.auth import READ, TRADE, Principal
from exchange.api.idempotency import idempotent
from exchange.api.runtime import Runtime, get_runtime
from exchange.api.schemas import (
    ID_MAX,
    AmendOrderBody,
    CancelAllAfterBody,
    CancelAllBody,
    CancelledOut,
    DeadlineOut,
    OrderOut,
    Page,
    PlaceOrderBody,
)

router = APIRouter(prefix="/v1", tags=["orders"])


class _OrderIdSegment(StringConvertor):
    """The `{order_id}` path segment: any segment but the literal `cancel-all`, so that a GET, PATCH or
    DELETE of /v1/orders/cancel-all is 405 (its only method is POST), not an order id that fails to parse."""

    regex = "(?!cancel-all$)[^/]+"


register_url_convertor("order_id", _OrderIdSegment())

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
Reader = Annotated[Principal, Depends(READ)]
Trader = Annotated[Principal, Depends(TRADE)]
OrderId = Annotated[int, Path(ge=1, le=ID_MAX, description="the exchange's order id")]
ClientId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,36}$", max_length=36)]
Cursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$", description="next_cursor of the previous page")]
Limit = Annotated[int, Query(ge=1, le=500)]
SymbolQuery = Annotated[str | None, Query(pattern=r"^[A-Z0-9][A-Z0-9-]{0,31}$", max_length=32)]


@router.post("/orders", status_code=201, response_model=OrderOut,
             responses={200: {"model": OrderOut, "description": "a retry of an accepted order: the original"}})
async def place_order(body: PlaceOrderBody, principal: Trader, runtime: RuntimeDep) -> Response:
    """Place an order. Idempotent on `client_order_id`: a retry with the same id and payload returns the
    original order with 200; the same id with a different payload is 409 client_order_id_conflict."""
    status, view = await trading.place(runtime, principal, body)
    return JSONResponse(view, status_code=status)


@router.get("/orders", response_model=Page[OrderOut])
async def list_orders(principal: Reader, runtime: RuntimeDep,
                      status: Literal["open", "closed", "all"] = "open", symbol: SymbolQuery = None,
                      limit: Limit = 100, cursor: Cursor = None) -> dict[str, Any]:
    """The account's orders by ascending id; `closed` means filled, canceled or expired."""
    def read() -> dict[str, Any]:
        store = runtime.store
        rows = store.orders(principal.account_id, open_only=status == "open", limit=limit,
                            after_order_id=int(cursor or 0), closed_only=status == "closed", symbol=symbol)
        totals = store.fill_totals([r.order_id for r in rows if r.filled_lots])
        items = [present.order(r, runtime.spec(r.symbol), totals.get(r.order_id)) for r in rows]
        return {"items": items, "next_cursor": str(rows[-1].order_id) if len(rows) == limit else None}

    return await run_in_threadpool(read)


@router.get("/orders/{order_id:order_id}", response_model=OrderOut)
async def get_order(order_id: OrderId, principal: Reader, runtime: RuntimeDep) -> dict[str, Any]:
    """One of the account's orders by the exchange's id (another account's is 404, like an unknown id)."""
    return await trading.order_view(runtime, principal.account_id, (order_id, None))


@router.get("/orders/client/{client_order_id}", response_model=OrderOut)
async def get_order_by_client_id(client_order_id: ClientId, principal: Reader, runtime: RuntimeDep) -> dict[str, Any]:
    """One of the account's orders by the client order id it was placed with."""
    return await trading.order_view(runtime, principal.account_id, (None, client_order_id))


@router.patch("/orders/{order_id:order_id}", response_model=OrderOut)
async def amend_order(order_id: OrderId, body: AmendOrderBody, request: Request, principal: Trader,
                      runtime: RuntimeDep) -> Response:
    """Change the price and/or the open quantity (a smaller quantity at the same price keeps priority)."""
    return await idempotent(request, runtime, principal,
                            lambda: trading.amend(runtime, principal, (order_id, None), body))


@router.patch("/orders/client/{client_order_id}", response_model=OrderOut)
async def amend_order_by_client_id(client_order_id: ClientId, body: AmendOrderBody, request: Request,
                                   principal: Trader, runtime: RuntimeDep) -> Response:
    """Like amending by id, naming the order by its client order id."""
    return await idempotent(request, runtime, principal,
                            lambda: trading.amend(runtime, principal, (None, client_order_id), body))


@router.delete("/orders/{order_id:order_id}", response_model=OrderOut)
async def cancel_order(order_id: OrderId, request: Request, principal: Trader, runtime: RuntimeDep) -> Response:
    """Cancel the open remainder of an order; the answer is the order as it ends (status canceled)."""
    return await idempotent(request, runtime, principal,
                            lambda: trading.cancel(runtime, principal, (order_id, None)))


@router.delete("/orders/client/{client_order_id}", response_model=OrderOut)
async def cancel_order_by_client_id(client_order_id: ClientId, request: Request, principal: Trader,
                                    runtime: RuntimeDep) -> Response:
    """Like cancelling by id, naming the order by its client order id."""
    return await idempotent(request, runtime, principal,
                            lambda: trading.cancel(runtime, principal, (None, client_order_id)))


@router.post("/orders/cancel-all", response_model=CancelledOut)
async def cancel_all(body: CancelAllBody, request: Request, principal: Trader, runtime: RuntimeDep) -> Response:
    """Cancel every open order of the account, optionally only in one series and/or on one side."""
    return await idempotent(request, runtime, principal, lambda: trading.cancel_all(runtime, principal, body))


@router.post("/cancel-all-after", response_model=DeadlineOut)
async def cancel_all_after(body: CancelAllAfterBody, request: Request, principal: Trader,
                           runtime: RuntimeDep) -> Response:
    """Dead-man's switch: unless re-armed within `timeout_seconds`, all the account's orders are
    cancelled. It is part of the journaled state, so it still fires after a restart; 0 disarms it."""
    return await idempotent(request, runtime, principal,
                            lambda: trading.cancel_all_after(runtime, principal, body))
