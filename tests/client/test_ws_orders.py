"""The WebSocket order session against a local fake server: signed auth, replies matched by id even
when they come out of order, errors mapped like REST, and a dropped connection failing what is in
flight."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from exchange.client import (
    AuthError,
    NetworkError,
    OrderSession,
    RejectedConflictError,
    RejectedNotFoundError,
    RequestTimeoutError,
    ValidationError,
)
from exchange.client.ws_orders import orders_url
from exchange.signing import signature_matches
from tests.client.helpers import KEY_ID, SECRET, Clock

S = "H100-M40-Z26"
Json = dict[str, Any]
Handler = Callable[[ServerConnection, list[Json]], Awaitable[None]]


@asynccontextmanager
async def fake_server(handle: Handler, seen: list[Json]) -> AsyncIterator[str]:
    """A server that checks the auth message like the exchange does, then hands over to `handle`."""

    async def connection(ws: ServerConnection) -> None:
        auth = json.loads(await ws.recv())
        seen.append(auth)
        assert ws.request is not None and ws.request.path == "/v1/ws/orders"
        if not signature_matches(SECRET, str(auth.get("signature")), auth["timestamp"], "GET", "/v1/ws/orders", b""):
            await ws.send(json.dumps({"op": "auth", "id": None, "status": 401, "error": {
                "code": "auth_bad_signature", "message": "bad signature", "details": {}}}))
            await ws.close(1008)
            return
        await ws.send(json.dumps({"op": "auth", "ok": True, "account_id": 1}))
        await handle(ws, seen)

    async with serve(connection, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/v1/ws/orders"


def _answer(message: Json) -> Json:
    args = message["args"]
    if message["op"] == "place":
        if args.get("price") == "9.99":
            return {"op": "place", "id": message["id"], "status": 409, "error": {
                "code": "insufficient_margin", "message": "not enough", "details": {"needed": "10"}}}
        return {"op": "place", "id": message["id"], "status": 201,
                "result": {"id": str(100 + int(message["id"])), "client_order_id": args["client_order_id"],
                           "price": args.get("price"), "status": "open"}}
    if message["op"] == "cancel":
        return {"op": "cancel", "id": message["id"], "status": 404, "error": {
            "code": "order_not_open", "message": "no such open order", "details": {}}}
    return {"op": message["op"], "id": message["id"], "status": 200, "result": {"args": args}}


async def reversed_batches(ws: ServerConnection, seen: list[Json], batch: int = 5) -> None:
    """Collects `batch` requests, then answers them last first (the server may reorder replies)."""
    waiting: list[Json] = []
    async for raw in ws:
        message = json.loads(raw)
        seen.append(message)
        waiting.append(message)
        if len(waiting) == batch:
            for queued in reversed(waiting):
                await ws.send(json.dumps(_answer(queued)))
            waiting.clear()


async def in_order(ws: ServerConnection, seen: list[Json]) -> None:
    async for raw in ws:
        message = json.loads(raw)
        seen.append(message)
        await ws.send(json.dumps(_answer(message)))


def test_auth_is_signed_and_out_of_order_replies_reach_their_requests() -> None:
    seen: list[Json] = []

    async def main() -> list[Json]:
        async with fake_server(reversed_batches, seen) as url:
            session = await OrderSession.connect(url, KEY_ID, SECRET, cancel_on_disconnect=True, clock_s=Clock(100))
            async with session:
                return await asyncio.gather(*(session.place(S, "buy", 1, price=f"2.{i:02d}") for i in range(10)))

    results = asyncio.run(main())
    auth = seen[0]
    assert (auth["op"], auth["key"], auth["timestamp"], auth["cancel_on_disconnect"]) == (
        "auth", KEY_ID, "101.000000", True)
    assert [r["price"] for r in results] == [f"2.{i:02d}" for i in range(10)]
    requests = seen[1:]
    assert len({r["id"] for r in requests}) == 10
    assert all(r["args"]["client_order_id"] == res["client_order_id"] for r, res in
               zip(sorted(requests, key=lambda r: int(r["id"])), results, strict=True))


def test_every_op_sends_the_contracts_args_and_errors_map_like_rest() -> None:
    seen: list[Json] = []

    async def main() -> None:
        async with fake_server(in_order, seen) as url, await OrderSession.connect(url, KEY_ID, SECRET) as session:
            assert await session.amend("7", price="2.5") == {"args": {"order_id": "7", "price": "2.5"}}
            assert await session.amend(client_order_id="c", amount=2) == {
                "args": {"client_order_id": "c", "amount": 2}}
            assert await session.get(7) == {"args": {"order_id": "7"}}
            assert await session.cancel_all(S, "sell") == {"args": {"symbol": S, "side": "sell"}}
            assert await session.cancel_all_after(0) == {"args": {"timeout_seconds": 0}}
            with pytest.raises(RejectedNotFoundError) as missing:
                await session.cancel("7")
            assert (missing.value.status, missing.value.code) == (404, "order_not_open")
            with pytest.raises(RejectedConflictError) as poor:
                await session.place(S, "buy", 1, price="9.99")
            assert poor.value.details == {"needed": "10"}
            with pytest.raises(TypeError):
                await session.place(S, "buy", 1, price=2.5)  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="exactly one"):
                await session.cancel()

    asyncio.run(main())
    assert seen[0]["cancel_on_disconnect"] is False
    assert [m["op"] for m in seen[1:]] == ["amend", "amend", "get", "cancel_all", "cancel_all_after", "cancel", "place"]


def test_a_bad_key_is_refused_with_an_auth_error() -> None:
    async def main() -> None:
        async with fake_server(in_order, []) as url:
            with pytest.raises(AuthError) as caught:
                await OrderSession.connect(url, KEY_ID, "wrong-secret")
            assert caught.value.code == "auth_bad_signature"

    asyncio.run(main())


def test_a_dropped_connection_fails_requests_in_flight_and_later_ones() -> None:
    async def drop_after_two(ws: ServerConnection, seen: list[Json]) -> None:
        for _ in range(2):
            seen.append(json.loads(await ws.recv()))
        await ws.close(1011, "going away")

    async def main() -> None:
        async with fake_server(drop_after_two, []) as url:
            session = await OrderSession.connect(url, KEY_ID, SECRET)
            results = await asyncio.gather(session.place(S, "buy", 1, price="2"), session.get(5),
                                           return_exceptions=True)
            assert all(isinstance(r, NetworkError) and r.code == "connection_closed" for r in results)
            assert session.closed
            with pytest.raises(NetworkError):
                await session.get(5)
            await session.close()

    asyncio.run(main())


def test_a_reply_that_never_comes_times_out() -> None:
    async def silent(ws: ServerConnection, seen: list[Json]) -> None:
        async for raw in ws:
            seen.append(json.loads(raw))

    async def main() -> None:
        async with (fake_server(silent, []) as url,
                    await OrderSession.connect(url, KEY_ID, SECRET, request_timeout_s=0.05) as session):
            with pytest.raises(RequestTimeoutError):
                await session.get(1)

    asyncio.run(main())


def test_max_in_flight_queues_requests_beyond_the_bound() -> None:
    peak = 0

    async def count(ws: ServerConnection, seen: list[Json]) -> None:
        nonlocal peak
        waiting: list[Json] = []
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.05)
            except TimeoutError:
                peak = max(peak, len(waiting))
                for queued in waiting:
                    await ws.send(json.dumps(_answer(queued)))
                waiting.clear()
                continue
            waiting.append(json.loads(raw))

    async def main() -> None:
        async with (fake_server(count, []) as url,
                    await OrderSession.connect(url, KEY_ID, SECRET, max_in_flight=3) as session):
            done = await asyncio.gather(*(session.get(i) for i in range(1, 8)))
            assert len(done) == 7

    asyncio.run(main())
    assert peak == 3


def test_an_unreachable_server_is_a_network_error() -> None:
    async def main() -> None:
        with pytest.raises(NetworkError) as caught:
            await OrderSession.connect("ws://127.0.0.1:9/v1/ws/orders", KEY_ID, SECRET, open_timeout_s=2)
        assert caught.value.maybe_sent is False

    asyncio.run(main())


def test_validation_error_class_for_server_side_validation() -> None:
    async def invalid(ws: ServerConnection, seen: list[Json]) -> None:
        async for raw in ws:
            message = json.loads(raw)
            await ws.send(json.dumps({"op": message["op"], "id": message["id"], "status": 422,
                                      "error": {"code": "validation_error", "message": "args: bad", "details": {}}}))

    async def main() -> None:
        async with fake_server(invalid, []) as url, await OrderSession.connect(url, KEY_ID, SECRET) as session:
            with pytest.raises(ValidationError, match="args: bad"):
                await session.place(S, "buy", 1, price="2")

    asyncio.run(main())


@pytest.mark.parametrize(("given", "expected"), [
    ("http://h:8000", "ws://h:8000/v1/ws/orders"),
    ("https://h/", "wss://h/v1/ws/orders"),
    ("ws://h/v1/ws/orders", "ws://h/v1/ws/orders"),
    ("wss://h/proxy/orders", "wss://h/proxy/orders"),
])
def test_orders_url(given: str, expected: str) -> None:
    assert orders_url(given) == expected
