"""What one client can hold of a real server, and malformed input at its edges (issue: integrity, 7-8).

One server (with its feed gateway) with a 2 s request-head deadline. Loopback is all of 127.0.0.0/8,
so sockets bound to 127.0.0.2.. are other clients to the server.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from exchange.signing import HEADER_SIGNATURE, sign
from exchange.testing.api_harness import Credentials, bootstrap, signed_headers
from exchange.testing.server_process import ServerProcess

_unique = itertools.count(1)
HEADERS_TIMEOUT_S = 2.0


def _ts() -> str:
    return f"{int(time.time())}.{next(_unique):06d}"


def _signed(credentials: Credentials, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    return signed_headers(credentials, method, path, body, int(time.time()))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Credentials]]:
    server = ServerProcess(tmp_path_factory.mktemp("limits") / "data", feeds=True, settings={
        "headers_timeout_s": HEADERS_TIMEOUT_S, "connections_per_ip_max": 250, "ws_sessions_per_key_max": 2})
    (trader,) = bootstrap(server.settings, time.time_ns, deposits_micros={2: 10**12}, keys=[(2, ["read", "trade"])])
    with server:
        yield server, trader


def _connect(server: ServerProcess, source: str) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=5, source_address=(source, 0))
    return sock


def _order(server: ServerProcess, trader: Credentials) -> httpx.Response:
    symbol = httpx.get(server.base_url + "/v1/series?limit=1").json()["items"][0]["symbol"]
    body = json.dumps({"symbol": symbol, "side": "buy", "amount": 1, "type": "market"}).encode()
    return httpx.post(server.base_url + "/v1/orders", content=body, headers=_signed(trader, "POST", "/v1/orders", body))


def test_idle_and_slow_sockets_do_not_stop_health_or_order_entry(world: tuple[ServerProcess, Credentials]) -> None:
    server, trader = world
    idle = [_connect(server, "127.0.0.2") for _ in range(200)]
    slow = [_connect(server, "127.0.0.3") for _ in range(100)]
    try:
        for sock in slow:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")   # a head that never ends
        started = time.monotonic()
        assert httpx.get(server.base_url + "/health", timeout=5).status_code == 200
        assert _order(server, trader).status_code in (201, 409)   # accepted, or refused by the book: answered
        assert time.monotonic() - started < 2.0
        # The slow senders are cut at the deadline with 408; the idle ones too.
        time.sleep(HEADERS_TIMEOUT_S + 0.5)
        for sock in (slow[0], idle[0]):
            sock.settimeout(3)
            answer = sock.recv(1024)
            assert answer.startswith(b"HTTP/1.1 408"), answer
    finally:
        for sock in idle + slow:
            sock.close()


def test_a_head_too_large_gets_431(world: tuple[ServerProcess, Credentials]) -> None:
    server, _ = world
    response = httpx.get(server.base_url + "/health", headers={"x-big": "a" * 20_000})
    assert response.status_code == 431


def test_connections_per_ip_are_capped(world: tuple[ServerProcess, Credentials]) -> None:
    server, _ = world
    held = [_connect(server, "127.0.0.4") for _ in range(250)]
    try:
        extra = _connect(server, "127.0.0.4")
        extra.settimeout(3)
        assert extra.recv(1024).startswith(b"HTTP/1.1 503")
        extra.close()
        assert httpx.get(server.base_url + "/health").status_code == 200   # other addresses unaffected
    finally:
        for sock in held:
            sock.close()


def test_order_entry_sessions_per_key_are_capped(world: tuple[ServerProcess, Credentials]) -> None:
    server, trader = world

    def auth() -> str:
        ts = _ts()
        return json.dumps({"op": "auth", "key": trader.key_id, "timestamp": ts,
                           "signature": sign(trader.secret, ts, "GET", "/v1/ws/orders", b"")})

    async def main() -> None:
        async with websockets.connect(server.ws_url) as one, websockets.connect(server.ws_url) as two:
            for ws in (one, two):
                await ws.send(auth())
                assert json.loads(await ws.recv())["ok"] is True
            async with websockets.connect(server.ws_url) as three:
                await three.send(auth())
                reply = json.loads(await three.recv())
                assert reply["error"]["code"] == "too_many_sessions"
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await three.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    asyncio.run(main())


def test_x_forwarded_for_is_ignored_without_trusted_proxies(world: tuple[ServerProcess, Credentials]) -> None:
    """A client cannot dodge the failed-auth limit (per IP) by inventing X-Forwarded-For addresses."""
    server, trader = world
    with httpx.Client(base_url=server.base_url, transport=httpx.HTTPTransport(local_address="127.0.0.5")) as client:
        codes = []
        for n in range(30):
            headers = {**_signed(trader, "GET", "/v1/balances"), HEADER_SIGNATURE: "A" * 44,
                       "x-forwarded-for": f"10.9.{n}.1"}
            codes.append(client.get("/v1/balances", headers=headers).json()["code"])
        assert "auth_failures_limited" in codes


def test_a_chunked_body_over_the_limit_gets_413_and_a_bad_body_a_documented_code(
        world: tuple[ServerProcess, Credentials]) -> None:
    server, trader = world

    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 1_000
    response = httpx.post(server.base_url + "/v1/orders", content=chunks(),
                          headers=_signed(trader, "POST", "/v1/orders"))
    assert (response.status_code, response.json()["code"]) == (413, "body_too_large")
    body = b"{not json"
    response = httpx.post(server.base_url + "/v1/orders", content=body, headers=_signed(trader, "POST", "/v1/orders",
                                                                                      body))
    assert (response.status_code, response.json()["code"]) == (400, "malformed_json")


def test_a_head_and_a_large_body_in_one_write_is_judged_by_its_body_not_as_a_large_head(
        world: tuple[ServerProcess, Credentials]) -> None:
    # The head is small; the same TCP write carries 20 KB of body, more than the head limit. Only the
    # body's limit applies (413), never the head's (431): the first read crosses both.
    server, trader = world
    body = b"x" * 20_000
    head = "".join(f"{name}: {value}\r\n" for name, value in _signed(trader, "POST", "/v1/orders", body).items())
    request = (f"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{head}"
               "Connection: close\r\n\r\n").encode() + body
    with _connect(server, "127.0.0.4") as sock:
        sock.sendall(request)
        sock.settimeout(5)
        answer = b""
        while chunk := sock.recv(65_536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"body_too_large" in answer


def test_malformed_websocket_input_gets_an_error_never_a_traceback(world: tuple[ServerProcess, Credentials]) -> None:
    server, _ = world
    market = server.feed_url.replace("http", "ws") + "/v1/ws/market"
    symbol = httpx.get(server.base_url + "/v1/series?limit=1").json()["items"][0]["symbol"]

    async def first_reply(url: str, frame: str | bytes) -> dict[str, Any]:
        async with websockets.connect(url) as ws:
            await ws.send(frame)
            reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
            return reply

    async def main() -> None:
        deep = "[" * 5_000 + "]" * 5_000
        assert (await first_reply(server.ws_url, b"\x00\x01"))["error"]["code"] == "binary_frame"
        assert (await first_reply(server.ws_url, deep))["error"]["code"] == "malformed_json"
        assert (await first_reply(market, b"\x00\x01"))["code"] == "binary_frame"
        assert (await first_reply(market, deep))["code"] == "malformed_json"
        wrong = json.dumps({"op": "subscribe", "id": 1, "channels": [{"channel": "candles", "symbol": symbol,
                                                                        "interval": ["1m"]}]})
        assert (await first_reply(market, wrong))["code"] == "invalid_subscription"
        twice = json.dumps({"op": "subscribe", "id": 2, "channels": [{"channel": "trades", "symbol": symbol}] * 2})
        assert (await first_reply(market, twice))["channels"] == [{"channel": "trades", "symbol": symbol}]
    asyncio.run(main())
    time.sleep(0.3)
    assert "Traceback" not in server.log_tail(1_000_000)
