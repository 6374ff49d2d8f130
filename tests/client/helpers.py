"""Test doubles for the SDK: a scripted httpx transport that records what the client sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

KEY_ID = "k_test"
SECRET = "s3cr3t-for-tests"
BASE_URL = "http://exchange.test"

Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def json_response(status: int, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(), headers={
        "content-type": "application/json", **(headers or {})})


def error_response(status: int, code: str, message: str = "refused", headers: dict[str, str] | None = None,
                   details: dict[str, Any] | None = None) -> httpx.Response:
    return json_response(status, {"code": code, "message": message, "details": details or {}}, headers)


@dataclass
class Script:
    """Answers requests with `steps` in turn (a response, an exception to raise, or a function of the
    request); once they run out, answers 200 with the default body. Records every request."""

    steps: list[Step] = field(default_factory=list)
    default: dict[str, Any] = field(default_factory=lambda: {"ok": True})
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if not self.steps:
            return json_response(200, self.default)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        return step(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


@dataclass
class Sleeps:
    """A recording `sleep` (sync) for the retry loop."""

    waits: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@dataclass
class AsyncSleeps:
    """A recording `sleep` (async) for the retry loop."""

    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Clock:
    """A clock in whole seconds that ticks by `step_s` (one) on every reading."""

    def __init__(self, start: int = 1_700_000_000, step_s: int = 1) -> None:
        self.now = start
        self.step_s = step_s

    def __call__(self) -> int:
        self.now += self.step_s
        return self.now


def target(request: httpx.Request) -> str:
    """The request target exactly as sent on the wire (path and query)."""
    return request.url.raw_path.decode("ascii")


def body_json(request: httpx.Request) -> Any:
    return json.loads(request.content)
