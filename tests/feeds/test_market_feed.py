"""The market-data WebSocket (/v1/ws/market) of an in-process feed gateway following the in-process
API's journal: books, trades, errors, the private channel, slow consumers and the index history."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from exchange.signing import sign
from tests.api.conftest import SYMBOL
from tests.feeds.conftest import Feeds

PATH = "/v1/ws/market"
Book = dict[str, dict[Decimal, int]]


class LocalBook:
    def __init__(self) -> None:
        self.seq: int | None = None
        self.sides: Book = {"bids": {}, "asks": {}}

    def apply(self, message: dict[str, Any]) -> None:
        if message["type"] == "book_snapshot":
            self.seq = message["seq"]
            self.sides = {side: {Decimal(p): lots for p, lots, _ in message[side]} for side in ("bids", "asks")}
        elif message["type"] == "book_update":
            assert message["prev_seq"] == self.seq, "a gap in the book sequence"
            self.seq = message["seq"]
            for side in ("bids", "asks"):
                for p, lots, _ in message[side]:
                    if lots:
                        self.sides[side][Decimal(p)] = lots
                    else:
                        self.sides[side].pop(Decimal(p))

    def as_rest(self) -> Book:
        return self.sides


def rest_book(feeds: Feeds, depth: int = 500) -> tuple[int, Book]:
    """The gateway's REST book, with the book seq of its feed."""
    feeds.catch_up()
    body = feeds.client.get(f"/v1/series/{SYMBOL}/book", params={"depth": depth}).json()
    return body["book_seq"], {side: {Decimal(p): lots for p, lots, _ in body[side]} for side in ("bids", "asks")}


def test_book_and_trades_stream_to_the_rest_book(feeds: Feeds) -> None:
    api = feeds.api
    api.place("alice", "sell", 3, "2.500")
    with feeds.client.websocket_connect(PATH) as ws, feeds.client.websocket_connect(PATH) as top:
        ws.send_json({"op": "subscribe", "id": 1, "channels": [{"channel": "book", "symbol": SYMBOL},
                                                               {"channel": "trades", "symbol": SYMBOL}]})
        top.send_json({"op": "subscribe", "id": 2, "channels": [{"channel": "book", "symbol": SYMBOL, "depth": 1}]})
        book, top_book = LocalBook(), LocalBook()
        first = feeds.until_pong(ws)
        assert first[0] == {"type": "subscribed", "id": 1, "channels": [{"channel": "book", "symbol": SYMBOL},
                                                                        {"channel": "trades", "symbol": SYMBOL}]}
        assert first[1]["type"] == "book_snapshot" and first[1]["asks"] == [["2.500", 3, 1]]
        for message in first[1:]:
            book.apply(message)
        for message in feeds.until_pong(top)[1:]:
            top_book.apply(message)
        assert book.sides["asks"] == {Decimal("2.5"): 3}

        for who, side, amount, price in [("alice", "sell", 4, "2.450"), ("alice", "buy", 5, "2.300"),
                                         ("bob", "buy", 2, "2.350"), ("bob", "buy", 6, "2.500"),
                                         ("alice", "sell", 1, "2.300"), ("alice", "buy", 2, "2.200")]:
            assert api.place(who, side, amount, price).status_code == 201
        messages = feeds.until_pong(ws)
        trades = [m for m in messages if m["type"] == "trade"]
        assert [(t["price"], t["amount"], t["side"]) for t in trades] == [
            ("2.450", 4, "buy"), ("2.500", 2, "buy"), ("2.350", 1, "sell")]
        assert [t["seq"] for t in trades] == [1, 2, 3] == [t["trade_id"] for t in trades]
        for message in messages:
            book.apply(message)
        for message in feeds.until_pong(top):
            top_book.apply(message)

        book_seq, rest = rest_book(feeds)
        assert book.sides == rest and book.seq == book_seq
        _, best = rest_book(feeds, depth=1)
        assert top_book.sides == best
        # A heartbeat (and the REST book) tell a late joiner where the series' book stands.
        hub = feeds.context.hub
        assert hub.heartbeat(hub.subs[("book", SYMBOL)].copy().pop()).count(f'"book:{SYMBOL}"') == 1


def test_bad_messages_get_specific_errors_and_the_connection_stays_open(feeds: Feeds) -> None:
    with feeds.client.websocket_connect(PATH) as ws:
        def error_of(text: str) -> str:
            ws.send_text(text)
            message = ws.receive_json()
            assert message["type"] == "error", message
            code: str = message["code"]
            return code

        assert error_of("{not json") == "malformed_json"
        assert error_of("[1, 2]") == "malformed_json"
        assert error_of('{"op": "subscribe", "channels": [{"channel": "trades", "symbol": "' + "A" * 20_000 + '"}]}') \
            == "message_too_large"
        assert error_of('{"op": "dance", "id": 3}') == "unknown_op"
        assert error_of('{"op": "subscribe", "id": 4, "channels": [{"channel": "gossip"}]}') == "unknown_channel"
        assert error_of('{"op": "subscribe", "id": 5, "channels": [{"channel": "book", "symbol": "NOPE-1"}]}') \
            == "unknown_series"
        assert error_of('{"op": "subscribe", "id": 6, "channels": [{"channel": "book", "symbol": "'
                        + SYMBOL + '", "depth": 0}]}') == "invalid_subscription"
        assert error_of('{"op": "subscribe", "id": 7, "channels": [{"channel": "candles", "symbol": "'
                        + SYMBOL + '", "interval": "2m"}]}') == "invalid_subscription"
        assert error_of('{"op": "subscribe", "id": 8, "channels": []}') == "invalid_subscription"
        assert error_of('{"op": "subscribe", "id": 9, "channels": [{"channel": "private"}]}') == "auth_required"
        assert error_of('{"op": "auth", "key": "ak_nope", "timestamp": 1, "signature": "x"}').startswith("auth_")
        many = [{"channel": "candles", "symbol": SYMBOL, "interval": i} for i in ("1m", "5m", "1h")] * 20
        assert error_of('{"op": "subscribe", "id": 10, "channels": ' + str(many).replace("'", '"') + "}") \
            == "too_many_subscriptions"
        assert feeds.until_pong(ws) == []


def test_the_private_channel_needs_auth_and_streams_orders_fills_and_balances(feeds: Feeds) -> None:
    api = feeds.api
    alice = api.keys["alice"]
    with feeds.client.websocket_connect(PATH) as ws:
        ts = api.clock.now_ns // 1_000_000_000
        ws.send_json({"op": "auth", "id": "a", "key": alice.key_id, "timestamp": ts,
                      "signature": sign(alice.secret, ts, "GET", PATH, b"")})
        ws.send_json({"op": "subscribe", "id": "p", "channels": [{"channel": "private"}]})
        assert feeds.until_pong(ws) == [{"type": "authenticated", "id": "a", "account_id": alice.account_id},
                                  {"type": "subscribed", "id": "p", "channels": [{"channel": "private"}]}]
        placed = api.place("alice", "sell", 3, "2.400").json()
        api.place("bob", "buy", 2, "2.400")
        messages = feeds.until_pong(ws)
        kinds = [(m["type"], m.get("event")) for m in messages]
        assert ("order", "accepted") in kinds and ("fill", None) in kinds and ("balance", None) in kinds
        accepted = next(m for m in messages if m.get("event") == "accepted")["order"]
        assert accepted["id"] == placed["id"] and accepted["status"] == "open"
        fill = next(m for m in messages if m["type"] == "fill")
        assert (fill["order_id"], fill["side"], fill["amount"], fill["liquidity"]) == (placed["id"], "sell", 2, "maker")
        balance = [m for m in messages if m["type"] == "balance"][-1]
        rest = api.call("alice", "GET", "/v1/balances").json()
        assert (balance["cash"], balance["margin"], balance["available"]) == (rest["cash"], rest["margin"],
                                                                             rest["available"])
        position = [m for m in messages if m["type"] == "position"][-1]
        assert position["size"] == -2
        # Nothing of bob's reaches alice.
        assert all(m.get("order", {}).get("id") != placed["id"] or m["type"] == "order" for m in messages)


def test_a_slow_consumer_is_closed_and_the_others_keep_receiving(feeds: Feeds) -> None:
    api = feeds.api
    feeds.context.hub.queue_max = 4   # new connections get a 4-message queue
    with feeds.client.websocket_connect(PATH) as slow, feeds.client.websocket_connect(PATH) as fine:
        slow.send_json({"op": "subscribe", "id": 1, "channels": [{"channel": "trades", "symbol": SYMBOL}]})
        fine.send_json({"op": "subscribe", "id": 2, "channels": [{"channel": "book", "symbol": SYMBOL}]})
        book = LocalBook()
        for message in feeds.until_pong(fine):
            book.apply(message)
        for price in ("2.400", "2.410", "2.420", "2.430", "2.440", "2.450"):
            api.place("alice", "sell", 1, price)
        api.place("bob", "buy", 6, "2.450")     # six trades in one batch: more than the slow queue holds
        received: list[dict[str, Any]] = []
        with pytest.raises(WebSocketDisconnect) as closed:
            for _ in range(100):
                received.append(slow.receive_json())
        assert closed.value.code == 1013
        assert received[-1]["code"] == "slow_consumer"
        for message in feeds.until_pong(fine):
            book.apply(message)
        book_seq, rest = rest_book(feeds)
        assert book.sides == rest == {"bids": {}, "asks": {}} and book.seq == book_seq
        assert api.client.app.state.runtime.service.sequencer.on_events_errors == 0  # type: ignore[attr-defined]


def test_the_index_is_published_every_minute_with_its_history(feeds: Feeds) -> None:
    api = feeds.api
    product = SYMBOL.rsplit("-", 1)[0]
    with feeds.client.websocket_connect(PATH) as ws:
        ws.send_json({"op": "subscribe", "id": 1, "channels": [{"channel": "index", "product": product}]})
        assert feeds.until_pong(ws)[0]["type"] == "subscribed"
        api.place("alice", "sell", 3, "2.400")
        api.place("bob", "buy", 3, "2.400")
        api.clock.advance_s(61)
        deadline = time.monotonic() + 5
        items: list[dict[str, Any]] = []
        while not items and time.monotonic() < deadline:
            time.sleep(0.05)
            items = feeds.client.get(f"/v1/index/{product}").json()["items"]
        assert items and items[-1]["value"] == "2.400" and items[-1]["trades"] == 1
        message = next(m for m in feeds.until_pong(ws) if m["type"] == "index")
        assert message["product"] == product and message["value"] == "2.400"
    assert feeds.client.get("/v1/index/NOPE-M1").status_code == 404


def test_batched_frames_carry_the_same_messages_in_order(feeds: Feeds) -> None:
    api = feeds.api
    """With ?batch=1 a frame may hold several messages (a JSON array): the same stream, fewer sends."""
    with feeds.client.websocket_connect(PATH + "?batch=1") as ws:
        ws.send_json({"op": "subscribe", "id": 1, "channels": [{"channel": "book", "symbol": SYMBOL},
                                                              {"channel": "trades", "symbol": SYMBOL}]})
        for i in range(20):
            api.place("alice", "sell", 1, f"2.{400 + 5 * (i % 4)}")
        api.place("bob", "buy", 10, "2.420")
        ws.send_json({"op": "ping", "id": "end"})
        book, trades, arrays = LocalBook(), 0, 0
        for _ in range(10_000):
            frame = ws.receive_json()
            messages = frame if isinstance(frame, list) else [frame]
            arrays += isinstance(frame, list)
            for message in messages:
                book.apply(message)
                trades += message.get("type") == "trade"
            if any(m.get("type") == "pong" for m in messages):
                break
        seq, rest = rest_book(feeds)
        assert (book.seq, book.as_rest(), trades) == (seq, rest, 10)


def test_the_gateway_rest_refuses_bad_input_with_codes_and_reports_a_failed_follower(feeds: Feeds) -> None:
    client = feeds.client
    missing = client.get("/v1/series/NOPE-M1-261203/book")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    for bad in ({"depth": 0}, {"depth": 501}, {"depth": "x"}):
        response = client.get(f"/v1/series/{SYMBOL}/book", params=bad)
        assert response.status_code == 422, (bad, response.text)
        assert set(response.json()) == {"code", "message", "details"}
    assert client.get("/v1/series/bad%20symbol/book").status_code == 422
    assert client.get("/v1/index/H100-M40", params={"start_ns": -1}).status_code == 422
    ready = client.get("/ready").json()
    assert ready["status"] == "ready" and ready["lag"] == 0
    # A follower that failed (a damaged journal, say) stops the gateway from serving anything stale.
    feeds.context.failure = RuntimeError("damaged journal")
    assert client.get("/ready").status_code == 503
    with client.websocket_connect(PATH) as ws:
        assert ws.receive_json()["code"] == "service_unavailable"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1013


def test_the_gateway_answers_carry_the_rate_limit_headers(feeds: Feeds) -> None:
    for path, status in ((f"/v1/series/{SYMBOL}/book", 200), ("/v1/index/NOPE-M1", 404), ("/v1/nowhere", 404)):
        response = feeds.client.get(path)
        assert response.status_code == status, path
        assert int(response.headers["X-RateLimit-Limit"]) == feeds.api.settings.burst_per_ip
        assert 0 <= int(response.headers["X-RateLimit-Remaining"]) < feeds.api.settings.burst_per_ip
        assert int(response.headers["X-RateLimit-Reset"]) >= 0
