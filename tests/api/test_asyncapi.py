"""The AsyncAPI document: served at /asyncapi.json, well formed, and every message a real order-entry
socket sends matches its schema (the market-data socket: tests/feeds/test_asyncapi.py)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs

from exchange.api.asyncapi import document
from exchange.signing import sign
from tests.api.conftest import SYMBOL, Api
from tests.asyncapi_check import check

PATH = "/v1/ws/orders"


def test_the_document_is_served_and_every_payload_is_a_json_schema(api: Api) -> None:
    served = api.client.get("/asyncapi.json")
    assert served.status_code == 200 and served.json() == document()
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    assert {c["address"] for c in doc["channels"].values()} == {"/v1/ws/orders", "/v1/ws/market"}
    for channel in doc["channels"].values():
        for name, message in channel["messages"].items():
            assert message["summary"] and message["payload"].get("description"), name
            jsonschema_rs.validator_for({**message["payload"], "components": doc["components"]})
    for operation in doc["operations"].values():   # every operation names messages of its own channel
        channel = operation["channel"]["$ref"].rsplit("/", 1)[-1]
        assert all(m["$ref"].startswith(f"#/channels/{channel}/messages/") for m in operation["messages"])
    assert "/asyncapi.json" not in api.client.get("/openapi.json").json()["paths"]


def test_every_order_entry_message_matches_the_document(api: Api) -> None:
    doc = document()
    requests = doc["channels"]["orders"]["messages"]
    creds = api.keys["alice"]
    ts = api.clock.now_ns // 10**9
    seen: set[str] = set()
    with api.client.websocket_connect(PATH) as ws:
        auth = {"op": "auth", "key": creds.key_id, "timestamp": ts,
                "signature": sign(creds.secret, ts, "GET", PATH, b""), "cancel_on_disconnect": False}
        assert jsonschema_rs.validator_for(requests["order_auth"]["payload"]).is_valid(auth)
        ws.send_text(json.dumps(auth))
        seen.add(check("orders", ws.receive_json()))
        calls: list[tuple[str, dict[str, Any]]] = [
            ("place", {"symbol": SYMBOL, "side": "buy", "amount": 2, "price": "2.300", "client_order_id": "a-1"}),
            ("amend", {"client_order_id": "a-1", "price": "2.305"}),
            ("get", {"client_order_id": "a-1"}),
            ("cancel", {"client_order_id": "a-1"}),
            ("cancel_all", {"symbol": SYMBOL}),
            ("cancel_all_after", {"timeout_seconds": 30}),
            ("place", {"symbol": SYMBOL, "side": "buy", "amount": 1, "price": "9.000"}),     # outside the band
            ("place", {"symbol": SYMBOL, "side": "buy", "amount": 1, "price": 2.3}),         # a JSON number
            ("get", {"order_id": 1, "client_order_id": "x"}),                                # both ids
        ]
        for n, (op, args) in enumerate(calls):
            request = {"op": op, "id": n, "args": args}
            schema = {**requests[f"{op}_request"]["payload"], "components": doc["components"]}
            assert jsonschema_rs.validator_for(schema).is_valid(request) == (n < 7), request
            ws.send_text(json.dumps(request))
            reply = ws.receive_json()
            assert reply["id"] == n
            seen.add(check("orders", reply))
        ws.send_text("{not json")
        seen.add(check("orders", ws.receive_json()))
    assert seen == {"order_auth_ok", "place_result", "amend_result", "get_result", "cancel_result",
                    "cancel_all_result", "cancel_all_after_result", "order_error"}


def test_a_refused_auth_matches_the_document(api: Api) -> None:
    with api.client.websocket_connect(PATH) as ws:
        ws.send_text(json.dumps({"op": "place", "id": 1, "args": {}}))
        assert check("orders", ws.receive_json()) == "order_error"
