"""The feed gateway's routes: the market-data WebSocket, the aligned book snapshot, the index history,
and the operations endpoints. Thin: the work is in the hub and the session."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from exchange.api import present
from exchange.api.auth import check_rate, client_ip
from exchange.api.errors import ApiCode, ApiError
from exchange.api.routes.market import BOOK_DEPTH_MAX, SymbolPath
from exchange.api.schemas import TS_NS_MAX, BookOut, StatusOut
from exchange.feeds.context import FeedContext
from exchange.feeds.hub import dumps, index_out
from exchange.feeds.session import CLOSE_POLICY_VIOLATION, PATH, Session
from exchange.feeds.session import client_ip as ws_client_ip

router = APIRouter()

HOUR_NS = 3_600_000_000_000


async def get_context(connection: HTTPConnection) -> FeedContext:
    context: FeedContext | None = getattr(connection.app.state, "context", None)
    if context is None:
        raise ApiError(503, ApiCode.SERVICE_UNAVAILABLE, "the feed gateway is starting", retry_after_s=1)
    return context


ContextDep = Annotated[FeedContext, Depends(get_context)]


async def public_rate_limit(request: Request, context: ContextDep) -> None:
    check_rate(context, None, client_ip(request))


@router.websocket(PATH)
async def market_feed(websocket: WebSocket) -> None:
    await websocket.accept()
    context: FeedContext | None = getattr(websocket.app.state, "context", None)
    if context is None or context.failure is not None:
        with contextlib.suppress(Exception):
            await websocket.send_text(dumps({"type": "error", "id": None, "code": "service_unavailable",
                                             "message": "the feed gateway is not ready: reconnect shortly",
                                             "details": {}}))
            await websocket.close(1013, "service_unavailable")
        return
    hub = context.hub
    sub = hub.connect(ws_client_ip(websocket), batch=websocket.query_params.get("batch") == "1")
    if sub is None:
        with contextlib.suppress(Exception):
            await websocket.send_text(dumps({"type": "error", "id": None, "code": "too_many_connections",
                                             "message": f"at most {hub.connections_per_ip_max} connections per IP",
                                             "details": {"limit": hub.connections_per_ip_max}}))
            await websocket.close(CLOSE_POLICY_VIOLATION, "too_many_connections")
        return
    context.metrics.connections.inc()
    try:
        await Session(websocket, context, hub, sub).serve()
    finally:
        hub.disconnect(sub)
        context.metrics.connections.dec()
        if sub.slow:
            context.metrics.slow_consumers.inc()


@router.get("/v1/series/{symbol}/book", response_model=BookOut, tags=["market data"],
            dependencies=[Depends(public_rate_limit)])
async def book(symbol: SymbolPath, context: ContextDep,
               depth: Annotated[int, Query(ge=1, le=BOOK_DEPTH_MAX)] = 50) -> dict[str, Any]:
    """The book as this gateway's feed last published it: `book_seq` is the feed's `seq` for the series
    (a late joiner applies the updates whose `prev_seq` <= book_seq < `seq`), `seq` the journal seq."""
    hub = context.hub
    state = hub.series.get(symbol)
    if state is None:
        raise ApiError(404, ApiCode.NOT_FOUND, f"no listed series {symbol!r}")
    book_seq, bids, asks = hub.book_view(symbol, depth)
    spec = state.spec
    return {"symbol": symbol, "seq": hub.engine_seq, "ts_ns": hub.engine_ts_ns, "book_seq": book_seq,
            "bids": [(present.price(p, spec), lots, n) for p, lots, n in bids],
            "asks": [(present.price(p, spec), lots, n) for p, lots, n in asks]}


@router.get("/v1/index/{product}", tags=["market data"], dependencies=[Depends(public_rate_limit)])
async def index_history(product: SymbolPath, context: ContextDep,
                        start_ns: Annotated[int | None, Query(ge=0, le=TS_NS_MAX)] = None,
                        end_ns: Annotated[int | None, Query(ge=0, le=TS_NS_MAX)] = None) -> dict[str, Any]:
    """The product's GPU-hour index, one value per minute in [start_ns, end_ns) (default: the last
    hour), oldest first, as published since the gateway started (7 days kept). See the README for the
    methodology."""
    hub = context.hub
    if product not in hub.index_windows and product not in hub.index_history:
        raise ApiError(404, ApiCode.NOT_FOUND, f"no listed product {product!r}")
    end = end_ns if end_ns is not None else hub.clock_ns() + 1
    start = start_ns if start_ns is not None else max(0, end - HOUR_NS)
    items = [index_out(v) for v in hub.index_values(product, start, end)]
    return {"product": product, "items": items, "next_cursor": None}


@router.get("/health", response_model=StatusOut, tags=["operations"])
async def health() -> dict[str, Any]:
    return {"status": "ok"}


@router.get("/ready", tags=["operations"])
async def ready(context: ContextDep) -> dict[str, Any]:
    """Following the journal: `journal_seq` is what the replica has applied, `lag` what it has not yet."""
    if context.failure is not None:
        raise ApiError(503, ApiCode.SERVICE_UNAVAILABLE, "following the journal failed (see the gateway's log)",
                       retry_after_s=1)
    return {"status": "ready", "journal_seq": context.replica.seq, "lag": context.replica.lag}


@router.get("/metrics", response_class=Response, tags=["operations"],
            responses={200: {"content": {"text/plain": {}}}})
async def metrics(context: ContextDep) -> Response:
    m = context.metrics
    m.replica_seq.set(context.replica.seq)
    m.replica_lag.set(context.replica.lag)
    m.hub_errors.set(context.hub.errors)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
