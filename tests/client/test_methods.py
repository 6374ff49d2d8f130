"""Each SDK method sends the request the API contract describes (method, target, body), and the
iterators follow `next_cursor` to the last page."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from exchange.client import AsyncClient, Client
from exchange.signing import HEADER_IDEMPOTENCY_KEY, HEADER_SIGNATURE
from tests.client.helpers import BASE_URL, KEY_ID, SECRET, AsyncSleeps, Clock, Script, Sleeps, json_response, target

S = "H100-M40-Z26"

Case = tuple[Callable[[Client], object], str, str, dict[str, Any] | None]

CASES: list[Case] = [
    (lambda c: c.health(), "GET", "/health", None),
    (lambda c: c.products(), "GET", "/v1/products", None),
    (lambda c: c.series(), "GET", "/v1/series?status=trading", None),
    (lambda c: c.series("all", limit=5, cursor="9"), "GET", "/v1/series?status=all&limit=5&cursor=9", None),
    (lambda c: c.series_spec(S), "GET", f"/v1/series/{S}", None),
    (lambda c: c.order_book(S), "GET", f"/v1/series/{S}/book", None),
    (lambda c: c.trades(S, limit=3), "GET", f"/v1/series/{S}/trades?limit=3", None),
    (lambda c: c.trades(S, cursor="n12", since_ns=5, until_ns=9), "GET",
     f"/v1/series/{S}/trades?cursor=n12&since=5&until=9", None),
    (lambda c: c.fills(S, since_ns=5), "GET", f"/v1/fills?symbol={S}&since=5", None),
    (lambda c: c.ticker(S), "GET", f"/v1/series/{S}/ticker", None),
    (lambda c: c.candles(S, "5m", start_ns=1, end_ns=2), "GET",
     f"/v1/series/{S}/candles?interval=5m&start_ns=1&end_ns=2", None),
    (lambda c: c.place_order(S, "sell", 3, type="market", time_in_force="IOC", stp="cancel_newest",
                             client_order_id="c1"),
     "POST", "/v1/orders", {"symbol": S, "side": "sell", "type": "market", "amount": 3, "time_in_force": "IOC",
                            "stp": "cancel_newest", "client_order_id": "c1"}),
    (lambda c: c.place_order(S, "buy", 1, 2, time_in_force="GTD", post_only=True, client_order_id="c2",
                             expire_time_ns=10**18),
     "POST", "/v1/orders", {"symbol": S, "side": "buy", "type": "limit", "price": "2", "amount": 1,
                            "time_in_force": "GTD", "post_only": True, "client_order_id": "c2",
                            "expire_time_ns": 10**18}),
    (lambda c: c.get_order("17"), "GET", "/v1/orders/17", None),
    (lambda c: c.get_order(17), "GET", "/v1/orders/17", None),
    (lambda c: c.get_order(client_order_id="c1"), "GET", "/v1/orders/client/c1", None),
    (lambda c: c.orders(), "GET", "/v1/orders?status=all", None),
    (lambda c: c.open_orders(S), "GET", f"/v1/orders?status=open&symbol={S}", None),
    (lambda c: c.closed_orders(limit=2), "GET", "/v1/orders?status=closed&limit=2", None),
    (lambda c: c.amend_order("17", price=Decimal("2.40")), "PATCH", "/v1/orders/17", {"price": "2.40"}),
    (lambda c: c.amend_order(client_order_id="c1", amount=2), "PATCH", "/v1/orders/client/c1", {"amount": 2}),
    (lambda c: c.cancel_order("17"), "DELETE", "/v1/orders/17", None),
    (lambda c: c.cancel_order(client_order_id="c1"), "DELETE", "/v1/orders/client/c1", None),
    (lambda c: c.cancel_all(), "POST", "/v1/orders/cancel-all", {}),
    (lambda c: c.cancel_all(S, "buy"), "POST", "/v1/orders/cancel-all", {"symbol": S, "side": "buy"}),
    (lambda c: c.cancel_all_after(30), "POST", "/v1/cancel-all-after", {"timeout_seconds": 30}),
    (lambda c: c.fills(S, cursor="4"), "GET", f"/v1/fills?symbol={S}&cursor=4", None),
    (lambda c: c.positions(), "GET", "/v1/positions", None),
    (lambda c: c.balances(), "GET", "/v1/balances", None),
    (lambda c: c.ledger(), "GET", "/v1/ledger", None),
    (lambda c: c.account(), "GET", "/v1/account", None),
    (lambda c: c.create_account(), "POST", "/v1/admin/accounts", {}),
    (lambda c: c.create_account(7), "POST", "/v1/admin/accounts", {"account_id": 7}),
    (lambda c: c.deposit(7, Decimal("1E+3")), "POST", "/v1/admin/accounts/7/deposits", {"amount": "1000"}),
    (lambda c: c.withdraw(7, "12.50"), "POST", "/v1/admin/accounts/7/withdrawals", {"amount": "12.50"}),
    (lambda c: c.set_account_enabled(7, False), "PUT", "/v1/admin/accounts/7/enabled", {"enabled": False}),
    (lambda c: c.create_api_key(7, ("read", "trade")), "POST", "/v1/admin/api-keys",
     {"account_id": 7, "scopes": ["read", "trade"]}),
    (lambda c: c.list_series(S), "POST", "/v1/admin/series", {"symbol": S}),
    (lambda c: c.halt_series(S), "PUT", f"/v1/admin/series/{S}/halt", {"halted": True}),
    (lambda c: c.halt_series(S, halted=False), "PUT", f"/v1/admin/series/{S}/halt", {"halted": False}),
    (lambda c: c.request("GET", "/v1/whatever", params={"a": 1, "b": None, "c": True}), "GET",
     "/v1/whatever?a=1&c=true", None),
]

PUBLIC = ("/health", "/v1/products", "/v1/series")


@pytest.mark.parametrize(("invoke", "method", "path", "body"), CASES)
def test_each_method_sends_the_contracts_request(invoke: Callable[[Client], object], method: str, path: str,
                                                 body: dict[str, Any] | None) -> None:
    script = Script()
    with Client(BASE_URL, KEY_ID, SECRET, transport=script.transport(), clock_s=Clock(), sleep=Sleeps()) as client:
        assert invoke(client) == {"ok": True}
    request = script.last
    assert (request.method, target(request)) == (method, path)
    assert (json.loads(request.content) if request.content else None) == body
    assert (HEADER_SIGNATURE in request.headers) == (not path.startswith(PUBLIC))
    mutation = method != "GET" and path != "/v1/orders"
    assert (HEADER_IDEMPOTENCY_KEY in request.headers) == mutation


@pytest.mark.parametrize("refs", [{}, {"order_id": "1", "client_order_id": "c"}])
def test_an_order_is_named_by_exactly_one_id(refs: dict[str, Any]) -> None:
    with Client(BASE_URL, KEY_ID, SECRET, transport=Script().transport()) as client:
        with pytest.raises(ValueError, match="exactly one"):
            client.get_order(**refs)
        with pytest.raises(ValueError, match="exactly one"):
            client.cancel_order(**refs)


def test_argument_checks() -> None:
    with Client(BASE_URL, KEY_ID, SECRET, transport=Script().transport()) as client:
        with pytest.raises(ValueError, match="price, an amount"):
            client.amend_order("1")
        with pytest.raises(ValueError, match="not a decimal"):
            client.deposit(1, "ten dollars")
        with pytest.raises(ValueError, match="finite"):
            client.deposit(1, Decimal("NaN"))
        with pytest.raises(TypeError, match="bool"):
            client.halt_series(S, 1)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            client.deposit(1, True)
        with pytest.raises(TypeError, match="sequence"):
            client.create_api_key(1, "read")
        with pytest.raises(TypeError):
            client.order_book(S, depth=2.0)  # type: ignore[arg-type]


def _pages(request: httpx.Request) -> httpx.Response:
    cursor = request.url.params.get("cursor")
    page = {None: ([1, 2], "2"), "2": ([3, 4], "4"), "4": ([5], None)}[cursor]
    return json_response(200, {"items": [{"n": n} for n in page[0]], "next_cursor": page[1]})


def test_iterators_follow_next_cursor() -> None:
    script = Script(steps=[_pages] * 3)
    with Client(BASE_URL, KEY_ID, SECRET, transport=script.transport()) as client:
        assert [o["n"] for o in client.iter_orders("open", page_size=2)] == [1, 2, 3, 4, 5]
    assert [target(r) for r in script.requests] == [
        "/v1/orders?status=open&limit=2", "/v1/orders?status=open&limit=2&cursor=2",
        "/v1/orders?status=open&limit=2&cursor=4"]


def test_async_iterators_follow_next_cursor() -> None:
    script = Script(steps=[_pages] * 3)

    async def main() -> list[int]:
        async with AsyncClient(BASE_URL, KEY_ID, SECRET, transport=script.transport(), sleep=AsyncSleeps()) as client:
            return [fill["n"] async for fill in client.iter_fills(S)]

    assert asyncio.run(main()) == [1, 2, 3, 4, 5]
    assert target(script.requests[-1]) == f"/v1/fills?symbol={S}&cursor=4"


def test_the_async_client_runs_calls_concurrently() -> None:
    script = Script(default={"id": "1"})

    async def main() -> list[dict[str, Any]]:
        async with AsyncClient(BASE_URL, KEY_ID, SECRET, transport=script.transport()) as client:
            return await asyncio.gather(*(client.place_order(S, "buy", 1, price=f"2.{i:02d}") for i in range(20)))

    assert len(asyncio.run(main())) == 20
    assert len({json.loads(r.content)["client_order_id"] for r in script.requests}) == 20
