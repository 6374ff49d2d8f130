"""One error shape for every failure the API returns: `{"code", "message", "details"}`.

`code` is stable (clients switch on it): the core's `RejectCode` values for refusals by the engine,
and the `ApiCode` values below for what the API itself refuses before anything reaches the engine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from exchange.api import validation
from exchange.api.schemas import LOTS_MAX
from exchange.domain.codes import RejectCode
from exchange.domain.events import Rejected


class ApiCode(StrEnum):
    # -- authentication (401) and authorization (403) -----------------------------------------
    AUTH_MISSING = "auth_missing"
    AUTH_UNKNOWN_KEY = "auth_unknown_key"
    AUTH_KEY_REVOKED = "auth_key_revoked"
    AUTH_BAD_SIGNATURE = "auth_bad_signature"
    AUTH_INVALID_TIMESTAMP = "auth_invalid_timestamp"
    AUTH_TIMESTAMP_OUT_OF_WINDOW = "auth_timestamp_out_of_window"
    AUTH_REPLAYED = "auth_replayed"                    # a signature that acts, seen before in its window
    AUTH_FAILURES_LIMITED = "auth_failures_limited"    # 429: too many failed authentications
    FORBIDDEN_SCOPE = "forbidden_scope"
    # -- request shape ----------------------------------------------------------------------------
    MALFORMED_JSON = "malformed_json"
    VALIDATION_ERROR = "validation_error"
    BODY_TOO_LARGE = "body_too_large"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    IDEMPOTENCY_KEY_INVALID = "idempotency_key_invalid"
    IDEMPOTENCY_KEY_CONFLICT = "idempotency_key_conflict"
    IDEMPOTENCY_KEY_IN_USE = "idempotency_key_in_use"
    # -- operator jobs and uploads ----------------------------------------------------------------
    UPLOAD_EXISTS = "upload_exists"                  # a telemetry file of that name with other content
    # -- capacity ----------------------------------------------------------------------------------
    RATE_LIMITED = "rate_limited"
    TOO_MANY_SESSIONS = "too_many_sessions"          # order-entry WebSockets per key or per IP
    SERVICE_UNAVAILABLE = "service_unavailable"


# HTTP status of each engine refusal: 404 when the thing named does not exist (for this account),
# 409 when the request conflicts with the current state, 422 when it breaks a static rule.
_REJECT_STATUS: dict[RejectCode, int] = {
    RejectCode.ORDER_NOT_OPEN: 404,
    RejectCode.UNKNOWN_SERIES: 404,
    RejectCode.UNKNOWN_ACCOUNT: 404,
    RejectCode.SERIES_ALREADY_LISTED: 409,
    RejectCode.ACCOUNT_EXISTS: 409,
    RejectCode.CLIENT_ORDER_ID_CONFLICT: 409,
    RejectCode.REFERENCE_CONFLICT: 409,
    RejectCode.TRADING_TERMINATED: 409,
    RejectCode.SERIES_HALTED: 409,
    RejectCode.ACCOUNT_DISABLED: 409,
    RejectCode.POST_ONLY_WOULD_TAKE: 409,
    RejectCode.INSUFFICIENT_MARGIN: 409,
    RejectCode.INSUFFICIENT_FUNDS: 409,
    RejectCode.POSITION_LIMIT: 409,
    RejectCode.OPEN_ORDER_LIMIT: 409,
}


def reject_status(code: RejectCode) -> int:
    return _REJECT_STATUS.get(code, 422)


class ApiError(Exception):
    """Raised anywhere in a request: becomes the error response."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None,
                 retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(self.retry_after_s)} if self.retry_after_s is not None else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def not_found(what: str) -> ApiError:
    return ApiError(404, ApiCode.NOT_FOUND, f"{what} not found")


def rejected(code: str, message: str, details: dict[str, Any] | None = None) -> ApiError:
    return ApiError(reject_status(RejectCode(code)), code, message, details)


def engine_refusal(event: Rejected, **more: Any) -> ApiError:
    """The engine's refusal as an API error: its message (already in USD, lots and prices per GPU-hour)
    and its details as JSON (tuples become lists), plus `more` (e.g. the order id)."""
    details: dict[str, Any] = {name: list(value) if isinstance(value, tuple) else value
                               for name, value in event.details}
    details.update(more)
    return rejected(event.code, event.message, details)


def validation_failed(errors: Sequence[Mapping[str, Any]]) -> ApiError:
    """422 validation_error from pydantic's errors, said per field (`exchange.api.validation`).

    One exception: an order size above the per-order maximum, the schema's bound on `amount` (equal to
    the engine's limit, so that nothing the schema accepts is refused as malformed), answers as the engine
    would: `order_too_large` with the amount and the maximum."""
    found = validation.problems(errors)
    if len(found) == 1 and found[0]["field"] == "amount" and found[0]["type"] == "less_than_equal" \
            and isinstance(found[0]["input"], int):
        amount, maximum = found[0]["input"], LOTS_MAX
        return ApiError(422, RejectCode.ORDER_TOO_LARGE, f"quantity {amount} lots exceeds the maximum {maximum} lots",
                        {"amount": amount, "max_order_lots": maximum})
    return ApiError(422, ApiCode.VALIDATION_ERROR, validation.summary(found), {"errors": found})


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_request: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        return error.response()

    async def on_validation(_request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        failed = validation_failed(error.errors())
        if any(p["type"] == "json_invalid" for p in failed.details.get("errors", ())):
            return ApiError(400, ApiCode.MALFORMED_JSON, "the body is not valid JSON", failed.details).response()
        return failed.response()

    async def on_http(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        code = {404: ApiCode.NOT_FOUND, 405: ApiCode.METHOD_NOT_ALLOWED}.get(error.status_code, "http_error")
        response = ApiError(error.status_code, code, str(error.detail)).response()
        response.headers.update(error.headers or {})
        if error.status_code == 405:
            # RFC 9110: Allow lists every method of the resource; Starlette names only those of the
            # first route whose path matched, and each method of a path is a route of its own here.
            response.headers["Allow"] = ", ".join(_allowed_methods(request))
        return response

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


def error_json(error: ApiError) -> bytes:
    return json.dumps(error.body(), separators=(",", ":")).encode()
