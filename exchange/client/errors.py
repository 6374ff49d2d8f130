"""The SDK's exceptions: one class per kind of failure, all carrying the server's error shape.

Every failure the exchange answers has the body `{"code", "message", "details"}`; the SDK raises it as
an `ExchangeError` whose class says what kind of failure it is, so callers can catch broadly or
narrowly:

    ExchangeError                      anything the SDK raises for a failed request
    ├── NetworkError                   no answer: connection refused or lost, WebSocket closed (status 0)
    │   └── RequestTimeoutError        no answer in time
    ├── AuthError                      401: missing, unknown, revoked key; bad signature or timestamp
    ├── ForbiddenError                 403: the key lacks the scope
    ├── NotFoundError                  404
    ├── ConflictError                  409: e.g. idempotency_key_conflict
    ├── ValidationError                400 / 413 / 422: malformed or invalid request
    ├── RateLimitedError               429 (retry_after_s says when to come back)
    ├── ServerError                    5xx, including non-JSON answers of a proxy (502, 504)
    │   └── UnavailableError           503 (retry_after_s says when to come back)
    └── RejectedError                  refused by the matching engine (`code` is a RejectCode value)
        ├── RejectedNotFoundError      ... and also a NotFoundError     (order_not_open, unknown_series)
        ├── RejectedConflictError      ... and also a ConflictError     (insufficient_margin, series_halted)
        └── RejectedValidationError    ... and also a ValidationError   (price_outside_band, invalid_price)

So `except RejectedError` catches every engine refusal whatever its status, and `except ConflictError`
catches every 409 whether the engine or the API refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from exchange.domain.codes import RejectCode

ENGINE_CODES: frozenset[str] = frozenset(code.value for code in RejectCode)
"""The codes of refusals by the matching engine (as opposed to the API layer)."""

_MESSAGE_LIMIT = 300  # characters of a non-JSON body kept as the message


class ExchangeError(Exception):
    """A request failed. `status` is the HTTP status (0 when there was no answer); `code` the stable
    snake_case error code to switch on; `details` any structured detail; `retry_after_s` the server's
    Retry-After, when it sent one."""

    def __init__(self, status: int, code: str, message: str, details: Mapping[str, Any] | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        prefix = f"{self.status} {self.code}" if self.status else self.code
        return f"{prefix}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, message={self.message!r})"

    def __reduce__(self) -> tuple[Any, ...]:  # picklable despite the custom constructor
        return (type(self), (self.status, self.code, self.message, self.details, self.retry_after_s))


class NetworkError(ExchangeError):
    """No answer from the server. `maybe_sent` is False when the request certainly never left (the
    connection could not be opened), so even a non-idempotent request may be sent again."""

    def __init__(self, status: int = 0, code: str = "network_error", message: str = "network error",
                 details: Mapping[str, Any] | None = None, retry_after_s: float | None = None,
                 *, maybe_sent: bool = True) -> None:
        super().__init__(status, code, message, details, retry_after_s)
        self.maybe_sent = maybe_sent

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_network_error, (type(self), self.code, self.message, self.details, self.maybe_sent))


class SubscriptionError(ExchangeError):
    """The market-data feed refused a subscription or the session (an unknown series, a malformed channel,
    a revoked key...): raised by `MarketFeed` iteration, since waiting for data that will never come
    helps nobody. `code` is the feed's error code."""


class RequestTimeoutError(NetworkError):
    """No answer in time (the request may or may not have been acted on)."""


class AuthError(ExchangeError):
    """401: the request is not authenticated (missing, unknown or revoked key, bad signature, clock skew)."""


class ForbiddenError(ExchangeError):
    """403: the API key lacks the scope the endpoint needs."""


class NotFoundError(ExchangeError):
    """404: the order, series or account does not exist (or belongs to another account)."""


class ConflictError(ExchangeError):
    """409: the request conflicts with the current state (e.g. an Idempotency-Key reused for another request)."""


class ValidationError(ExchangeError):
    """400, 413 or 422: the request is malformed, too large or breaks a rule."""


class RateLimitedError(ExchangeError):
    """429: too many requests; `retry_after_s` says when to try again."""


class ServerError(ExchangeError):
    """5xx: the server (or a proxy in front of it) failed."""


class UnavailableError(ServerError):
    """503: the exchange cannot take the request now (starting, overloaded, journal unavailable)."""


class RejectedError(ExchangeError):
    """The matching engine refused the command; `code` is one of `exchange.domain.codes.RejectCode`."""


class RejectedNotFoundError(RejectedError, NotFoundError):
    """An engine refusal naming something that does not exist (order_not_open, unknown_series, ...)."""


class RejectedConflictError(RejectedError, ConflictError):
    """An engine refusal because of the current state (insufficient_margin, series_halted, ...)."""


class RejectedValidationError(RejectedError, ValidationError):
    """An engine refusal because the command breaks a static rule (invalid_price, price_outside_band, ...)."""


def _rebuild_network_error(cls: type[NetworkError], code: str, message: str, details: dict[str, Any],
                           maybe_sent: bool) -> NetworkError:
    return cls(0, code, message, details, maybe_sent=maybe_sent)


_BY_STATUS: dict[int, type[ExchangeError]] = {
    400: ValidationError,
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: ValidationError,
    422: ValidationError,
    429: RateLimitedError,
    503: UnavailableError,
}

_REJECTED_BY_STATUS: dict[int, type[RejectedError]] = {
    400: RejectedValidationError,
    404: RejectedNotFoundError,
    409: RejectedConflictError,
    413: RejectedValidationError,
    422: RejectedValidationError,
}

# The status of an error that arrives without one (a WebSocket error message), by its code.
_STATUS_BY_CODE: dict[str, int] = {
    "forbidden_scope": 403,
    "not_found": 404,
    "validation_error": 422,
    "malformed_json": 400,
    "body_too_large": 413,
    "rate_limited": 429,
    "service_unavailable": 503,
    "idempotency_key_conflict": 409,
    "idempotency_key_in_use": 409,
    "idempotency_key_invalid": 400,
    "method_not_allowed": 405,
}


def status_for_code(code: str) -> int:
    """The HTTP status the REST API would give an error `code` (for errors that carry no status)."""
    if code.startswith("auth_"):
        return 401
    return _STATUS_BY_CODE.get(code, 400)


def error_class(status: int, code: str) -> type[ExchangeError]:
    """The exception class for an error answer with this status and code."""
    if code in ENGINE_CODES:
        return _REJECTED_BY_STATUS.get(status, RejectedError)
    known = _BY_STATUS.get(status)
    if known is not None:
        return known
    return ServerError if status >= 500 else ExchangeError


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A header by case-insensitive name (httpx.Headers is already case-insensitive; a dict is not)."""
    if headers is None:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as a number of seconds (the form the exchange sends); None if absent or not a
    non-negative number (the HTTP-date form is not used by the exchange and is ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _decode_body(body: object) -> tuple[dict[str, Any] | None, str]:
    """The JSON object of an error body, if it is one, and its text (for a message of last resort)."""
    if isinstance(body, Mapping):
        return dict(body), ""
    if isinstance(body, bytes | bytearray):
        text = bytes(body).decode("utf-8", "replace")
    elif isinstance(body, str):
        text = body
    else:
        return None, "" if body is None else str(body)
    try:
        parsed = json.loads(text)
    except ValueError:
        return None, text
    return (parsed if isinstance(parsed, dict) else None), text


def error_from_response(status: int, body: object, headers: Mapping[str, str] | None = None) -> ExchangeError:
    """The exception for an error answer.

    `body` is the parsed JSON body, or the raw body (bytes or str) which is parsed here; anything that
    is not the exchange's `{"code", "message", "details"}` object (an HTML page from a proxy, an empty
    body) still yields an error of the right class, with code `http_<status>` and the start of the
    text as its message.
    """
    parsed, text = _decode_body(body)
    raw_code = parsed.get("code") if parsed else None
    code = raw_code if isinstance(raw_code, str) and raw_code else f"http_{status}"
    raw_message = parsed.get("message") if parsed else None
    if isinstance(raw_message, str) and raw_message:
        message = raw_message
    else:
        snippet = " ".join(text.split())[:_MESSAGE_LIMIT]
        message = snippet or f"HTTP {status}"
    raw_details = parsed.get("details") if parsed else None
    details: dict[str, Any] = dict(raw_details) if isinstance(raw_details, Mapping) else {}
    retry_after_s = parse_retry_after(_header(headers, "Retry-After"))
    if retry_after_s is None and isinstance(details.get("retry_after_ms"), int | float):
        retry_after_s = max(0.0, float(details["retry_after_ms"]) / 1000)
    return error_class(status, code)(status, code, message, details, retry_after_s)
