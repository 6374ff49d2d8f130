"""The feed tests run the API's in-process app (tests.api.conftest) and, beside it, an in-process feed
gateway on the same data directory: the gateway follows the API's journal as it does in production."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient, WebSocketTestSession

from exchange.feeds.app import create_feed_app
from exchange.feeds.context import FeedContext
from tests.api.conftest import Api, api  # noqa: F401  (the fixture)

CATCH_UP_TIMEOUT_S = 10.0


@dataclass
class Feeds:
    client: TestClient
    api: Api

    @property
    def context(self) -> FeedContext:
        context: FeedContext = self.client.app.state.context  # type: ignore[attr-defined]
        return context

    def catch_up(self) -> None:
        """Wait until the gateway has applied everything the API's engine has committed."""
        target = self.api.client.app.state.runtime.engine.commands_applied  # type: ignore[attr-defined]
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        while self.context.replica.seq < target:
            assert time.monotonic() < deadline, f"the gateway is stuck at seq {self.context.replica.seq} < {target}"
            time.sleep(0.001)

    def until_pong(self, ws: WebSocketTestSession, tag: str = "sync") -> list[dict[str, Any]]:
        """Every message the gateway sent before answering a ping sent once it has caught up (its
        queue is FIFO, so: everything published up to the API's latest commit)."""
        self.catch_up()
        ws.send_json({"op": "ping", "id": tag})
        out: list[dict[str, Any]] = []
        for _ in range(10_000):
            message: dict[str, Any] = ws.receive_json()
            if message.get("type") == "pong" and message.get("id") == tag:
                return out
            out.append(message)
        raise AssertionError("no pong")


@pytest.fixture
def feeds(api: Api) -> Iterator[Feeds]:  # noqa: F811  (the api fixture above)
    app = create_feed_app(api.settings, clock_ns=api.clock)
    with TestClient(app) as client:
        yield Feeds(client, api)
