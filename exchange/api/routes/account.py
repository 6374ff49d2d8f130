"""The signed-in account: who am I, fills, positions, balances and margin, ledger postings (`read`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from exchange.api import cursor as cursor_codec
from exchange.api import present
from exchange.api.auth import READ, Principal
from exchange.api.errors import ApiCode, ApiError
from exchange.api.routes.market import Since, Until
from exchange.api.runtime import Runtime, get_runtime
from exchange.api.schemas import BalanceOut, FillOut, Page, PositionOut, PostingOut, TradePage, WhoAmIOut
from exchange.domain.account import Account

router = APIRouter(prefix="/v1", tags=["account"])

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
Reader = Annotated[Principal, Depends(READ)]
Cursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$", description="next_cursor of the previous page")]
Limit = Annotated[int, Query(ge=1, le=500)]
FillCursor = Annotated[str | None, Query(pattern=cursor_codec.FILL_CURSOR_PATTERN, max_length=72,
                                         description=cursor_codec.CURSOR_DESCRIPTION,
                                         examples=["o5321.H100-M40-Z26.17"])]
SymbolQuery = Annotated[str | None, Query(pattern=r"^[A-Z0-9][A-Z0-9-]{0,31}$", max_length=32)]


def _account(runtime: Runtime, principal: Principal) -> Account:
    account = runtime.engine.accounts.get(principal.account_id)
    if account is None:  # a key whose account the core does not know (yet): nothing to show
        raise ApiError(404, ApiCode.NOT_FOUND, "account not found")
    return account


@router.get("/account", response_model=WhoAmIOut)
async def whoami(principal: Reader, runtime: RuntimeDep) -> dict[str, Any]:
    """The account the signing key acts for, whether it may trade, and the key's scopes."""
    account = _account(runtime, principal)
    return {"account_id": account.account_id, "enabled": account.enabled, "key_id": principal.key_id,
            "scopes": list(principal.scopes)}


@router.get("/balances", response_model=BalanceOut)
async def balances(principal: Reader, runtime: RuntimeDep) -> dict[str, Any]:
    """Cash, the initial margin held by open orders and positions, and what is left (cash - margin)."""
    account = _account(runtime, principal)
    cash = runtime.engine.cash_micros(account.account_id)
    return {"account_id": account.account_id, "currency": "USD", "cash": present.usd(cash),
            "margin": present.usd(account.margin_micros), "available": present.usd(cash - account.margin_micros)}


@router.get("/positions", response_model=Page[PositionOut])
async def positions(principal: Reader, runtime: RuntimeDep) -> dict[str, Any]:
    """Net positions (flat ones left out) with the average entry price and P&L at the reference price."""
    account = _account(runtime, principal)
    engine = runtime.engine
    items = []
    for symbol in sorted(account.exposures):
        exposure = account.exposures[symbol]
        if exposure.position_lots:
            series = engine.series[symbol]
            items.append(present.position(symbol, exposure, series.spec, series.reference_price_ticks))
    return {"items": items, "next_cursor": None}


@router.get("/fills", response_model=TradePage[FillOut])
async def fills(principal: Reader, runtime: RuntimeDep, symbol: SymbolQuery = None, limit: Limit = 100,
                cursor: FillCursor = None, since: Since = None, until: Until = None) -> dict[str, Any]:
    """The account's trades, newest first, with cursors both ways and time bounds, like public trades."""
    asked = cursor_codec.decode(cursor, (int, str, int)) if cursor is not None else None
    rows, more = await run_in_threadpool(lambda: runtime.store.recent_trades(
        limit, symbol=symbol, account_id=principal.account_id,
        before=asked[1] if asked and asked[0] == "older" else None,
        after=asked[1] if asked and asked[0] == "newer" else None, since_ns=since, until_ns=until))
    items = [present.fill(r, principal.account_id, runtime.spec(r.symbol)) for r in rows]
    return cursor_codec.page(items, [(r.seq, r.symbol, r.trade_id) for r in rows], more, asked, (0, "0", 0))


@router.get("/ledger", response_model=Page[PostingOut])
async def ledger(principal: Reader, runtime: RuntimeDep, limit: Limit = 100, cursor: Cursor = None) -> dict[str, Any]:
    """Cash postings to and from the account (deposits, withdrawals, fees), oldest first."""
    rows = await run_in_threadpool(runtime.store.ledger, principal.account_id, limit, int(cursor or 0))
    items = [present.posting(r, principal.account_id) for r in rows]
    return {"items": items, "next_cursor": str(rows[-1].seq) if len(rows) >= limit else None}
