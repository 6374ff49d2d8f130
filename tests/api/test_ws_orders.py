"""Order entry over the WebSocket: the same answers as REST, bad messages get specific errors."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from starlette.testclient import WebSocketTestSession

from exchange.signing import sign
from tests.api.conftest import SYMBOL, Api

PATH = "/v1/ws/orders"


_unique = itertools.count(1)


def _auth_message(api: Api, who: str = "alice", **more: Any) -> str:
    creds = api.keys[who]
    ts = f"{api.clock.now_ns // 10**9}.{next(_unique):06d}"  # each session's auth is signed afresh
    return json.dumps({"op": "auth", "key": creds.key_id, "timestamp": ts,
                       "signature": sign(creds.secret, ts, "GET", PATH, b""), **more})


def _auth(api: Api, ws: WebSocketTestSession, who: str = "alice", **more: Any) -> dict[str, Any]:
    ws.send_text(_auth_message(api, who, **more))
    reply: dict[str, Any] = ws.receive_json()
    return reply


def test_a_captured_auth_message_cannot_open_a_second_session(api: Api) -> None:
    message = _auth_message(api)
    with api.client.websocket_connect(PATH) as ws:
        ws.send_text(message)
        assert ws.receive_json()["ok"] is True
    with api.client.websocket_connect(PATH) as ws:
        ws.send_text(message)
        assert ws.receive_json()["error"]["code"] == "auth_replayed"


def _request(ws: WebSocketTestSession, op: str, request_id: object, args: dict[str, Any]) -> dict[str, Any]:
    ws.send_text(json.dumps({"op": op, "id": request_id, "args": args}))
    reply: dict[str, Any] = ws.receive_json()
    return reply


def test_place_amend_get_cancel_like_rest(api: Api) -> None:
    with api.client.websocket_connect(PATH) as ws:
        assert _auth(api, ws) == {"op": "auth", "ok": True, "account_id": 1}
        placed = _request(ws, "place", 1, {"symbol": SYMBOL, "side": "buy", "amount": 5, "price": "2.300",
                                           "client_order_id": "ws-1"})
        assert (placed["id"], placed["status"], placed["result"]["status"]) == (1, 201, "open")
        again = _request(ws, "place", 2, {"symbol": SYMBOL, "side": "buy", "amount": 5, "price": "2.300",
                                          "client_order_id": "ws-1"})
        assert (again["status"], again["result"]["id"]) == (200, placed["result"]["id"])
        amended = _request(ws, "amend", "a", {"client_order_id": "ws-1", "price": "2.310"})
        assert amended["result"]["price"] == "2.310"
        got = _request(ws, "get", 3, {"order_id": placed["result"]["id"]})
        assert got["result"]["price"] == "2.310"
        cancelled = _request(ws, "cancel", 4, {"order_id": int(placed["result"]["id"])})
        assert cancelled["result"]["status"] == "canceled"
        missing = _request(ws, "cancel", 5, {"order_id": placed["result"]["id"]})
        assert (missing["status"], missing["error"]["code"]) == (404, "order_not_open")
    rest = api.call("alice", "GET", "/v1/orders/client/ws-1").json()
    assert rest["status"] == "canceled"


def test_bad_messages_get_specific_errors_and_the_connection_stays(api: Api) -> None:
    with api.client.websocket_connect(PATH) as ws:
        _auth(api, ws)
        ws.send_text("{not json")
        assert ws.receive_json()["error"]["code"] == "malformed_json"
        ws.send_text("[1, 2]")
        assert ws.receive_json()["error"]["code"] == "malformed_json"
        reply = _request(ws, "teleport", 1, {})
        assert (reply["status"], reply["error"]["code"]) == (422, "validation_error")
        reply = _request(ws, "place", 2, {"symbol": SYMBOL, "side": "buy", "amount": 1, "price": 2.3})
        assert (reply["id"], reply["error"]["code"]) == (2, "validation_error")
        reply = _request(ws, "cancel", 3, {"order_id": 1, "client_order_id": "x"})
        assert reply["error"]["code"] == "invalid_order_reference"
        ws.send_text(json.dumps({"op": "get", "id": 4, "args": {"order_id": 1}, "pad": "x" * 20_000}))
        assert ws.receive_json()["error"]["code"] == "body_too_large"
        reply = _request(ws, "place", 5, {"symbol": SYMBOL, "side": "buy", "amount": 1, "price": "2.300"})
        assert reply["status"] == 201


def test_unauthenticated_or_badly_signed_connections_are_closed_with_a_reason(api: Api) -> None:
    with api.client.websocket_connect(PATH) as ws:
        ws.send_text(json.dumps({"op": "place", "id": 1, "args": {}}))
        assert ws.receive_json()["error"]["code"] == "auth_missing"
    with api.client.websocket_connect(PATH) as ws:
        creds = api.keys["alice"]
        ts = api.clock.now_ns // 10**9
        ws.send_text(json.dumps({"op": "auth", "key": creds.key_id, "timestamp": ts,
                                 "signature": sign(creds.secret, ts, "GET", "/v1/orders", b"")}))
        assert ws.receive_json()["error"]["code"] == "auth_bad_signature"


def test_read_only_key_cannot_trade_over_websocket(api: Api) -> None:
    with api.client.websocket_connect(PATH) as ws:
        _auth(api, ws, "alice_readonly")
        reply = _request(ws, "place", 1, {"symbol": SYMBOL, "side": "buy", "amount": 1, "price": "2.300"})
        assert (reply["status"], reply["error"]["code"]) == (403, "forbidden_scope")


def test_cancel_on_disconnect(api: Api) -> None:
    with api.client.websocket_connect(PATH) as ws:
        _auth(api, ws, cancel_on_disconnect=True)
        reply = _request(ws, "place", 1, {"symbol": SYMBOL, "side": "buy", "amount": 1, "price": "2.300"})
        assert reply["status"] == 201
    api.place("alice", "buy", 1, "2.300")   # also a REST order: disconnect cancels all the account's orders
    with api.client.websocket_connect(PATH) as ws:
        _auth(api, ws, cancel_on_disconnect=True)
    # The server cancels after it notices the close: poll for it (bounded).
    deadline = time.monotonic() + 5
    while api.call("alice", "GET", "/v1/orders").json()["items"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert api.call("alice", "GET", "/v1/orders").json()["items"] == []
    reasons = [o["cancel_reason"] for o in api.call("alice", "GET", "/v1/orders?status=closed").json()["items"]]
    assert reasons == ["requested", "requested"]
