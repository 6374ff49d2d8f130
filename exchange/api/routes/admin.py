"""Operator endpoints (`operator` scope): accounts, cash, the account kill switch, API keys, listing
and halting series. Every mutation honours an Idempotency-Key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from exchange.api import present
from exchange.api.auth import OPERATOR, Principal
from exchange.api.errors import ApiCode, ApiError
from exchange.api.idempotency import idempotent
from exchange.api.runtime import Runtime, get_runtime
from exchange.api.schemas import (
    ACCOUNT_ID_MAX,
    ID_MAX,
    AccountOut,
    AccountViewOut,
    CashBody,
    CashOut,
    CreateAccountBody,
    CreateKeyBody,
    EnabledBody,
    HaltBody,
    KeyOut,
    LedgerOut,
    ListSeriesBody,
    RevokedOut,
    SeriesOut,
    SnapshotOut,
)
from exchange.catalog import CatalogError, SymbolError
from exchange.domain.codes import RejectCode
from exchange.domain.commands import (
    AdvanceTime,
    CreateAccount,
    Deposit,
    HaltSeries,
    ListSeries,
    SetAccountEnabled,
    Withdraw,
)
from exchange.domain.units import UnitError, usd_to_micros
from exchange.signing import HEADER_IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_RE, derive_secret

router = APIRouter(prefix="/v1/admin", tags=["operator"])

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
Operator = Annotated[Principal, Depends(OPERATOR)]
AccountId = Annotated[int, Path(ge=1, le=ACCOUNT_ID_MAX)]
SymbolPath = Annotated[str, Path(pattern=r"^[A-Z0-9][A-Z0-9-]{0,31}$", max_length=32)]


def _micros(amount: str) -> int:
    try:
        return usd_to_micros(amount, "amount")
    except UnitError as error:
        raise ApiError(422, "invalid_amount", str(error)) from None


def _series(runtime: Runtime, symbol: str) -> dict[str, Any]:
    series = runtime.engine.series[symbol]
    return present.series(series.spec, series.reference_price_ticks, series.halted, series.terminated)


@router.post("/accounts", status_code=201, response_model=AccountOut)
async def create_account(body: CreateAccountBody, request: Request, principal: Operator,
                         runtime: RuntimeDep) -> Response:
    """Open a trader account; without `account_id`, the next free id (one more than the highest)."""
    async def action() -> tuple[int, Any]:
        account_id = body.account_id or max(runtime.engine.accounts, default=0) + 1
        await runtime.submit_checked(CreateAccount(account_id))
        return 201, {"account_id": account_id, "enabled": True}

    return await idempotent(request, runtime, principal, action)


async def _move_cash(command: Deposit | Withdraw, request: Request, principal: Principal,
                     runtime: Runtime) -> Response:
    # The Idempotency-Key goes into the command as its reference (scoped by API key), so the core itself
    # refuses to move the cash twice: a retry after a crash between the journal and the stored answer
    # finds the move done (CashMoveDuplicate) and is answered like the first time, with the cash now.
    key = request.headers.get(HEADER_IDEMPOTENCY_KEY)
    if key is not None and IDEMPOTENCY_KEY_RE.match(key):
        command = command._replace(reference=f"{principal.key_id}:{key}")

    async def action() -> tuple[int, Any]:
        await runtime.submit_checked(command)
        cash = runtime.engine.cash_micros(command.account_id)
        return 200, {"account_id": command.account_id, "cash": present.usd(cash)}

    return await idempotent(request, runtime, principal, action)


@router.post("/accounts/{account_id}/deposits", response_model=CashOut)
async def deposit(account_id: AccountId, body: CashBody, request: Request, principal: Operator,
                  runtime: RuntimeDep) -> Response:
    """Credit cash to an account (at most 6 decimals, less than $1bn per deposit)."""
    return await _move_cash(Deposit(account_id, _micros(body.amount)), request, principal, runtime)


@router.post("/accounts/{account_id}/withdrawals", response_model=CashOut)
async def withdraw(account_id: AccountId, body: CashBody, request: Request, principal: Operator,
                   runtime: RuntimeDep) -> Response:
    """Debit cash from an account; refused (insufficient_funds) if it would leave less than the margin held."""
    return await _move_cash(Withdraw(account_id, _micros(body.amount)), request, principal, runtime)


@router.put("/accounts/{account_id}/enabled", response_model=AccountOut)
async def set_enabled(account_id: AccountId, body: EnabledBody, request: Request, principal: Operator,
                      runtime: RuntimeDep) -> Response:
    """The account kill switch: disabling cancels all its orders and refuses new ones."""
    async def action() -> tuple[int, Any]:
        await runtime.submit_checked(SetAccountEnabled(account_id, body.enabled))
        return 200, {"account_id": account_id, "enabled": body.enabled}

    return await idempotent(request, runtime, principal, action)


@router.post("/api-keys", status_code=201, response_model=KeyOut)
async def create_api_key(body: CreateKeyBody, principal: Operator, runtime: RuntimeDep) -> dict[str, Any]:
    """A new API key; the secret is in this answer only (the server derives it, never stores it)."""
    if body.account_id not in runtime.engine.accounts:
        raise ApiError(404, "unknown_account", f"no account {body.account_id}")
    scopes = sorted(set(body.scopes))

    def create() -> tuple[str, str]:
        return runtime.store.create_api_key(body.account_id, scopes, runtime.clock_ns(),
                                            lambda key_id: derive_secret(runtime.master_key, key_id))

    key_id, secret = await run_in_threadpool(create)
    return {"key_id": key_id, "secret": secret, "account_id": body.account_id, "scopes": scopes}


@router.delete("/api-keys/{key_id}", response_model=RevokedOut)
async def revoke_api_key(key_id: Annotated[str, Path(pattern=r"^ak_[0-9a-f]{16}$")], principal: Operator,
                         runtime: RuntimeDep) -> dict[str, Any]:
    """Revoke a key at once (on this server; other processes notice within their key cache's 5 s)."""
    revoked = await run_in_threadpool(runtime.store.revoke_api_key, key_id, runtime.clock_ns())
    runtime.forget_key(key_id)
    if not revoked and runtime.store.api_key(key_id) is None:
        raise ApiError(404, ApiCode.NOT_FOUND, f"no API key {key_id}")
    return {"key_id": key_id, "revoked": True}


@router.post("/series", status_code=201, response_model=SeriesOut)
async def list_series(body: ListSeriesBody, request: Request, principal: Operator, runtime: RuntimeDep) -> Response:
    """List a series of the catalog (its spec comes from contracts/, never from the request)."""
    async def action() -> tuple[int, Any]:
        try:
            spec = runtime.catalog.series_spec(body.symbol)
        except (CatalogError, SymbolError) as error:
            # Like an order for an unknown symbol: a name the schema allows that the catalog has no series
            # of (no listed product, not a real period) is a 404, not a malformed request.
            raise ApiError(404, RejectCode.UNKNOWN_SERIES, f"no such series in the catalog: {error}") from None
        await runtime.submit_checked(ListSeries(spec))
        return 201, _series(runtime, body.symbol)

    return await idempotent(request, runtime, principal, action)


@router.put("/series/{symbol}/halt", response_model=SeriesOut)
async def halt_series(symbol: SymbolPath, body: HaltBody, request: Request, principal: Operator,
                      runtime: RuntimeDep) -> Response:
    """Halt (no new orders or amends; cancels still work) or resume a series."""
    async def action() -> tuple[int, Any]:
        await runtime.submit_checked(HaltSeries(symbol, body.halted))
        return 200, _series(runtime, symbol)

    return await idempotent(request, runtime, principal, action)


@router.get("/accounts/{account_id}", response_model=AccountViewOut)
async def account_view(account_id: AccountId, principal: Operator, runtime: RuntimeDep) -> dict[str, Any]:
    """An account as the core holds it now: cash, required margin, open orders, positions."""
    engine = runtime.engine
    account = engine.accounts.get(account_id)
    if account is None:
        raise ApiError(404, RejectCode.UNKNOWN_ACCOUNT, f"no account {account_id}")
    positions = []
    for symbol, exposure in sorted(account.exposures.items()):
        spec = engine.series[symbol].spec
        average = exposure.average_entry_ticks()
        positions.append({"symbol": symbol, "position_lots": exposure.position_lots,
                          "average_entry": None if average is None else present.usd(round(average * spec.tick_micros)),
                          "open_buy_lots": exposure.open_buy_lots, "open_sell_lots": exposure.open_sell_lots})
    return {"account_id": account_id, "enabled": account.enabled, "cash": present.usd(engine.cash_micros(account_id)),
            "initial_margin": present.usd(account.margin_micros), "open_orders": len(account.orders),
            "positions": positions, "seq": engine.stamp.seq}


@router.get("/ledger/{ledger_account}", response_model=LedgerOut, response_model_by_alias=True)
async def ledger(ledger_account: Annotated[int, Path(ge=-3, le=ACCOUNT_ID_MAX)], principal: Operator,
                 runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                 after_seq: Annotated[int, Query(ge=0, le=ID_MAX)] = 0) -> dict[str, Any]:
    """Postings to and from a ledger account (a trader, or -1 external, -2 fees, -3 settlement), oldest
    first after `after_seq` (pass the last row's seq for the next page), and its balance."""
    rows = await run_in_threadpool(runtime.store.ledger, ledger_account, limit, after_seq)
    balance = (await run_in_threadpool(runtime.store.balances)).get(ledger_account)
    if balance is None:
        raise ApiError(404, ApiCode.NOT_FOUND, f"no ledger account {ledger_account}")
    return {"ledger_account": ledger_account, "balance": present.usd(balance),
            "items": [{"seq": r.seq, "leg": r.leg, "ts_ns": r.ts_ns, "kind": r.kind, "from": r.from_account,
                       "to": r.to_account, "amount": present.usd(r.amount_micros), "symbol": r.symbol}
                      for r in rows],
            "next_after_seq": rows[-1].seq if len(rows) >= limit else None}


@router.post("/snapshots", status_code=202, response_model=SnapshotOut)
async def snapshot(principal: Operator, runtime: RuntimeDep) -> dict[str, Any]:
    """Write a snapshot of the core after the next commit (in the background, as the periodic ones)."""
    runtime.service.request_snapshot()
    result = await runtime.submit_sequenced(AdvanceTime())
    return {"seq": result.seq, "snapshot_dir": str(runtime.service.config.snapshot_dir)}
