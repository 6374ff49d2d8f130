"""Revocation and the kill switch reach open sessions within a second, on a real server: an order-entry
WebSocket of a revoked key (or a disabled account) and a private market-data subscription on the feed
gateway are told why and closed with 1008; nothing the session sends afterwards acts."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from exchange.signing import sign
from exchange.testing.api_harness import Credentials, bootstrap, signed_headers
from exchange.testing.server_process import ServerProcess

_unique = itertools.count(1)


def _timestamp() -> str:
    return f"{int(time.time())}.{next(_unique):06d}"


def _auth(credentials: Credentials, style: str) -> str:
    ts = _timestamp()
    path = "/v1/ws/orders" if style == "orders" else "/v1/ws/market"
    message: dict[str, Any] = {"op": "auth", "key": credentials.key_id, "timestamp": ts,
                               "signature": sign(credentials.secret, ts, "GET", path, b"")}
    if style == "market":
        message["id"] = 1
    return json.dumps(message)


def _operator(server: ServerProcess, operator: Credentials, method: str, path: str, body: Any) -> httpx.Response:
    raw = json.dumps(body).encode()
    return httpx.request(method, server.base_url + path, content=raw,
                         headers=signed_headers(operator, method, path, raw, int(time.time())))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, list[Credentials]]]:
    server = ServerProcess(tmp_path_factory.mktemp("standing") / "data", feeds=True)
    keys = bootstrap(server.settings, time.time_ns, deposits_micros={1: 0, 2: 10**12, 3: 10**12, 4: 10**12},
                     keys=[(1, ["operator"]), (2, ["read", "trade"]), (3, ["read", "trade"]), (4, ["read"])])
    with server:
        yield server, keys


async def _closed_within(ws: Any, seconds: float) -> tuple[list[dict[str, Any]], int | None]:
    """Messages received until the server closes the socket, and the close code."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(seconds):
        try:
            while True:
                frame = json.loads(await ws.recv())
                seen.extend(frame if isinstance(frame, list) else [frame])
        except websockets.ConnectionClosed as closed:
            return seen, closed.rcvd.code if closed.rcvd is not None else None


@pytest.mark.parametrize("how", ["revoke", "disable"])
def test_an_order_entry_session_is_closed_within_a_second(world: tuple[ServerProcess, list[Credentials]],
                                                         how: str) -> None:
    server, (operator, trader2, trader3, _) = world
    trader = trader2 if how == "revoke" else trader3

    async def main() -> None:
        async with websockets.connect(server.ws_url) as ws:
            await ws.send(_auth(trader, "orders"))
            assert json.loads(await ws.recv())["ok"] is True
            started = time.monotonic()
            if how == "revoke":
                r = await asyncio.to_thread(_operator, server, operator, "DELETE",
                                            f"/v1/admin/api-keys/{trader.key_id}", {})
            else:
                r = await asyncio.to_thread(_operator, server, operator, "PUT",
                                            f"/v1/admin/accounts/{trader.account_id}/enabled", {"enabled": False})
            assert r.status_code == 200, r.text
            seen, code = await _closed_within(ws, 2.0)
            assert time.monotonic() - started < 1.0 + 0.5   # the operator call's own time included
            assert code == 1008
            expected = "auth_key_revoked" if how == "revoke" else "account_disabled"
            assert [m["error"]["code"] for m in seen if m.get("op") == "error"] == [expected]
            with pytest.raises(websockets.ConnectionClosed):
                await ws.send(json.dumps({"op": "place", "id": 1, "args": {}}))
                await ws.recv()
    asyncio.run(main())


def test_a_private_market_data_subscription_is_closed_when_its_key_is_revoked(
        world: tuple[ServerProcess, list[Credentials]]) -> None:
    server, (operator, _, _, reader) = world
    url = server.feed_url.replace("http", "ws") + "/v1/ws/market"

    async def main() -> None:
        async with websockets.connect(url) as ws:
            await ws.send(_auth(reader, "market"))
            await ws.send(json.dumps({"op": "subscribe", "id": 2, "channels": [{"channel": "private"}]}))
            async with asyncio.timeout(5):
                kinds: set[str] = set()
                while "subscribed" not in kinds:
                    frame = json.loads(await ws.recv())
                    kinds |= {m.get("type") for m in (frame if isinstance(frame, list) else [frame])}
            started = time.monotonic()
            r = await asyncio.to_thread(_operator, server, operator, "DELETE", f"/v1/admin/api-keys/{reader.key_id}",
                                        {})
            assert r.status_code == 200, r.text
            seen, code = await _closed_within(ws, 2.0)
            assert time.monotonic() - started < 1.5
            assert code == 1008
            assert [m["code"] for m in seen if m.get("type") == "error"] == ["auth_key_revoked"]
    asyncio.run(main())
