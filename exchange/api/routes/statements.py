"""An account's statements (`read`): the daily and delivery statements the settlement jobs wrote, as
JSON, CSV or HTML (rendered from the statement of record's JSON on request)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from exchange.api.auth import READ, Principal
from exchange.api.errors import ApiCode, ApiError
from exchange.api.job_schemas import StatementsOut
from exchange.api.runtime import Runtime, get_runtime
from exchange.jobs.statement_formats import daily_csv, daily_html
from exchange.jobs.statements import render_html, statement_csv
from exchange.store.statement_archive import PAGE_MAX, StatementArchive, StatementRow

router = APIRouter(prefix="/v1", tags=["settlement"])

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
Kind = Literal["daily", "delivery"]
CURSOR_PATTERN = r"^[0-9]{1,18}\.(daily|delivery)\.[A-Z0-9][A-Z0-9/-]{0,63}$"   # 18 digits: fits 64 bits
REF_PATTERN = r"^([0-9]{4}-[0-9]{2}-[0-9]{2}|[A-Z0-9][A-Z0-9-]{0,31}/[0-9]{1,9})$"


def _summary(row: StatementRow) -> dict[str, Any]:
    body = row.body
    base = {"kind": row.kind, "ref": row.ref, "date_ns": row.date_ns,
            "links": {form: f"/v1/statements/{row.kind}/{row.ref}?format={form}" for form in ("json", "csv", "html")}}
    if row.kind == "daily":
        base.update(date=body.get("date"), total_variation_margin=body.get("total_variation_margin"),
                    margin_call=body.get("margin_call"))
    else:
        base.update(delivery_id=body.get("delivery_id"), symbol=body.get("symbol"), default=body.get("default"))
    return base


@router.get("/statements", response_model=StatementsOut, response_model_by_alias=True)
async def statements(principal: Annotated[Principal, Depends(READ)], runtime: RuntimeDep,
                     kind: Kind | None = None, limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 50,
                     cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN, max_length=100)] = None,
                     ) -> dict[str, Any]:
    """The account's statements, newest first: one per settlement date it had a position or variation
    margin on (`daily`, ref = the date) and one per delivery it is party to (`delivery`, ref = the
    delivery id), each with links to its JSON, CSV and HTML."""
    before = None
    if cursor is not None:
        date_ns, before_kind, before_ref = cursor.split(".", 2)
        before = (int(date_ns), before_kind, before_ref)
    rows = await run_in_threadpool(StatementArchive(runtime.store).page, principal.account_id, kind, limit + 1,
                                   before)
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    return {"items": [_summary(r) for r in rows],
            "next_cursor": f"{last.date_ns}.{last.kind}.{last.ref}" if more and last is not None else None}


EXAMPLE_DAILY = {"account_id": 1001, "date": "2026-12-02", "currency": "USD", "dry_run": False,
                 "lines": [{"symbol": "H100-M40-261203", "settlement_price": "2.400", "method": "vwap",
                            "prior_settlement_price": "2.395", "position_lots": 2,
                            "variation_margin": "1.920000"}],
                 "total_variation_margin": "1.920000", "cash": "10001.920000", "required_margin": "55.296000",
                 "margin_call": False}


@router.get("/statements/{kind}/{ref:path}", responses={200: {
    "description": "the statement: JSON (of record), CSV or HTML by `format`",
    "content": {"application/json": {"schema": {"type": "object"}, "example": EXAMPLE_DAILY},
                "text/csv": {"schema": {"type": "string"},
                             "example": "symbol,settlement_price,method,prior_settlement_price,position_lots,"
                                        "variation_margin\nH100-M40-261203,2.400,vwap,2.395,2,1.920000\n"
                                        "total,,,,,1.920000\n"},
                "text/html": {"schema": {"type": "string"},
                              "example": "<!doctype html><html>...<h1>Daily statement, 2026-12-02</h1>...</html>"}}}})
async def statement(kind: Kind, ref: Annotated[str, Path(pattern=REF_PATTERN, max_length=64)],
                    principal: Annotated[Principal, Depends(READ)], runtime: RuntimeDep,
                    format: Literal["json", "csv", "html"] = "json") -> Response:
    """One statement of the account: JSON (default), CSV or a self-contained HTML page."""
    row = await run_in_threadpool(StatementArchive(runtime.store).get, principal.account_id, kind, ref)
    if row is None:
        raise ApiError(404, ApiCode.NOT_FOUND, f"no {kind} statement {ref} for account {principal.account_id}")
    if format == "json":
        return JSONResponse(row.body)
    filename = f"{kind}-{ref.replace('/', '-')}-account-{principal.account_id}.{format}"
    if format == "csv":
        text = daily_csv(row.body) if kind == "daily" else statement_csv(row.body)
        return PlainTextResponse(text, media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    return HTMLResponse(daily_html(row.body) if kind == "daily" else render_html(row.body))
