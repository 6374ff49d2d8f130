"""Settlement records (public) and the account's deliveries (`read`): what the settlement jobs
published, from the store's projection of the core's settlement events."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from starlette.concurrency import run_in_threadpool

from exchange.api import present
from exchange.api.auth import READ, Principal, public_rate_limit
from exchange.api.runtime import Runtime, get_runtime
from exchange.api.schemas import DeliveryOut, Page, SettlementOut
from exchange.store.store import DailySettlementRow, DeliveryRow

router = APIRouter(prefix="/v1", tags=["settlement"])

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SymbolPath = Annotated[str, Path(pattern=r"^[A-Z0-9][A-Z0-9-]{0,31}$", max_length=32)]
SymbolQuery = Annotated[str | None, Query(pattern=r"^[A-Z0-9][A-Z0-9-]{0,31}$", max_length=32)]


def _settlement(runtime: Runtime, row: DailySettlementRow) -> dict[str, Any]:
    spec = runtime.spec(row.symbol)
    return {"symbol": row.symbol, "date": row.settlement_date.isoformat(),
            "price": present.price(row.price_ticks, spec), "final": row.settlement_date ==
            dt.datetime.fromtimestamp(spec.trading_end_ns // 10**9, dt.UTC).date(),
            "seq": row.seq, "ts_ns": row.ts_ns}


def _delivery(runtime: Runtime, row: DeliveryRow) -> dict[str, Any]:
    spec = runtime.spec(row.symbol)

    def usd(micros: int | None) -> str | None:
        return present.usd(micros) if micros is not None else None

    effective = None
    if row.effective_micro_gpuh is not None:
        whole, frac = divmod(row.effective_micro_gpuh, 1_000_000)
        effective = f"{whole}.{frac:06d}"
    return {"delivery_id": row.delivery_id, "symbol": row.symbol, "seller": row.seller_account_id,
            "buyer": row.buyer_account_id, "lots": row.lots, "gpus": row.gpus, "gpu_hours": row.gpu_hours,
            "final_settlement_price": present.price(row.fsp_ticks, spec), "status": row.status,
            "effective_gpu_hours": effective, "invoice": usd(row.invoice_micros), "damages": usd(row.damages_micros),
            "default": row.defaulted}


@router.get("/settlements", response_model=Page[SettlementOut], dependencies=[Depends(public_rate_limit)])
async def settlements(runtime: RuntimeDep, symbol: SymbolQuery = None,
                      date: Annotated[str | None, Query(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                                                        description="YYYY-MM-DD")] = None) -> dict[str, Any]:
    """Published daily settlement prices (`final` marks a series' final settlement price)."""
    try:
        day = dt.date.fromisoformat(date) if date is not None else None
    except ValueError:   # shaped like a date but not one (2026-02-30): nothing was settled on it
        return {"items": [], "next_cursor": None}
    rows = await run_in_threadpool(runtime.store.daily_settlements, symbol, day)
    return {"items": [_settlement(runtime, r) for r in rows if r.symbol in runtime.engine.series],
            "next_cursor": None}


@router.get("/deliveries", response_model=Page[DeliveryOut])
async def deliveries(principal: Annotated[Principal, Depends(READ)], runtime: RuntimeDep,
                     symbol: SymbolQuery = None) -> dict[str, Any]:
    """Deliveries in which the account is the seller or the buyer, with their settlement once posted."""
    rows = await run_in_threadpool(runtime.store.deliveries, symbol, principal.account_id)
    return {"items": [_delivery(runtime, r) for r in rows], "next_cursor": None}
