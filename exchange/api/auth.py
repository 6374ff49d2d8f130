"""Authentication (signed requests), authorization (key scopes) and rate limits, as FastAPI dependencies.

A private request must carry the three `EX-ACCESS-*` headers of `exchange.signing`. The checks, in
order (each failure has its own code, all 401 except scope, 403): headers present, timestamp an
integer, timestamp within ±`signature_window_s` of the server clock, key known, key not revoked,
signature equal (constant time) to HMAC-SHA256 over timestamp + method + path with query + body. A
request replayed inside the window is harmless: orders are idempotent on client order ids and other
mutations on their Idempotency-Key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, Request

from exchange.api.errors import ApiCode, ApiError
from exchange.api.quota import note_key
from exchange.api.ratelimit import RateLimits, retry_after_seconds
from exchange.api.runtime import Runtime, get_runtime
from exchange.settings import Settings
from exchange.signing import HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, signature_matches
from exchange.store.store import ApiKeyRow

KEY_ID_LEN_MAX = 32
SIGNATURE_LEN_MAX = 128


class AuthContext(Protocol):
    """What signature checks and rate limits need: the API's `Runtime` and the feed gateway's both."""

    @property
    def settings(self) -> Settings: ...

    @property
    def limits(self) -> RateLimits: ...

    def clock_ns(self) -> int: ...

    def api_key(self, key_id: str) -> ApiKeyRow | None: ...

    def secret(self, key_id: str) -> str: ...


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    account_id: int
    scopes: tuple[str, ...]


def client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _unauthorized(code: ApiCode, message: str) -> ApiError:
    return ApiError(401, code, message)


def check_rate(runtime: AuthContext, key_id: str | None, ip: str) -> None:
    note_key(key_id)   # for the X-RateLimit-* headers of the response
    wait_ms = runtime.limits.check(key_id, ip, runtime.clock_ns())
    if wait_ms:
        raise ApiError(429, ApiCode.RATE_LIMITED, f"rate limit exceeded: retry in {wait_ms} ms",
                       {"retry_after_ms": wait_ms}, retry_after_s=retry_after_seconds(wait_ms))


def verify_signed(runtime: AuthContext, key_id: str | None, timestamp: str | None, signature: str | None,
                  method: str, path_with_query: str, body: bytes) -> Principal:
    """The key's principal if the signature checks out; raises the specific 401 otherwise."""
    if not key_id or not timestamp or not signature:
        missing = [name for name, value in ((HEADER_KEY, key_id), (HEADER_TIMESTAMP, timestamp),
                                            (HEADER_SIGNATURE, signature)) if not value]
        raise _unauthorized(ApiCode.AUTH_MISSING, f"missing {', '.join(missing)}: this endpoint needs a signed request")
    if len(key_id) > KEY_ID_LEN_MAX or len(signature) > SIGNATURE_LEN_MAX:
        raise _unauthorized(ApiCode.AUTH_UNKNOWN_KEY if len(key_id) > KEY_ID_LEN_MAX else ApiCode.AUTH_BAD_SIGNATURE,
                            "malformed key id or signature")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise _unauthorized(ApiCode.AUTH_INVALID_TIMESTAMP,
                            f"{HEADER_TIMESTAMP} must be integer seconds since the epoch")
    skew_s = int(timestamp) - runtime.clock_ns() // 1_000_000_000
    window_s = runtime.settings.signature_window_s
    if abs(skew_s) > window_s:
        raise _unauthorized(ApiCode.AUTH_TIMESTAMP_OUT_OF_WINDOW,
                            f"timestamp is {skew_s:+d} s from the server clock (allowed ±{window_s} s)")
    row = runtime.api_key(key_id)
    if row is None:
        raise _unauthorized(ApiCode.AUTH_UNKNOWN_KEY, "unknown API key")
    if row.revoked_ts_ns is not None:
        raise _unauthorized(ApiCode.AUTH_KEY_REVOKED, "this API key has been revoked")
    if not signature_matches(runtime.secret(key_id), signature, timestamp, method, path_with_query, body):
        raise _unauthorized(ApiCode.AUTH_BAD_SIGNATURE,
                            "signature does not match timestamp + method + path + body")
    return Principal(row.key_id, row.account_id, row.scopes)


def path_with_query(request: Request) -> str:
    """The request target as sent, percent-encoding included: what the client signed (`request.url.path`
    is decoded, so a client that encodes a path segment, as it must, would never match it)."""
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else request.url.path
    query = request.url.query
    return path + ("?" + query if query else "")


async def public_rate_limit(request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]) -> None:
    check_rate(runtime, None, client_ip(request))


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the signed request's principal, which must hold `scope`."""

    async def dependency(request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]) -> Principal:
        headers = request.headers
        principal = verify_signed(runtime, headers.get(HEADER_KEY), headers.get(HEADER_TIMESTAMP),
                                  headers.get(HEADER_SIGNATURE), request.method, path_with_query(request),
                                  await request.body())
        check_rate(runtime, principal.key_id, client_ip(request))
        if scope not in principal.scopes:
            raise ApiError(403, ApiCode.FORBIDDEN_SCOPE, f"this API key lacks the {scope!r} scope",
                           {"required": scope, "granted": list(principal.scopes)})
        return principal

    return dependency


READ = require("read")
TRADE = require("trade")
OPERATOR = require("operator")
