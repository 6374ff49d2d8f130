"""ASGI middleware at the very edge: a request body size limit and per-request metrics and logs.

Written as plain ASGI (not `BaseHTTPMiddleware`) so it adds no task per request and can stop a body
that is too large while it streams in, before it is buffered."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exchange.api.errors import ApiCode, ApiError, error_json
from exchange.api.metrics import Metrics

log = logging.getLogger("exchange.api.access")


class BodyTooLarge(Exception):
    pass


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, body_bytes_max: int, metrics: Metrics,
                 large_bodies: tuple[tuple[str, int], ...] = ()) -> None:
        self.app = app
        self.body_bytes_max = body_bytes_max
        self.metrics = metrics
        # (path prefix, limit): operator endpoints that take more (a settlement command, a telemetry
        # file); they authenticate before reading the body, so a stranger cannot make them buffer it.
        self.large_bodies = large_bodies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_ns = time.perf_counter_ns()
        limit = self.body_bytes_max
        for prefix, larger in self.large_bodies:
            if scope["path"].startswith(prefix):
                limit = larger
        status = 500
        response_started = False

        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_error(send, _too_large(limit))
            self._record(scope, 413, started_ns)
            return

        received = 0
        over_limit = False

        async def limited_receive() -> Message:
            nonlocal received, over_limit
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over_limit = True
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal status, response_started
            if over_limit:
                # A body without Content-Length (chunked) ran over the limit while the app read it; the app
                # may have turned that into its own error (FastAPI answers 400 for any body-read failure):
                # the client gets 413 instead, and the app's own answer is dropped.
                if message["type"] == "http.response.start" and not response_started:
                    await _send_error(send, _too_large(limit))
                    status, response_started = 413, True
                return
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await _send_error(send, _too_large(limit))
            status = 413
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not response_started:
                await _send_error(send, ApiError(500, "internal_error", "internal error"))
            status = 500
        self._record(scope, status, started_ns)

    def _record(self, scope: Scope, status: int, started_ns: int) -> None:
        duration_ns = time.perf_counter_ns() - started_ns
        route = scope.get("route")
        template = getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"  # no :convertor
        self.metrics.observe_request(scope.get("method", ""), template, status, duration_ns)
        if log.isEnabledFor(logging.INFO):
            log.info(json.dumps({"method": scope.get("method"), "path": scope.get("path"), "route": template,
                                 "status": status, "ms": round(duration_ns / 1e6, 3),
                                 "client": (scope.get("client") or ("", 0))[0]}))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(limit: int) -> ApiError:
    return ApiError(413, ApiCode.BODY_TOO_LARGE, f"request body larger than {limit} bytes")


async def _send_error(send: Send, error: ApiError) -> None:
    body = error_json(error)
    headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
