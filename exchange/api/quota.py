"""Rate-limit headers on every HTTP response, errors included (`X-RateLimit-Limit`, `-Remaining`, `-Reset`).

A client should not have to be refused to learn its budget. After the route has run, this middleware
reads (without taking anything) the token buckets the request drew on: the per-IP one, and the per-key
one when the request was signed by a key that `auth.check_rate` charged (it notes the key here). The
headers report the tighter bucket:

- `X-RateLimit-Limit`: its burst, the most requests it allows at once;
- `X-RateLimit-Remaining`: whole requests it allows now;
- `X-RateLimit-Reset`: seconds until it is full again (rounded up; 0 when full).

The refill rate is in the README (and `GET /openapi.json` describes the headers); a refused request (429)
also carries `Retry-After`.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LIMIT_HEADER = "X-RateLimit-Limit"
REMAINING_HEADER = "X-RateLimit-Remaining"
RESET_HEADER = "X-RateLimit-Reset"
HEADERS_DOC: dict[str, dict[str, Any]] = {
    LIMIT_HEADER: {"description": "the burst of the tighter of your two token buckets (per key, per IP)",
                   "schema": {"type": "integer", "examples": [20]}},
    REMAINING_HEADER: {"description": "requests that bucket allows right now",
                       "schema": {"type": "integer", "examples": [19]}},
    RESET_HEADER: {"description": "seconds until that bucket is full again (0: full)",
                   "schema": {"type": "integer", "examples": [1]}},
}

_charged_key: ContextVar[list[str] | None] = ContextVar("charged_key", default=None)


def note_key(key_id: str | None) -> None:
    """Called by the rate check: the API key this request is charged to (nothing outside a request)."""
    seen = _charged_key.get()
    if seen is not None and key_id is not None:
        seen.append(key_id)


class RateLimitHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen: list[str] = []
        token = _charged_key.set(seen)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add_headers(scope, message, seen[-1] if seen else None)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            _charged_key.reset(token)


def _add_headers(scope: Scope, message: Message, key_id: str | None) -> None:
    from exchange.api.auth import client_ip  # auth imports this module (note_key)

    state = getattr(scope.get("app"), "state", None)
    # The API keeps its limits in the runtime, the feed gateway in its context; both have limits and a clock.
    runtime = getattr(state, "runtime", None) or getattr(state, "context", None)
    if runtime is None:   # before the lifespan built it: no limits yet
        return
    limit, remaining, full_ms = runtime.limits.status(key_id, client_ip(Request(scope)), runtime.clock_ns())
    headers = MutableHeaders(scope=message)
    headers[LIMIT_HEADER] = str(limit)
    headers[REMAINING_HEADER] = str(remaining)
    headers[RESET_HEADER] = str(-(-full_ms // 1000))
