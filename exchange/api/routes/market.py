"""Public market data: products, series, book, trades, ticker, candles. No authentication; limited
per client IP."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from starlette.concurrency import run_in_threadpool

from exchange.api import cursor as cursor_codec
from exchange.api import present
from exchange.api.auth import public_rate_limit
from exchange.api.errors import ApiCode, ApiError
from exchange.api.runtime import Runtime, get_runtime
from exchange.api.schemas import (
    TS_NS_MAX,
    BookOut,
    CandleOut,
    Page,
    ProductOut,
    SeriesOut,
    TickerOut,
    TradeOut,
    TradePage,
)
from exchange.store.store import TRADES_SCAN_MAX

router = APIRouter(prefix="/v1", tags=["market data"], dependencies=[Depends(public_rate_limit)])

NS_PER_S = 1_000_000_000
DAY_NS = 86_400 * NS_PER_S
INTERVAL_NS = {"1m": 60 * NS_PER_S, "5m": 300 * NS_PER_S, "1h": 3_600 * NS_PER_S}
BOOK_DEPTH_MAX = 500
CANDLES_MAX = 1_000

SymbolPath = Annotated[str, Path(pattern=r"^[A-Z0-9][A-Z0-9-]{0,31}$", max_length=32)]
Cursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$", description="next_cursor of the previous page")]
Limit = Annotated[int, Query(ge=1, le=500)]
TradeCursor = Annotated[str | None, Query(pattern=cursor_codec.TRADE_CURSOR_PATTERN, max_length=19,
                                          description=cursor_codec.CURSOR_DESCRIPTION, examples=["o1234"])]
Since = Annotated[int | None, Query(ge=0, le=TS_NS_MAX, description="only trades at or after this time (ns since "
                                    "the epoch, UTC)", examples=[1796313600000000000])]
Until = Annotated[int | None, Query(ge=0, le=TS_NS_MAX, description="only trades before this time (ns since the "
                                    "epoch, UTC)", examples=[1796400000000000000])]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def _series_out(runtime: Runtime, symbol: str) -> dict[str, Any]:
    series = runtime.engine.series.get(symbol)
    if series is None:
        raise ApiError(404, ApiCode.NOT_FOUND, f"no listed series {symbol!r}")
    return present.series(series.spec, series.reference_price_ticks, series.halted, series.terminated)


@router.get("/products", response_model=Page[ProductOut])
async def products(runtime: RuntimeDep) -> dict[str, Any]:
    """Listed products (GPU generation x minimum MFU grade) and their listed series."""
    listed: dict[str, list[str]] = {}
    for symbol, series in runtime.engine.series.items():
        listed.setdefault(series.spec.product, []).append(symbol)
    items = [{"product": p.code, "generation": p.generation.name, "description": p.generation.description,
              "mfu_grade": str(p.mfu_grade), "gpus_per_lot": p.generation.gpus_per_lot,
              "reference_price": str(p.reference_price) if p.reference_price is not None else None,
              "series": sorted(listed.get(p.code, []))}
             for p in runtime.catalog.listed_products()]
    return {"items": items, "next_cursor": None}


@router.get("/series", response_model=Page[SeriesOut])
async def series_list(runtime: RuntimeDep, status: Literal["trading", "all"] = "trading",
                      limit: Limit = 100, cursor: Annotated[str | None, Query(max_length=32)] = None) -> dict[str, Any]:
    """Listed series with their full specs, by symbol; `status=trading` leaves out terminated ones."""
    symbols = sorted(s for s, series in runtime.engine.series.items()
                     if status == "all" or not series.terminated)
    if cursor is not None:
        symbols = [s for s in symbols if s > cursor]
    page = symbols[:limit]
    next_cursor = page[-1] if len(symbols) > limit else None
    return {"items": [_series_out(runtime, s) for s in page], "next_cursor": next_cursor}


@router.get("/series/{symbol}", response_model=SeriesOut)
async def series_one(symbol: SymbolPath, runtime: RuntimeDep) -> dict[str, Any]:
    """One series' full spec: lot size in GPU-hours, tick, reference price and price band, limits, margin, fees."""
    return _series_out(runtime, symbol)


@router.get("/series/{symbol}/book", response_model=BookOut)
async def book(symbol: SymbolPath, runtime: RuntimeDep,
               depth: Annotated[int, Query(ge=1, le=BOOK_DEPTH_MAX)] = 50) -> dict[str, Any]:
    """Level-2 snapshot of the engine's book: [price, lots, orders] per level, best first, with the
    journal seq it reflects. To align with the market feed's updates, take the feed gateway's snapshot
    instead (the feed's subscribe, or the gateway's GET of this path), which carries `book_seq`."""
    spec = runtime.spec(symbol)
    engine = runtime.engine
    bids, asks = engine.book_levels(symbol)
    return {"symbol": symbol, "seq": engine.stamp.seq, "ts_ns": engine.stamp.ts_ns, "book_seq": None,
            "bids": [(present.price(p, spec), lots, n) for p, lots, n in bids[:depth]],
            "asks": [(present.price(p, spec), lots, n) for p, lots, n in asks[:depth]]}


@router.get("/series/{symbol}/trades", response_model=TradePage[TradeOut])
async def trades(symbol: SymbolPath, runtime: RuntimeDep, limit: Limit = 100, cursor: TradeCursor = None,
                 since: Since = None, until: Until = None) -> dict[str, Any]:
    """Recent trades, newest first. `next_cursor` pages to older trades, `prev_cursor` to newer ones (poll
    with it for new trades); `since`/`until` bound the trade time (pass the same with a cursor)."""
    spec = runtime.spec(symbol)
    asked = cursor_codec.decode(cursor, (int,)) if cursor is not None else None
    rows, more = await run_in_threadpool(lambda: runtime.store.recent_trades(
        limit, symbol=symbol, before=asked[1] if asked and asked[0] == "older" else None,
        after=asked[1] if asked and asked[0] == "newer" else None, since_ns=since, until_ns=until))
    return cursor_codec.page([present.trade(r, spec) for r in rows], [(r.trade_id,) for r in rows], more, asked,
                             (0,))


@router.get("/series/{symbol}/ticker", response_model=TickerOut)
async def ticker(symbol: SymbolPath, runtime: RuntimeDep) -> dict[str, Any]:
    """Best bid and ask now, the last trade price, and the open, high, low, change and volume of the last 24 h."""
    spec = runtime.spec(symbol)
    engine = runtime.engine
    bid, ask = engine.top_of_book(symbol)
    seq, ts_ns = engine.stamp.seq, engine.stamp.ts_ns
    volume, high, low, first, last = await run_in_threadpool(runtime.store.trade_stats, symbol,
                                                             runtime.exchange_clock_ns() - DAY_NS)

    def px(ticks: int | None) -> str | None:
        return present.price(ticks, spec) if ticks is not None else None

    change = present.price(last - first, spec) if last is not None and first is not None and volume else None
    return {"symbol": symbol, "bid": px(bid), "ask": px(ask), "last": px(last),
            "open_24h": px(first if volume else None), "high_24h": px(high), "low_24h": px(low),
            "change_24h": change, "volume_24h": volume, "seq": seq, "ts_ns": ts_ns}


@router.get("/series/{symbol}/candles", response_model=Page[CandleOut])
async def candles(symbol: SymbolPath, runtime: RuntimeDep, interval: Literal["1m", "5m", "1h"] = "1m",
                  limit: Annotated[int, Query(ge=1, le=CANDLES_MAX)] = 100,
                  start_ns: Annotated[int | None, Query(ge=0, le=TS_NS_MAX)] = None,
                  end_ns: Annotated[int | None, Query(ge=0, le=TS_NS_MAX)] = None) -> dict[str, Any]:
    """OHLCV bars of `interval` with trades, oldest first, in [start_ns, end_ns) (default: the last
    `limit` intervals). Bars without trades are left out."""
    spec = runtime.spec(symbol)
    width = INTERVAL_NS[interval]
    end = end_ns if end_ns is not None else runtime.exchange_clock_ns() + 1   # exclusive: include trades of this ns
    start = start_ns if start_ns is not None else max(0, end - limit * width)
    start -= start % width
    if end <= start:
        return {"items": [], "next_cursor": None}
    rows = await run_in_threadpool(runtime.store.trades_between, symbol, start, end, TRADES_SCAN_MAX)
    bars: dict[int, list[int]] = {}   # bar start -> [open, high, low, close, volume, trades]
    for row in rows:
        bar_start = row.ts_ns - row.ts_ns % width
        bar = bars.get(bar_start)
        if bar is None:
            if len(bars) >= limit:
                break
            bars[bar_start] = [row.price_ticks, row.price_ticks, row.price_ticks, row.price_ticks, row.qty_lots, 1]
        else:
            bar[1] = max(bar[1], row.price_ticks)
            bar[2] = min(bar[2], row.price_ticks)
            bar[3] = row.price_ticks
            bar[4] += row.qty_lots
            bar[5] += 1
    items = [{"start_ns": t, "open": present.price(b[0], spec), "high": present.price(b[1], spec),
              "low": present.price(b[2], spec), "close": present.price(b[3], spec), "volume": b[4], "trades": b[5]}
             for t, b in bars.items()]
    return {"items": items, "next_cursor": None}
