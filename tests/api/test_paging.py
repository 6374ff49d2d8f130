"""REST conventions: recent trades and fills newest first with time bounds and opaque cursors both ways;
rate-limit headers on every response, errors included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from exchange.api.app import create_app
from exchange.testing.api_harness import bootstrap, signed_headers
from exchange.testing.specs import T0_NS, make_spec
from tests.api.conftest import OTHER_SYMBOL, SYMBOL, Api, Clock, make_settings

TRADES = 7


def _trade(api: Api, n: int, symbol: str = SYMBOL) -> None:
    """One trade of `n` lots (bob buys from alice), one second after the previous one."""
    api.clock.advance_s(1)
    assert api.place("alice", "sell", n, "2.400", symbol=symbol).status_code == 201
    assert api.place("bob", "buy", n, "2.400", symbol=symbol).json()["filled"] == n


def _walk(get: Any, first: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """Every item from `first` on, following `key` ("next_cursor" or "prev_cursor") until it is null
    or a page comes back empty."""
    items, page = list(first["items"]), first
    while page[key] is not None:
        page = get(page[key])
        if not page["items"]:
            break
        items += page["items"]
    return items


def test_public_trades_are_newest_first_with_cursors_both_ways(api: Api) -> None:
    for n in range(1, TRADES + 1):
        _trade(api, n)

    def get(cursor: str | None = None, **query: Any) -> dict[str, Any]:
        params = {"limit": 3, **query, **({"cursor": cursor} if cursor else {})}
        response = api.client.get(f"/v1/series/{SYMBOL}/trades", params=params)
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        return page

    first = get()
    assert [t["amount"] for t in first["items"]] == [7, 6, 5]
    older = _walk(get, first, "next_cursor")
    assert [t["amount"] for t in older] == [7, 6, 5, 4, 3, 2, 1]
    assert [t["trade_id"] for t in older] == sorted((t["trade_id"] for t in older), reverse=True)
    # From the oldest page back to the newest with prev_cursor: each page still newest first.
    last = get(get(first["next_cursor"])["next_cursor"])
    assert [t["amount"] for t in last["items"]] == [1] and last["next_cursor"] is None
    newer = get(last["prev_cursor"])
    assert [t["amount"] for t in newer["items"]] == [4, 3, 2]
    assert [t["amount"] for t in get(newer["prev_cursor"])["items"]] == [7, 6, 5]
    # Polling: the newest page's prev_cursor returns nothing until a new trade, then that trade.
    poll = get(first["prev_cursor"])
    assert poll["items"] == [] and poll["prev_cursor"] == first["prev_cursor"]
    _trade(api, 8)
    assert [t["amount"] for t in get(poll["prev_cursor"])["items"]] == [8]
    # since (inclusive) and until (exclusive) bound the trade time.
    times = {t["amount"]: t["ts_ns"] for t in older}
    bounded = get(since=times[2], until=times[5], limit=10)
    assert [t["amount"] for t in bounded["items"]] == [4, 3, 2] and bounded["next_cursor"] is None


def test_fills_are_newest_first_across_series_with_cursors_both_ways(api: Api) -> None:
    for n in range(1, 6):
        _trade(api, n, SYMBOL if n % 2 else OTHER_SYMBOL)

    def get(cursor: str | None = None, **query: Any) -> dict[str, Any]:
        path = "/v1/fills?" + "&".join(f"{k}={v}" for k, v in {"limit": 2, **query}.items())
        response = api.call("bob", "GET", path + (f"&cursor={cursor}" if cursor else ""))
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        return page

    first = get()
    fills = _walk(get, first, "next_cursor")
    assert [(f["amount"], f["symbol"]) for f in fills] == [
        (5, SYMBOL), (4, OTHER_SYMBOL), (3, SYMBOL), (2, OTHER_SYMBOL), (1, SYMBOL)]
    oldest = get(get(first["next_cursor"])["next_cursor"])
    back = _walk(get, oldest, "prev_cursor")
    assert [f["amount"] for f in back] == [1, 3, 2, 5, 4]   # pages newer and newer, each newest first
    assert [f["amount"] for f in get(symbol=OTHER_SYMBOL)["items"]] == [4, 2]


def test_a_cursor_that_is_not_one_is_a_validation_error(api: Api) -> None:
    for cursor in ("abc", "o12.H100", "x1", "o" + "9" * 19):
        response = api.client.get(f"/v1/series/{SYMBOL}/trades", params={"cursor": cursor})
        assert (response.status_code, response.json()["code"]) == (422, "validation_error")
        assert response.json()["message"].startswith("cursor must be an opaque cursor")


def _quota(response: httpx.Response) -> tuple[int, int, int]:
    headers = response.headers
    return (int(headers["X-RateLimit-Limit"]), int(headers["X-RateLimit-Remaining"]),
            int(headers["X-RateLimit-Reset"]))


def test_rate_limit_headers_on_every_response_errors_included(tmp_path: Path) -> None:
    clock = Clock(T0_NS)
    settings = make_settings(tmp_path / "data", rate_per_ip_per_s=1, burst_per_ip=5,
                             rate_per_key_per_s=1, burst_per_key=3)
    (alice,) = bootstrap(settings, clock, series=[make_spec(SYMBOL)], deposits_micros={1: 10**12},
                         keys=[(1, ["read", "trade"])])
    with TestClient(create_app(settings, clock_ns=clock, list_calendar=False)) as client:
        assert _quota(client.get(f"/v1/series/{SYMBOL}")) == (5, 4, 1)           # public: the IP's bucket
        assert _quota(client.get("/v1/nowhere")) == (5, 4, 1)                    # 404: charged nothing
        assert _quota(client.get("/v1/balances")) == (5, 4, 1)                   # 401: nothing either

        def signed(path: str) -> httpx.Response:
            headers = signed_headers(alice, "GET", path, b"", clock.now_ns // 10**9)
            response: httpx.Response = client.get(path, headers=headers)
            return response

        assert _quota(signed("/v1/balances")) == (3, 2, 1)                      # the key's bucket is tighter
        assert _quota(signed("/v1/orders?limit=0")) == (3, 1, 2)                # 422 after the rate check
        clock.advance_s(2)
        assert _quota(signed("/v1/balances")) == (3, 2, 1)
        big = client.post("/v1/orders", content=b"x" * 20_000, headers={"content-type": "application/json"})
        assert big.status_code == 413 and _quota(big)[0] == 5
        assert signed("/v1/balances").status_code == 200
        assert signed("/v1/balances").status_code == 200
        refused = signed("/v1/balances")
        assert refused.status_code == 429 and _quota(refused) == (3, 0, 3) and refused.headers["Retry-After"] == "1"
