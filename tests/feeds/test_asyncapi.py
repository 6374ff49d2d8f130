"""Every message a real market-data socket of the feed gateway sends matches the AsyncAPI document
(served by the gateway too), and so does every request the tests send it."""

from __future__ import annotations

import time
from typing import Any

import jsonschema_rs
import pytest

from exchange.api.asyncapi import document
from exchange.feeds import session
from exchange.signing import sign
from tests.api.conftest import SYMBOL
from tests.asyncapi_check import check
from tests.feeds.conftest import Feeds

PATH = "/v1/ws/market"


def test_every_market_data_message_matches_the_document(feeds: Feeds, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session, "HEARTBEAT_S", 0.2)
    doc = document()
    assert feeds.client.get("/asyncapi.json").json() == doc
    requests = doc["channels"]["market"]["messages"]
    api = feeds.api
    alice = api.keys["alice"]
    product = SYMBOL.rsplit("-", 1)[0]
    seen: set[str] = set()
    sent: list[dict[str, Any]] = []

    def send(ws: Any, message: dict[str, Any], valid: bool = True) -> None:
        schema = {**requests[message["op"]]["payload"], "components": doc["components"]}
        assert jsonschema_rs.validator_for(schema).is_valid(message) == valid, message
        sent.append(message)
        ws.send_json(message)

    def drain(ws: Any) -> None:
        for message in feeds.until_pong(ws):
            seen.add(check("market", message))

    with feeds.client.websocket_connect(PATH) as ws:
        ts = api.clock.now_ns // 1_000_000_000
        send(ws, {"op": "auth", "id": "a", "key": alice.key_id, "timestamp": ts,
                  "signature": sign(alice.secret, ts, "GET", PATH, b"")})
        send(ws, {"op": "subscribe", "id": 1, "channels": [
            {"channel": "book", "symbol": SYMBOL}, {"channel": "book", "symbol": SYMBOL.replace("H100", "B200")
                                                    .replace("M40", "M35"), "depth": 5},
            {"channel": "trades", "symbol": SYMBOL}, {"channel": "ticker", "symbol": SYMBOL},
            {"channel": "candles", "symbol": SYMBOL, "interval": "1m"}, {"channel": "settlement"},
            {"channel": "index", "product": product}, {"channel": "private"}]})
        drain(ws)
        api.place("alice", "sell", 3, "2.400")
        api.place("bob", "buy", 2, "2.400")
        order = api.place("alice", "buy", 1, "2.300").json()
        api.call("alice", "PATCH", f"/v1/orders/{order['id']}", {"price": "2.305"})
        api.call("alice", "DELETE", f"/v1/orders/{order['id']}")
        time.sleep(0.3)   # the ticker is coalesced (at most every 100 ms)
        drain(ws)
        api.clock.advance_s(61)   # the index is published for each whole minute; the 1m candle closes
        deadline = time.monotonic() + 5
        while "index" not in seen and time.monotonic() < deadline:
            time.sleep(0.1)
            drain(ws)
        send(ws, {"op": "subscribe", "id": 2, "channels": [{"channel": "nonsense"}]}, valid=False)
        send(ws, {"op": "unsubscribe", "id": 3, "channels": [{"channel": "ticker", "symbol": SYMBOL}]})
        drain(ws)
        send(ws, {"op": "ping", "id": "last"})
        deadline = time.monotonic() + 5
        while not {"heartbeat", "pong"} <= seen and time.monotonic() < deadline:
            seen.add(check("market", ws.receive_json()))
    assert seen >= {"authenticated", "subscribed", "unsubscribed", "pong", "error", "book_snapshot", "book_update",
                    "trade", "ticker", "candle", "index", "fill", "order", "balance", "position", "heartbeat"}, seen
    # Only the settlement message is not produced here (it needs a settlement job): its schema is still checked
    # for being a schema in tests/api/test_asyncapi.py.
    assert {m["op"] for m in sent} == {"auth", "subscribe", "unsubscribe", "ping"}
