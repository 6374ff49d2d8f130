"""Errors in a trader's units: every refusal states its numbers as the API writes them (prices per
GPU-hour on the tick grid, USD, lots) in the message and in `details`, over REST and WebSocket."""

from __future__ import annotations

import json
from typing import Any

import httpx

from exchange.signing import sign
from tests.api.conftest import SYMBOL, Api


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    body: dict[str, Any] = response.json()
    assert "^" not in body["message"] and "micro-USD" not in body["message"], body["message"]
    return body


def test_price_outside_the_band_says_the_band_in_prices(api: Api) -> None:
    spec = api.client.get(f"/v1/series/{SYMBOL}").json()
    body = _error(api.place("alice", "buy", 1, "3.000"), 422, "price_outside_band")
    assert body["message"] == ("price 3.000 USD per GPU-hour is outside the band 2.160..2.640 "
                               "(the reference price 2.400 ± the band)")
    assert body["details"] == {"price": "3.000", "band_low": spec["price_band_low"],
                               "band_high": spec["price_band_high"], "reference_price": spec["reference_price"],
                               "tick": "0.005", "nearest_valid": ["2.640"]}
    assert (spec["price_band_low"], spec["price_band_high"]) == ("2.160", "2.640")
    order = api.place("alice", "buy", 1, "2.300").json()
    body = _error(api.call("alice", "PATCH", f"/v1/orders/{order['id']}", {"price": "1.000"}), 422,
                  "price_outside_band")
    assert body["details"]["nearest_valid"] == ["2.160"] and body["details"]["order_id"] == order["id"]


def test_off_tick_price_names_the_tick_and_the_nearest_valid_prices(api: Api) -> None:
    body = _error(api.place("alice", "buy", 1, "2.3012"), 422, "invalid_price")
    assert body["message"] == ("price 2.3012 is not a multiple of the tick 0.005 USD per GPU-hour: the nearest "
                               "valid prices are 2.300 and 2.305")
    assert body["details"] == {"price": "2.3012", "tick": "0.005", "nearest_valid": ["2.300", "2.305"]}
    # Finer than a micro-dollar is the same mistake, said the same way.
    assert _error(api.place("alice", "buy", 1, "2.30000001"), 422, "invalid_price")["details"]["nearest_valid"] == [
        "2.300", "2.305"]


def test_insufficient_margin_is_in_usd_with_the_numbers_in_details(api: Api) -> None:
    body = _error(api.place("carol_broke", "buy", 2, "2.300"), 409, "insufficient_margin")
    # 12% of 2 lots × 192 GPU-hours × $2.40 (the reference price) = $110.592
    assert body["message"] == ("this order needs $110.592 of initial margin but $0.00 is available "
                               "(cash $0.00 less $0.00 already held; total required $110.592)")
    assert body["details"] == {"required": "110.592000", "order_margin": "110.592000", "margin_held": "0.000000",
                               "cash": "0.000000", "available": "0.000000"}
    balances = api.call("carol_broke", "GET", "/v1/balances").json()
    assert balances["available"] == body["details"]["available"]


def test_withdrawal_beyond_available_cash_is_in_usd(api: Api) -> None:
    api.place("alice", "buy", 10, "2.300")   # holds 10 × $55.296 of margin
    path = "/v1/admin/accounts/1/withdrawals"
    body = _error(api.call("operator", "POST", path, {"amount": "1000000.00"}), 409, "insufficient_funds")
    assert body["message"] == ("withdrawing $1,000,000.00 would leave $0.00 of cash, below the $552.96 of initial "
                               "margin held: at most $999,447.04 is available")
    assert body["details"] == {"amount": "1000000.000000", "cash": "1000000.000000", "margin_held": "552.960000",
                               "available": "999447.040000"}


def test_order_size_and_position_limits_carry_the_limit(api: Api) -> None:
    body = _error(api.place("alice", "buy", 1000, "2.300"), 422, "order_too_large")
    assert body["details"] == {"amount": 1000, "max_order_lots": 500}
    assert body["message"] == "quantity 1000 lots exceeds the maximum 500 lots"
    for _ in range(10):
        assert api.place("alice", "buy", 500, "2.300").status_code == 201
    body = _error(api.place("alice", "buy", 1, "2.300"), 409, "position_limit")
    assert body["message"] == "worst-case position 5001 lots would exceed the limit 5000 lots"
    assert body["details"] == {"worst_case_position_lots": 5001, "max_position_lots": 5000}


def test_schema_violations_are_sentences_about_the_field(api: Api) -> None:
    body = _error(api.call("alice", "POST", "/v1/orders", {"symbol": SYMBOL, "side": "buy", "amount": 1,
                                                           "price": 48.25}), 422, "validation_error")
    assert body["message"] == ('price must be a decimal string such as "48.25" (JSON numbers are refused so '
                               "prices stay exact)")
    assert body["details"]["errors"] == [{"field": "price", "loc": ["body", "price"], "msg": body["message"],
                                          "type": "string_type", "input": 48.25}]
    body = _error(api.place("alice", "hold", 0, "2.300", colour="blue"), 422, "validation_error")
    messages = [e["msg"] for e in body["details"]["errors"]]
    assert messages == ["side must be 'buy' or 'sell'",
                        "amount must be at least 1: a whole number of lots from 1 to the per-order maximum (500) as a "
                        "JSON integer, e.g. 2", "colour is not a field of this request"]
    assert body["message"] == "side must be 'buy' or 'sell' (and 2 more problems)"
    path = "/v1/admin/accounts/1/deposits"
    for amount in ("12.1234567", "0.00", 2500, "-5"):
        body = _error(api.call("operator", "POST", path, {"amount": amount}), 422, "validation_error")
        assert body["message"] == ('amount must be a positive decimal number of USD with at most 6 decimals, as a '
                                   'string, e.g. "2500.00"'), amount
    body = _error(api.call("alice", "GET", "/v1/orders?limit=100000"), 422, "validation_error")
    assert body["message"].startswith("limit must be at most 500")
    body = _error(api.call("alice", "POST", "/v1/orders", {"side": "buy", "amount": 1}), 422, "validation_error")
    assert body["message"] == "symbol is required"


def test_websocket_order_entry_gives_the_same_errors_as_rest(api: Api) -> None:
    creds = api.keys["alice"]
    ts = api.clock.now_ns // 10**9
    cases = [{"symbol": SYMBOL, "side": "buy", "amount": 1, "price": 48.25},
             {"symbol": SYMBOL, "side": "buy", "amount": 1, "price": "3.000"},
             {"symbol": SYMBOL, "side": "buy", "amount": 1, "price": "2.3012"}]
    with api.client.websocket_connect("/v1/ws/orders") as ws:
        ws.send_text(json.dumps({"op": "auth", "key": creds.key_id, "timestamp": ts,
                                 "signature": sign(creds.secret, ts, "GET", "/v1/ws/orders", b"")}))
        assert ws.receive_json()["ok"] is True
        for n, args in enumerate(cases):
            ws.send_text(json.dumps({"op": "place", "id": n, "args": args}))
            reply = ws.receive_json()
            rest = api.call("alice", "POST", "/v1/orders", args)
            assert (reply["status"], reply["error"]["code"], reply["error"]["message"]) == (
                rest.status_code, rest.json()["code"], rest.json()["message"])
            details, rest_details = reply["error"]["details"], rest.json()["details"]
            if "errors" in details:   # the location of a WebSocket argument has no "body" part
                for problem in details["errors"] + rest_details["errors"]:
                    problem.pop("loc")
            assert details == rest_details
