"""Signing: every private request carries the three headers, and the signature verifies (with the
server's own helper) over exactly the target and body that went on the wire."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest

from exchange.client import AsyncClient, AuthError, Client
from exchange.signing import HEADER_IDEMPOTENCY_KEY, HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, signature_matches
from tests.client.helpers import (
    BASE_URL,
    KEY_ID,
    SECRET,
    AsyncSleeps,
    Clock,
    Script,
    Sleeps,
    error_response,
    json_response,
    target,
)


def _verifies(request: httpx.Request, secret: str = SECRET) -> bool:
    return signature_matches(secret, request.headers[HEADER_SIGNATURE], request.headers[HEADER_TIMESTAMP],
                             request.method, target(request), request.content,
                             request.headers.get(HEADER_IDEMPOTENCY_KEY))


def _client(script: Script, base_url: str = BASE_URL, clock: Clock | None = None) -> Client:
    return Client(base_url, KEY_ID, SECRET, transport=script.transport(), clock_s=clock or Clock(),
                  sleep=Sleeps(), rng=lambda: 0.5)


def test_a_signed_post_carries_the_headers_and_verifies_over_the_exact_body() -> None:
    script = Script()
    with _client(script, clock=Clock(1_700_000_000)) as client:
        client.place_order("H100-M40-Z26", "buy", 5, price=Decimal("2.35"), client_order_id="abc")
    request = script.last
    assert request.headers[HEADER_KEY] == KEY_ID
    assert request.headers[HEADER_TIMESTAMP] == "1700000001.000000"  # microseconds, strictly increasing
    assert request.headers["content-type"] == "application/json"
    assert request.content == (b'{"symbol":"H100-M40-Z26","side":"buy","type":"limit","price":"2.35",'
                               b'"amount":5,"client_order_id":"abc"}')
    assert _verifies(request)
    assert not _verifies(request, "another-secret")
    assert HEADER_IDEMPOTENCY_KEY not in request.headers  # orders are idempotent by client order id


def test_the_signed_path_includes_the_query_string_as_sent() -> None:
    script = Script(default={"items": [], "next_cursor": None})
    with _client(script) as client:
        client.orders("open", symbol="H100-M40-Z26", limit=50, cursor="120")
    request = script.last
    assert target(request) == "/v1/orders?status=open&symbol=H100-M40-Z26&limit=50&cursor=120"
    assert request.content == b""
    assert "content-type" not in request.headers
    assert _verifies(request)


def test_odd_characters_are_encoded_once_and_signed_as_encoded() -> None:
    script = Script(default={"items": [], "next_cursor": None})
    with _client(script) as client:
        client.fills(symbol="A B&c=d/é")
        client.get_order(client_order_id="x/y?z")
    fills, order = script.requests
    assert target(fills) == "/v1/fills?symbol=A+B%26c%3Dd%2F%C3%A9"
    assert target(order) == "/v1/orders/client/x%2Fy%3Fz"
    assert _verifies(fills) and _verifies(order)


def test_a_base_url_path_prefix_is_part_of_the_signed_target() -> None:
    script = Script()
    with _client(script, base_url="http://exchange.test/api/") as client:
        client.balances()
    assert target(script.last) == "/api/v1/balances"
    assert _verifies(script.last)


def test_every_retry_is_signed_afresh_with_a_new_timestamp() -> None:
    script = Script(steps=[error_response(503, "service_unavailable"), error_response(503, "service_unavailable")])
    with _client(script) as client:
        client.cancel_order("42")
    stamps = [r.headers[HEADER_TIMESTAMP] for r in script.requests]
    assert len(stamps) == 3 and len(set(stamps)) == 3
    assert all(_verifies(r) for r in script.requests)


def test_the_idempotency_key_is_signed_so_it_cannot_be_swapped() -> None:
    script = Script(default={"account_id": 7, "cash": "5.000000"})
    with _client(script) as client:
        client.request("POST", "/v1/admin/accounts/7/deposits", payload={"amount": "5"}, idempotency_key="dep-7")
    request = script.last
    assert request.headers[HEADER_IDEMPOTENCY_KEY] == "dep-7"
    assert _verifies(request)
    assert not signature_matches(SECRET, request.headers[HEADER_SIGNATURE], request.headers[HEADER_TIMESTAMP],
                                 request.method, target(request), request.content, "dep-8")


def test_identical_requests_in_one_second_get_distinct_timestamps() -> None:
    script = Script(default={"items": [], "next_cursor": None})
    with _client(script, clock=Clock(1_700_000_000, step_s=0)) as client:
        client.cancel_order("42")
        client.cancel_order("42")
    first, second = (r.headers[HEADER_TIMESTAMP] for r in script.requests)
    assert first != second and first.split(".")[0] == second.split(".")[0]


def test_public_endpoints_are_not_signed() -> None:
    script = Script(default={"symbol": "X", "bids": [], "asks": []})
    with _client(script) as client:
        client.order_book("H100-M40-Z26", depth=10)
    assert target(script.last) == "/v1/series/H100-M40-Z26/book?depth=10"
    assert HEADER_SIGNATURE not in script.last.headers and HEADER_KEY not in script.last.headers


def test_a_private_call_without_credentials_fails_before_sending() -> None:
    script = Script()
    with Client(BASE_URL, transport=script.transport()) as client:
        assert client.products() == {"ok": True}
        with pytest.raises(AuthError) as caught:
            client.balances()
    assert caught.value.code == "auth_missing"
    assert len(script.requests) == 1


def test_credentials_come_in_pairs_and_base_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="both"):
        Client(BASE_URL, KEY_ID)
    with pytest.raises(ValueError, match="http"):
        Client("ftp://exchange.test")


def test_the_async_client_signs_the_same_way() -> None:
    script = Script(steps=[json_response(201, {"id": "7"})])

    async def main() -> None:
        async with AsyncClient(BASE_URL, KEY_ID, SECRET, transport=script.transport(), clock_s=Clock(),
                               sleep=AsyncSleeps()) as client:
            assert await client.place_order("H100-M40-Z26", "sell", 1, price="2.5") == {"id": "7"}
            await client.ledger(limit=10)

    asyncio.run(main())
    placed, ledger = script.requests
    assert _verifies(placed) and _verifies(ledger)
    assert target(ledger) == "/v1/ledger?limit=10"
