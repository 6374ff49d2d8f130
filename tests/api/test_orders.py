"""The trader API end to end in process: order life cycle, queries, idempotency, errors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from exchange.api.app import create_app
from exchange.testing.api_harness import bootstrap, signed_headers
from exchange.testing.specs import T0_NS, make_spec
from tests.api.conftest import SYMBOL, Api, Clock, make_settings


def test_place_partial_fill_amend_cancel(api: Api) -> None:
    r = api.place("alice", "sell", 10, "2.400", client_order_id="ask-1")
    assert r.status_code == 201, r.text
    ask = r.json()
    assert ask["status"] == "open" and ask["remaining"] == 10 and ask["price"] == "2.400"
    assert ask["client_order_id"] == "ask-1" and ask["time_in_force"] == "GTC"

    r = api.place("bob", "buy", 4, "2.450")
    assert r.status_code == 201, r.text
    bid = r.json()
    assert bid["status"] == "closed" and bid["filled"] == 4 and bid["average"] == "2.400000"

    got = api.call("alice", "GET", f"/v1/orders/{ask['id']}").json()
    assert (got["filled"], got["remaining"], got["status"], got["average"]) == (4, 6, "open", "2.400000")
    assert api.call("alice", "GET", "/v1/orders/client/ask-1").json()["id"] == ask["id"]

    r = api.call("alice", "PATCH", "/v1/orders/client/ask-1", {"amount": 3})
    assert r.status_code == 200, r.text
    # A reduction cancels lots (reason amend_reduced): filled + remaining + cancelled stays the amount.
    assert (r.json()["remaining"], r.json()["cancelled"], r.json()["amount"]) == (3, 3, 10)
    r = api.call("alice", "PATCH", f"/v1/orders/{ask['id']}", {"price": "2.500"})
    assert r.json()["price"] == "2.500"

    r = api.call("alice", "DELETE", f"/v1/orders/{ask['id']}")
    assert r.status_code == 200 and r.json()["status"] == "canceled" and r.json()["cancelled"] == 6
    r = api.call("alice", "DELETE", f"/v1/orders/{ask['id']}")
    assert r.status_code == 404 and r.json()["code"] == "order_not_open"

    fills = api.call("bob", "GET", "/v1/fills").json()["items"]
    assert [(f["side"], f["amount"], f["price"], f["liquidity"]) for f in fills] == [("buy", 4, "2.400", "taker")]
    alice_fills = api.call("alice", "GET", "/v1/fills").json()["items"]
    assert [(f["side"], f["liquidity"], f["fee"]) for f in alice_fills] == [("sell", "maker", "0.000000")]
    positions = api.call("bob", "GET", "/v1/positions").json()["items"]
    assert [(p["symbol"], p["size"], p["entry_price"]) for p in positions] == [(SYMBOL, 4, "2.400000")]
    closed = api.call("alice", "GET", "/v1/orders?status=closed").json()["items"]
    assert [o["id"] for o in closed] == [ask["id"]]
    assert api.call("alice", "GET", "/v1/orders?status=open").json()["items"] == []


def test_client_order_id_retry_returns_the_original_and_conflicts_are_409(api: Api) -> None:
    first = api.place("alice", "buy", 2, "2.300", client_order_id="c-1")
    again = api.place("alice", "buy", 2, "2.300", client_order_id="c-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    different = api.place("alice", "buy", 3, "2.300", client_order_id="c-1")
    assert different.status_code == 409 and different.json()["code"] == "client_order_id_conflict"
    assert len(api.call("alice", "GET", "/v1/orders").json()["items"]) == 1


def test_accounts_never_see_each_others_orders(api: Api) -> None:
    order = api.place("alice", "buy", 1, "2.300", client_order_id="mine").json()
    for method, path in (("GET", f"/v1/orders/{order['id']}"), ("GET", "/v1/orders/client/mine"),
                         ("DELETE", f"/v1/orders/{order['id']}"), ("PATCH", f"/v1/orders/{order['id']}")):
        r = api.call("bob", method, path, {"amount": 2} if method == "PATCH" else None)
        assert r.status_code == 404, (method, path, r.text)
    assert api.call("bob", "GET", "/v1/orders").json()["items"] == []
    assert api.call("alice", "GET", f"/v1/orders/{order['id']}").json()["status"] == "open"


def test_engine_rejections_map_to_codes_and_statuses(api: Api) -> None:
    r = api.place("carol_broke", "buy", 1, "2.300")
    assert (r.status_code, r.json()["code"]) == (409, "insufficient_margin")
    r = api.place("alice", "buy", 1, "9.000")
    assert (r.status_code, r.json()["code"]) == (422, "price_outside_band")
    r = api.place("alice", "buy", 1, "2.3001")
    assert (r.status_code, r.json()["code"]) == (422, "invalid_price")
    r = api.place("alice", "buy", 1, "2.300", symbol="H100-M40-991231")
    assert (r.status_code, r.json()["code"]) == (404, "unknown_series")
    r = api.place("alice", "buy", 1, "2.300", time_in_force="GTD")
    assert (r.status_code, r.json()["code"]) == (422, "expire_time_required")
    r = api.place("alice", "buy", 1000, "2.300")
    assert (r.status_code, r.json()["code"]) == (422, "order_too_large")
    assert set(r.json()) == {"code", "message", "details"}


def test_malformed_input_gets_specific_errors_and_reaches_nothing(api: Api) -> None:
    seq_before = api.client.get("/ready").json()["journal_seq"]
    r = api.call("alice", "POST", "/v1/orders", {"symbol": SYMBOL, "side": "buy", "amount": 1, "price": 2.3})
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")
    r = api.place("alice", "buy", 1, "2.300", colour="blue")
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")
    r = api.place("alice", "buy", 0, "2.300")
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")
    r = api.place("alice", "hold", 1, "2.300")
    assert r.status_code == 422
    raw = b'{"symbol": "H100-M40-261203", "side": "buy", '
    headers = signed_headers(api.keys["alice"], "POST", "/v1/orders", raw, api.clock.now_ns // 10**9)
    r = api.client.post("/v1/orders", content=raw, headers=headers)
    assert (r.status_code, r.json()["code"]) == (400, "malformed_json")
    big = b'{"symbol": "' + b"A" * 20_000 + b'"}'
    headers = signed_headers(api.keys["alice"], "POST", "/v1/orders", big, api.clock.now_ns // 10**9)
    r = api.client.post("/v1/orders", content=big, headers=headers)
    assert (r.status_code, r.json()["code"]) == (413, "body_too_large")
    r = api.client.get("/v1/orders/abc")
    assert r.status_code in (401, 422)
    r = api.client.get("/v1/nowhere")
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = api.call("alice", "GET", "/v1/orders?limit=100000")
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")
    assert api.client.get("/ready").json()["journal_seq"] == seq_before


def test_pagination_walks_every_order_once(api: Api) -> None:
    ids = [api.place("alice", "buy", 1, "2.300").json()["id"] for _ in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        path = "/v1/orders?status=all&limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = api.call("alice", "GET", path).json()
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids


def test_cancel_all_with_filters(api: Api) -> None:
    for price in ("2.300", "2.310"):
        api.place("alice", "buy", 1, price)
    api.place("alice", "sell", 1, "2.600")
    r = api.call("alice", "POST", "/v1/orders/cancel-all", {"side": "buy"})
    assert r.json() == {"cancelled": 2}
    open_orders = api.call("alice", "GET", "/v1/orders").json()["items"]
    assert [o["side"] for o in open_orders] == ["sell"]


def test_balances_margin_and_ledger(api: Api) -> None:
    before = api.call("alice", "GET", "/v1/balances").json()
    assert before == {"account_id": 1, "currency": "USD", "cash": "1000000.000000", "margin": "0.000000",
                      "available": "1000000.000000"}
    api.place("alice", "buy", 10, "2.300")
    after = api.call("alice", "GET", "/v1/balances").json()
    assert after["margin"] != "0.000000" and after["cash"] == before["cash"]
    ledger = api.call("alice", "GET", "/v1/ledger").json()["items"]
    assert [(p["kind"], p["amount"]) for p in ledger] == [("deposit", "1000000.000000")]


def test_market_data(api: Api) -> None:
    api.place("alice", "sell", 5, "2.400")
    api.place("alice", "sell", 2, "2.450")
    api.place("bob", "buy", 3, "2.350")
    api.place("bob", "buy", 2, "2.400")
    book = api.client.get(f"/v1/series/{SYMBOL}/book?depth=5").json()
    assert book["asks"] == [["2.400", 3, 1], ["2.450", 2, 1]] and book["bids"] == [["2.350", 3, 1]]
    trades = api.client.get(f"/v1/series/{SYMBOL}/trades").json()["items"]
    assert [(t["price"], t["amount"], t["side"]) for t in trades] == [("2.400", 2, "buy")]
    ticker = api.client.get(f"/v1/series/{SYMBOL}/ticker").json()
    assert (ticker["bid"], ticker["ask"], ticker["last"], ticker["volume_24h"]) == ("2.350", "2.400", "2.400", 2)
    candles = api.client.get(f"/v1/series/{SYMBOL}/candles?interval=1m").json()["items"]
    assert [(c["open"], c["close"], c["volume"], c["trades"]) for c in candles] == [("2.400", "2.400", 2, 1)]
    spec = api.client.get(f"/v1/series/{SYMBOL}").json()
    assert spec["lot_gpu_hours"] == 192 and spec["tick_size"] == "0.005000"
    assert api.client.get("/v1/series/NOPE-M40-261203").status_code == 404


def test_operator_endpoints_and_idempotency_keys(api: Api) -> None:
    r = api.call("operator", "POST", "/v1/admin/accounts", {})
    assert r.status_code == 201, r.text
    new_id = r.json()["account_id"]
    key = {"Idempotency-Key": "dep-1"}
    first = api.call("operator", "POST", f"/v1/admin/accounts/{new_id}/deposits", {"amount": "500.25"}, key)
    again = api.call("operator", "POST", f"/v1/admin/accounts/{new_id}/deposits", {"amount": "500.25"}, key)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() == {"account_id": new_id, "cash": "500.250000"}
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = api.call("operator", "POST", f"/v1/admin/accounts/{new_id}/deposits", {"amount": "1"}, key)
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_key_conflict")
    bad = api.call("operator", "POST", f"/v1/admin/accounts/{new_id}/deposits", {"amount": "1"},
                   {"Idempotency-Key": "no spaces allowed"})
    assert (bad.status_code, bad.json()["code"]) == (400, "idempotency_key_invalid")

    r = api.call("operator", "POST", "/v1/admin/api-keys", {"account_id": new_id, "scopes": ["read", "trade"]})
    assert r.status_code == 201
    from exchange.testing.api_harness import Credentials
    fresh = Credentials(new_id, r.json()["key_id"], r.json()["secret"], ("read", "trade"))
    assert api.call(fresh, "GET", "/v1/balances").json()["cash"] == "500.250000"
    r = api.call("operator", "DELETE", f"/v1/admin/api-keys/{fresh.key_id}")
    assert r.json() == {"key_id": fresh.key_id, "revoked": True}
    r = api.call(fresh, "GET", "/v1/balances")
    assert (r.status_code, r.json()["code"]) == (401, "auth_key_revoked")
    assert api.call("operator", "DELETE", "/v1/admin/api-keys/ak_0000000000000000").status_code == 404

    r = api.call("operator", "PUT", f"/v1/admin/series/{SYMBOL}/halt", {"halted": True})
    assert r.json()["halted"] is True
    r = api.place("alice", "buy", 1, "2.300")
    assert (r.status_code, r.json()["code"]) == (409, "series_halted")
    api.call("operator", "PUT", f"/v1/admin/series/{SYMBOL}/halt", {"halted": False})

    api.place("alice", "buy", 1, "2.300")
    r = api.call("operator", "PUT", "/v1/admin/accounts/1/enabled", {"enabled": False})
    assert r.json() == {"account_id": 1, "enabled": False}
    assert api.call("alice", "GET", "/v1/orders").json()["items"] == []
    r = api.place("alice", "buy", 1, "2.300")
    assert (r.status_code, r.json()["code"]) == (409, "account_disabled")

    r = api.call("operator", "POST", "/v1/admin/accounts/1/withdrawals", {"amount": "10"})
    assert r.json()["cash"] == "999990.000000"
    r = api.call("operator", "POST", "/v1/admin/accounts/999/deposits", {"amount": "10"})
    assert (r.status_code, r.json()["code"]) == (404, "unknown_account")


def test_dead_mans_switch_fires_without_traffic(api: Api) -> None:
    api.place("alice", "buy", 1, "2.300")
    r = api.call("alice", "POST", "/v1/cancel-all-after", {"timeout_seconds": 5})
    assert r.json()["deadline_ns"] == api.clock.now_ns + 5 * 10**9
    api.clock.advance_s(4)
    r = api.call("alice", "POST", "/v1/cancel-all-after", {"timeout_seconds": 5})   # re-armed
    api.clock.advance_s(4)
    time.sleep(0.3)
    assert len(api.call("alice", "GET", "/v1/orders").json()["items"]) == 1
    api.clock.advance_s(2)
    deadline = time.monotonic() + 3
    while api.call("alice", "GET", "/v1/orders").json()["items"] and time.monotonic() < deadline:
        time.sleep(0.05)
    closed = api.call("alice", "GET", "/v1/orders?status=closed").json()["items"]
    assert [o["cancel_reason"] for o in closed] == ["dead_mans_switch"]


def test_dead_mans_switch_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock(T0_NS)
    settings = make_settings(tmp_path / "data")
    (alice,) = bootstrap(settings, clock, series=[make_spec(SYMBOL)], deposits_micros={1: 10**12},
                         keys=[(1, ["read", "trade"])])

    def call(client: TestClient, method: str, path: str, body: bytes = b"") -> dict[str, object]:
        headers = signed_headers(alice, method, path, body, clock.now_ns // 10**9)
        response = client.request(method, path, content=body, headers=headers)
        assert response.status_code < 300, response.text
        result: dict[str, object] = response.json()
        return result

    with TestClient(create_app(settings, clock_ns=clock, list_calendar=False)) as client:
        call(client, "POST", "/v1/orders", b'{"symbol":"%s","side":"buy","amount":1,"price":"2.300"}' % SYMBOL.encode())
        call(client, "POST", "/v1/cancel-all-after", b'{"timeout_seconds":10}')
    clock.advance_s(60)   # down for a minute: the deadline passed while nothing ran
    with TestClient(create_app(settings, clock_ns=clock, list_calendar=False)) as client:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            items = call(client, "GET", "/v1/orders")["items"]
            if not items:
                break
            time.sleep(0.05)
        closed = call(client, "GET", "/v1/orders?status=closed")["items"]
        assert isinstance(closed, list) and [o["cancel_reason"] for o in closed] == ["dead_mans_switch"]


def test_the_answer_to_a_new_order_equals_the_stores_view_of_it(api: Api) -> None:
    """Order entry answers from the command's events; GET answers from the store: always the same."""
    api.place("bob", "sell", 3, "2.400")
    api.place("bob", "sell", 2, "2.410")
    orders: list[tuple[str, str, int, str | None, dict[str, Any]]] = [
        ("alice", "buy", 4, "2.405", {"time_in_force": "IOC"}),     # partial fill, remainder cancelled
        ("alice", "buy", 1, "2.410", {}),                           # full fill
        ("alice", "buy", 2, "2.300", {"post_only": True}),          # rests
        ("alice", "buy", 5, "2.500", {"time_in_force": "FOK"}),     # cannot fill in full: cancelled
        ("alice", "buy", 2, None, {"type": "market"}),              # market IOC: nothing left to take
        ("bob", "sell", 1, "2.300", {}),                            # takes alice's resting bid, in part
    ]
    for who, side, amount, price, more in orders:
        answer = api.place(who, side, amount, price, **more)
        assert answer.status_code == 201, answer.text
        order = answer.json()
        assert api.call(who, "GET", f"/v1/orders/{order['id']}").json() == order
