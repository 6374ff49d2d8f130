"""Authentication (signed requests), authorization (key scopes) and rate limits, as FastAPI dependencies.

A private request must carry the three `EX-ACCESS-*` headers of `exchange.signing`. The checks, in
order (each failure has its own code, all 401 except scope, 403): headers present, timestamp seconds
(an integer or up to 6 decimals), within ±`signature_window_s` of the server clock, key known, key not
revoked, signature equal (constant time) to HMAC-SHA256 over timestamp + method + path with query
[+ Idempotency-Key] + body, and, for a request that acts, a signature not seen before (`replay.py`).
Failed authentications are rate limited per IP and per (key id, IP) before any of that work.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, Request

from exchange.api.errors import ApiCode, ApiError
from exchange.api.quota import note_key
from exchange.api.ratelimit import RateLimits, retry_after_seconds
from exchange.api.replay import ReplayGuardFull
from exchange.api.runtime import Runtime, get_runtime
from exchange.settings import Settings
from exchange.signing import (
    HEADER_IDEMPOTENCY_KEY,
    HEADER_KEY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    TIMESTAMP_RE,
    signature_matches,
)
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
                  method: str, path_with_query: str, body: bytes, *, ip: str,
                  idempotency_key: str | None = None, acting: bool | None = None,
                  expected_signature: str | None = None, at_ns: int | None = None) -> Principal:
    """The key's principal if the signature checks out; raises the specific 401 otherwise.

    Failed attempts are counted per client IP and per (key id, IP): past their budget the caller gets
    429 with Retry-After before any verification work, so a flood of bad signatures costs next to
    nothing and cannot slow order entry, while the real key keeps working from its own IPs.
    `acting` (default: any method but GET/HEAD) requests are accepted once per signature.
    A streamed body (an upload) is not in `body`: the route computed `expected_signature` as it read it
    (`exchange.signing.body_mac`), and `at_ns` is when the request arrived (the window is judged then)."""
    limits = runtime.limits
    now_ns = runtime.clock_ns()
    wait_ms = limits.auth_failure_wait_ms(key_id, ip, now_ns)
    if wait_ms:
        raise ApiError(429, ApiCode.AUTH_FAILURES_LIMITED,
                       f"too many failed authentications from this address: retry in {wait_ms} ms",
                       {"retry_after_ms": wait_ms}, retry_after_s=retry_after_seconds(wait_ms))
    try:
        principal = _verify(runtime, key_id, timestamp, signature, method, path_with_query, body, idempotency_key,
                            expected_signature, now_ns if at_ns is None else at_ns)
        if acting if acting is not None else method not in ("GET", "HEAD"):
            assert key_id is not None and timestamp is not None and signature is not None
            try:
                first = limits.replays.first_use(key_id, signature, int(timestamp.partition(".")[0]),
                                                 runtime.settings.signature_window_s, now_ns)
            except ReplayGuardFull:
                raise ApiError(503, ApiCode.SERVICE_UNAVAILABLE, "too many signed requests in flight: retry",
                               retry_after_s=1) from None
            if not first:
                raise _unauthorized(ApiCode.AUTH_REPLAYED,
                                    "this signature was already used: sign every request afresh (a new timestamp)")
    except ApiError as error:
        # An unsigned request costs no verification and guesses nothing: only real attempts count.
        if error.status == 401 and error.code != ApiCode.AUTH_MISSING:
            limits.note_auth_failure(key_id, ip, now_ns)
        raise
    return principal


def _verify(runtime: AuthContext, key_id: str | None, timestamp: str | None, signature: str | None,
            method: str, path_with_query: str, body: bytes, idempotency_key: str | None,
            expected_signature: str | None, now_ns: int) -> Principal:
    if not key_id or not timestamp or not signature:
        missing = [name for name, value in ((HEADER_KEY, key_id), (HEADER_TIMESTAMP, timestamp),
                                            (HEADER_SIGNATURE, signature)) if not value]
        raise _unauthorized(ApiCode.AUTH_MISSING, f"missing {', '.join(missing)}: this endpoint needs a signed request")
    if len(key_id) > KEY_ID_LEN_MAX or len(signature) > SIGNATURE_LEN_MAX:
        raise _unauthorized(ApiCode.AUTH_UNKNOWN_KEY if len(key_id) > KEY_ID_LEN_MAX else ApiCode.AUTH_BAD_SIGNATURE,
                            "malformed key id or signature")
    if not TIMESTAMP_RE.match(timestamp):
        raise _unauthorized(ApiCode.AUTH_INVALID_TIMESTAMP,
                            f"{HEADER_TIMESTAMP} must be seconds since the epoch: an integer, or with up to 6 "
                            "decimals")
    skew_s = int(timestamp.partition(".")[0]) - now_ns // 1_000_000_000
    window_s = runtime.settings.signature_window_s
    if abs(skew_s) > window_s:
        raise _unauthorized(ApiCode.AUTH_TIMESTAMP_OUT_OF_WINDOW,
                            f"timestamp is {skew_s:+d} s from the server clock (allowed ±{window_s} s)")
    row = runtime.api_key(key_id)
    if row is None:
        raise _unauthorized(ApiCode.AUTH_UNKNOWN_KEY, "unknown API key")
    if row.revoked_ts_ns is not None:
        raise _unauthorized(ApiCode.AUTH_KEY_REVOKED, "this API key has been revoked")
    if expected_signature is not None:
        matches = hmac.compare_digest(expected_signature.encode(), signature.encode("utf-8", "replace"))
    else:
        matches = signature_matches(runtime.secret(key_id), signature, timestamp, method, path_with_query, body,
                                    idempotency_key)
    if not matches:
        raise _unauthorized(ApiCode.AUTH_BAD_SIGNATURE,
                            "signature does not match timestamp + method + path [+ Idempotency-Key] + body")
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
        ip = client_ip(request)
        principal = verify_signed(runtime, headers.get(HEADER_KEY), headers.get(HEADER_TIMESTAMP),
                                  headers.get(HEADER_SIGNATURE), request.method, path_with_query(request),
                                  await request.body(), ip=ip, idempotency_key=headers.get(HEADER_IDEMPOTENCY_KEY))
        check_rate(runtime, principal.key_id, ip)
        if scope not in principal.scopes:
            raise ApiError(403, ApiCode.FORBIDDEN_SCOPE, f"this API key lacks the {scope!r} scope",
                           {"required": scope, "granted": list(principal.scopes)})
        return principal

    return dependency


READ = require("read")
TRADE = require("trade")
OPERATOR = require("operator")
