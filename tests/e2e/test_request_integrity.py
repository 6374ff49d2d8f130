"""Signed requests on a real server: an Idempotency-Key acts exactly once under concurrency, a captured
request cannot be replayed (nor its Idempotency-Key swapped), and failed authentication is rate limited
per IP without locking the key out from its other addresses.

The clients are plain httpx with hand-made signatures, so each test says exactly what goes on the wire.
Loopback is all of 127.0.0.0/8: a client bound to 127.0.0.2 is another IP to the server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from exchange.signing import HEADER_IDEMPOTENCY_KEY, HEADER_SIGNATURE
from exchange.testing.api_harness import Credentials, bootstrap, signed_headers
from exchange.testing.server_process import ServerProcess


def signed(credentials: Credentials, method: str, path: str, body: bytes = b"",
           idempotency_key: str | None = None) -> dict[str, str]:
    return signed_headers(credentials, method, path, body, int(time.time()), idempotency_key)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Credentials, Credentials]]:
    process = ServerProcess(tmp_path_factory.mktemp("integrity") / "data")
    operator, trader = bootstrap(process.settings, time.time_ns, deposits_micros={1: 0, 2: 10**12},
                                 keys=[(1, ["operator", "read"]), (2, ["read", "trade"])])
    with process:
        yield process, operator, trader


def _cash(server: ServerProcess, credentials: Credentials) -> Decimal:
    path = "/v1/balances"
    response = httpx.get(server.base_url + path, headers=signed(credentials, "GET", path))
    assert response.status_code == 200, response.text
    return Decimal(response.json()["cash"])


def test_one_idempotency_key_moves_cash_once_whatever_the_concurrency(
        server: tuple[ServerProcess, Credentials, Credentials]) -> None:
    """50 concurrent sends of one deposit (each signed afresh, one key) × 20 rounds: one execution each."""
    process, operator, _ = server
    path = "/v1/admin/accounts/1/deposits"
    body = json.dumps({"amount": "1"}).encode()

    async def round_(key: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=process.base_url, limits=limits, timeout=30) as client:
            sends = [client.post(path, content=body, headers=signed(operator, "POST", path, body, key))
                     for _ in range(50)]
            return await asyncio.gather(*sends)

    before = _cash(process, operator)
    for round_no in range(20):
        answers = asyncio.run(round_(f"race-{round_no}"))
        statuses = {r.status_code for r in answers}
        assert statuses <= {200, 409}, [r.text for r in answers if r.status_code not in (200, 409)]
        assert all(r.json()["code"] == "idempotency_key_in_use" for r in answers if r.status_code == 409)
        ok = [r.json() for r in answers if r.status_code == 200]
        assert ok and all(answer == ok[0] for answer in ok)   # the others got the first answer
    assert _cash(process, operator) - before == 20   # exactly $1 a round


def test_a_captured_request_cannot_act_twice_nor_take_another_idempotency_key(
        server: tuple[ServerProcess, Credentials, Credentials]) -> None:
    process, operator, trader = server
    path = "/v1/admin/accounts/1/deposits"
    body = json.dumps({"amount": "7"}).encode()
    before = _cash(process, operator)
    captured = signed(operator, "POST", path, body)
    first = httpx.post(process.base_url + path, content=body, headers=captured)
    assert first.status_code == 200, first.text
    replayed = httpx.post(process.base_url + path, content=body, headers=captured)
    assert (replayed.status_code, replayed.json()["code"]) == (401, "auth_replayed")
    swapped = httpx.post(process.base_url + path, content=body, headers={**captured, HEADER_IDEMPOTENCY_KEY: "new"})
    assert (swapped.status_code, swapped.json()["code"]) == (401, "auth_bad_signature")
    assert _cash(process, operator) - before == 7

    # An order without a client order id and a cancel-all: each acts once.
    order_path = "/v1/orders"
    symbol = httpx.get(process.base_url + "/v1/series").json()["items"][0]["symbol"]
    order = json.dumps({"symbol": symbol, "side": "buy", "amount": 1, "type": "market"}).encode()
    captured = signed(trader, "POST", order_path, order)
    assert httpx.post(process.base_url + order_path, content=order, headers=captured).status_code in (201, 409, 422)
    again = httpx.post(process.base_url + order_path, content=order, headers=captured)
    assert (again.status_code, again.json()["code"]) == (401, "auth_replayed")
    cancel_path = "/v1/orders/cancel-all"
    cancel_all = signed(trader, "POST", cancel_path, b"{}")
    first_cancel = httpx.post(process.base_url + cancel_path, content=b"{}", headers=cancel_all)
    assert first_cancel.status_code == 200, first_cancel.text
    again = httpx.post(process.base_url + cancel_path, content=b"{}", headers=cancel_all)
    assert again.json()["code"] == "auth_replayed"


def test_failed_authentication_is_limited_per_ip_and_never_locks_the_key_out_elsewhere(
        server: tuple[ServerProcess, Credentials, Credentials]) -> None:
    process, _, trader = server
    path = "/v1/balances"
    attacker = httpx.Client(base_url=process.base_url, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    with attacker:
        codes: list[Any] = []
        for _ in range(40):
            headers = signed(trader, "GET", path)
            headers[HEADER_SIGNATURE] = "A" * 44
            response = attacker.get(path, headers=headers)
            codes.append(response.json()["code"])
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1
                break
        assert codes[-1] == "auth_failures_limited", codes
        assert set(codes[:-1]) == {"auth_bad_signature"}
        # the attacker's address is held back even with a good signature...
        assert attacker.get(path, headers=signed(trader, "GET", path)).status_code == 429
    # ...while the key works from its own address at once
    assert httpx.get(process.base_url + path, headers=signed(trader, "GET", path)).status_code == 200
