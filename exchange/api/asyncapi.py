"""The AsyncAPI 3.0 document of the two WebSocket APIs: order entry (`/v1/ws/orders`, on the API server)
and market data (`/v1/ws/market`, on the feed gateway). Served as `/asyncapi.json` by both.

Written as data. The payloads that are also REST bodies (order arguments, orders, fills, positions,
errors) are the pydantic models' own JSON Schemas, so the two documents cannot drift apart; the rest is
spelled out here, strictly (`additionalProperties: false`), so that `tests/api/test_asyncapi.py`, which
checks every message real sockets send against these schemas, notices any field added or renamed.

Messages are named as the tests find them: market data by their `type`, order-entry answers by `op`
(`place_result`...), errors `order_error`. The document describes the exchange's side: it receives the
client's requests and sends answers and market data.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic.json_schema import models_json_schema

from exchange.api.schemas import (
    AmendOrderBody,
    CancelAllAfterBody,
    CancelAllBody,
    CancelledOut,
    DeadlineOut,
    ErrorOut,
    FillOut,
    OrderOut,
    PlaceOrderBody,
    PositionOut,
)

REF = "#/components/schemas/{model}"
TS = 1796225400000000000
SYMBOL = "H100-M40-261203"

JSON = dict[str, Any]


def _ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(description: str, properties: dict[str, JSON], required: list[str] | None = None, *,
         closed: bool = True) -> JSON:
    return {"type": "object", "description": description, "properties": properties,
            "required": list(properties) if required is None else required,
            **({"additionalProperties": False} if closed else {})}


def _const(value: str, description: str) -> JSON:
    return {"const": value, "description": description}


def _s(description: str, example: Any = None) -> JSON:
    return {"type": "string", "description": description, **({"examples": [example]} if example is not None else {})}


def _i(description: str, example: Any = None) -> JSON:
    return {"type": "integer", "description": description, **({"examples": [example]} if example is not None else {})}


def _nullable(schema: JSON) -> JSON:
    return {"anyOf": [schema, {"type": "null"}], "description": schema.get("description", "")}


_ID = {"type": ["integer", "string", "null"], "description": "the request's id, echoed (null when none was usable)",
       "examples": [7]}
_PRICE = _s("USD per GPU-hour, a decimal string on the tick grid", "2.400")
_USD = _s("USD, a decimal string with six decimals", "1000.000000")
_TS = _i("time in integer nanoseconds since the epoch (UTC)", TS)
_LEVELS = {"type": "array", "description": "[price, lots, orders] per level, best first (lots 0: the level is gone)",
           "items": {"type": "array", "prefixItems": [_PRICE, _i("lots"), _i("orders")], "minItems": 3,
                     "maxItems": 3}}
_SYMBOL = _s("the series' symbol", SYMBOL)

# -- market data: the channels a subscription names ----------------------------------------------
CHANNEL = {"description": "one subscription", "oneOf": [
    _obj("a series' book: a snapshot, then deltas", {"channel": _const("book", "book"), "symbol": _SYMBOL,
                                                     "depth": _i("levels per side (default: all)", 10)},
         ["channel", "symbol"]),
    _obj("a series' trades", {"channel": _const("trades", "trades"), "symbol": _SYMBOL}),
    _obj("a series' ticker, at most every 100 ms", {"channel": _const("ticker", "ticker"), "symbol": _SYMBOL}),
    _obj("a series' candles of one interval", {"channel": _const("candles", "candles"), "symbol": _SYMBOL,
                                               "interval": {"enum": ["1m", "5m", "1h"], "description": "bar width"}}),
    _obj("published settlement prices", {"channel": _const("settlement", "settlement")}),
    _obj("a product's GPU-hour index, every minute", {"channel": _const("index", "index"),
                                                      "product": _s("generation-grade", "H100-M40")}),
    _obj("the signed-in account's orders, fills, balance and positions (after auth)",
         {"channel": _const("private", "private")}),
]}

_ORDER_EVENT = _obj("an order change", {
    "id": _s("the exchange's order id", "4711"), "symbol": _SYMBOL, "side": {"enum": ["buy", "sell"]},
    "remaining": _i("lots still open"), "status": {"enum": ["open", "closed", "canceled", "expired"]},
    "cancelled": _i("lots cancelled"), "cancel_reason": _s("why"), "price": _PRICE, "amount": _i("lots"),
    "priority_kept": {"type": "boolean", "description": "an amend that kept the order's place"},
    "expired": _i("lots expired")}, ["id", "symbol", "side", "status"])

MARKET_IN: dict[str, JSON] = {
    "subscribe": _obj("subscribe to channels (all or nothing); answered by `subscribed`, then the snapshots",
                      {"op": _const("subscribe", "subscribe"), "id": _ID,
                       "channels": {"type": "array", "items": CHANNEL, "minItems": 1, "maxItems": 50}},
                      ["op", "channels"]),
    "unsubscribe": _obj("stop channels", {"op": _const("unsubscribe", "unsubscribe"), "id": _ID,
                                          "channels": {"type": "array", "items": CHANNEL, "minItems": 1}},
                        ["op", "channels"]),
    "auth": _obj("sign in for the private channel: signed like a REST GET of /v1/ws/market with an empty body",
                 {"op": _const("auth", "auth"), "id": _ID, "key": _s("API key id", "ak_0123456789abcdef"),
                  "timestamp": _i("seconds since the epoch", 1796225400), "signature": _s("base64 HMAC-SHA256")},
                 ["op", "key", "timestamp", "signature"]),
    "ping": _obj("ask for a pong (its place in the queue shows what was sent before)",
                 {"op": _const("ping", "ping"), "id": _ID}, ["op"]),
}

MARKET_OUT: dict[str, JSON] = {
    "subscribed": _obj("the subscription took effect", {"type": _const("subscribed", "subscribed"), "id": _ID,
                                                         "channels": {"type": "array", "items": CHANNEL}}),
    "unsubscribed": _obj("the channels stopped", {"type": _const("unsubscribed", "unsubscribed"), "id": _ID,
                                                   "channels": {"type": "array", "items": CHANNEL}}),
    "authenticated": _obj("signed in", {"type": _const("authenticated", "authenticated"), "id": _ID,
                                         "account_id": _i("the key's account", 1001)}),
    "pong": _obj("the answer to a ping", {"type": _const("pong", "pong"), "id": _ID, "ts_ns": _TS}),
    "heartbeat": _obj("every 5 s on an idle connection, with the latest seqs of its book and trades channels",
                      {"type": _const("heartbeat", "heartbeat"), "ts_ns": _TS,
                       "seqs": {"type": "object", "description": "book:SYMBOL / trades:SYMBOL -> seq",
                                "additionalProperties": {"type": "integer"}}}),
    "error": _obj("a refused request or a closing reason (slow_consumer, too_many_connections); the connection "
                  "stays open unless said", {"type": _const("error", "error"), "id": _ID,
                                             "code": _s("stable error code", "unknown_channel"),
                                             "message": _s("for a person"),
                                             "details": {"type": "object", "description": "the numbers"}}),
    "book_snapshot": _obj("a book's full state at `seq`", {"type": _const("book_snapshot", "book_snapshot"),
                                                            "symbol": _SYMBOL, "seq": _i("book seq"),
                                                            "bids": _LEVELS, "asks": _LEVELS}),
    "book_update": _obj("changed levels with absolute sizes; `prev_seq` is the seq it follows (a gap: resubscribe)",
                        {"type": _const("book_update", "book_update"), "symbol": _SYMBOL, "seq": _i("book seq"),
                         "prev_seq": _i("the seq this follows"), "bids": _LEVELS, "asks": _LEVELS,
                         "ts_ns": _TS}),
    "trade": _obj("a trade", {"type": _const("trade", "trade"), "symbol": _SYMBOL,
                              "seq": _i("the trade id (trades are gapless per series)"), "trade_id": _i("trade id"),
                              "price": _PRICE, "amount": _i("lots"),
                              "side": {"enum": ["buy", "sell"], "description": "the taker's side"}, "ts_ns": _TS}),
    "ticker": _obj("best prices and 24 h statistics", {
        "type": _const("ticker", "ticker"), "symbol": _SYMBOL, "bid": _nullable(_PRICE), "ask": _nullable(_PRICE),
        "last": _nullable(_PRICE), "open_24h": _nullable(_PRICE), "high_24h": _nullable(_PRICE),
        "low_24h": _nullable(_PRICE), "change_24h": _nullable(_PRICE), "volume_24h": _i("lots"), "ts_ns": _TS}),
    "candle": _obj("a live bar (closed false) or its close", {
        "type": _const("candle", "candle"), "symbol": _SYMBOL, "interval": {"enum": ["1m", "5m", "1h"]},
        "start_ns": _TS, "open": _PRICE, "high": _PRICE, "low": _PRICE, "close": _PRICE, "volume": _i("lots"),
        "trades": _i("trades"), "closed": {"type": "boolean", "description": "the bar is final"}}),
    "settlement": _obj("a published daily settlement price", {
        "type": _const("settlement", "settlement"), "symbol": _SYMBOL, "date": _s("YYYY-MM-DD", "2026-12-02"),
        "price": _PRICE, "final": {"type": "boolean", "description": "the final settlement price"},
        "amended": {"type": "boolean", "description": "replaces an earlier price of that day"},
        "seq": _i("journal seq"), "ts_ns": _TS}),
    "index": _obj("the product's GPU-hour index at a whole minute", {
        "type": _const("index", "index"), "product": _s("generation-grade", "H100-M40"), "ts_ns": _TS,
        "value": _nullable(_s("USD per GPU-hour; null: no trades in the hour", "2.400")),
        "trades": _i("trades in the hour"), "volume": _i("GPU-hours traded in the hour")}),
    "fill": {"allOf": [_ref("FillOut")], "description": "private: one of your trades", "type": "object",
             "properties": {"type": _const("fill", "fill")}, "required": ["type"]},
    "order": _obj("private: one of your orders changed", {
        "type": _const("order", "order"), "event": {"enum": ["accepted", "fill", "cancelled", "amended", "expired"]},
        "seq": _i("journal seq"), "ts_ns": _TS,
        "order": {"anyOf": [_ref("OrderOut"), _ORDER_EVENT], "description": "the order (in full when accepted)"}}),
    "balance": _obj("private: your cash, margin held and available", {
        "type": _const("balance", "balance"), "cash": _USD, "margin": _USD, "available": _USD,
        "seq": _i("journal seq")}),
    "position": {"allOf": [_ref("PositionOut")], "description": "private: a position changed", "type": "object",
                 "properties": {"type": _const("position", "position"), "seq": _i("journal seq")},
                 "required": ["type", "seq"]},
}

# -- order entry ----------------------------------------------------------------------------------
_REF_ARGS = {"order_id": {"type": ["integer", "string"], "description": "the exchange's order id", "examples": [4711]},
             "client_order_id": _s("your id for the order", "my-order-1")}
_ONE_REF = {"oneOf": [{"required": ["order_id"]}, {"required": ["client_order_id"]}]}   # exactly one of the two
ORDER_ARGS: dict[str, JSON] = {
    "place": _ref("PlaceOrderBody"),
    # AmendOrderBody refuses other fields, so its schema cannot be extended with allOf: its fields again.
    "amend": _obj("a new price and/or open amount (at least one), naming the order by exactly one of order_id "
                  "and client_order_id", {**_REF_ARGS, "price": {**_PRICE, "pattern": r"^[0-9]{1,12}(\.[0-9]{1,8})?$"},
                                          "amount": {"type": "integer", "minimum": 1, "description": "the new open "
                                                     "quantity in lots"}}, []) | _ONE_REF,
    "cancel": _obj("the order, by exactly one of its ids", _REF_ARGS, []) | _ONE_REF,
    "get": _obj("the order, by exactly one of its ids", _REF_ARGS, []) | _ONE_REF,
    "cancel_all": _ref("CancelAllBody"),
    "cancel_all_after": _ref("CancelAllAfterBody"),
}
ORDER_RESULTS: dict[str, str] = {"place": "OrderOut", "amend": "OrderOut", "cancel": "OrderOut", "get": "OrderOut",
                                 "cancel_all": "CancelledOut", "cancel_all_after": "DeadlineOut"}

ORDER_IN: dict[str, JSON] = {
    "order_auth": _obj("the first message: sign timestamp + GET + /v1/ws/orders (empty body) with the key's secret",
                       {"op": _const("auth", "auth"), "key": _s("API key id", "ak_0123456789abcdef"),
                        "timestamp": {"type": ["integer", "string"], "description": "seconds since the epoch"},
                        "signature": _s("base64 HMAC-SHA256"),
                        "cancel_on_disconnect": {"type": "boolean",
                                                 "description": "cancel all the account's orders on close"}},
                       ["op", "key", "timestamp", "signature"]),
    **{f"{op}_request": _obj(f"the {op} request: the REST body as args; answered by {op}_result or order_error",
                             {"op": _const(op, op), "id": _ID, "args": args}, ["op", "args"])
       for op, args in ORDER_ARGS.items()},
}
ORDER_OUT: dict[str, JSON] = {
    "order_auth_ok": _obj("signed in", {"op": _const("auth", "auth"), "ok": {"const": True, "description": "ok"},
                                         "account_id": _i("the key's account", 1001)}),
    **{f"{op}_result": _obj(f"the answer to a {op} request: the REST status and body",
                            {"op": _const(op, op), "id": _ID, "status": _i("the REST status", 200),
                             "result": _ref(model)})
       for op, model in ORDER_RESULTS.items()},
    "order_error": _obj("a refused request (or auth): the REST status and error body; auth errors close with 1008",
                        {"op": {"type": "string", "description": "the request's op, or error when it had none"},
                         "id": _ID, "status": _i("the REST status", 422), "error": _ref("ErrorOut")}),
}

PATH = "/asyncapi.json"
API_SERVER = "orderEntry"
FEED_SERVER = "marketData"


@cache
def _document() -> JSON:
    _, defs = models_json_schema(
        [(m, "serialization" if m.__name__.endswith("Out") else "validation")
         for m in (PlaceOrderBody, AmendOrderBody, CancelAllBody, CancelAllAfterBody, OrderOut, CancelledOut,
                   DeadlineOut, ErrorOut, FillOut, PositionOut)], ref_template=REF)
    schemas: JSON = dict(defs.get("$defs", {}))

    def messages(table: dict[str, JSON]) -> JSON:
        return {name: {"name": name, "title": name.replace("_", " "), "summary": payload.get("description", name),
                       "contentType": "application/json", "payload": payload} for name, payload in table.items()}

    def refs(channel: str, names: dict[str, JSON]) -> list[JSON]:
        return [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in names]

    return {
        "asyncapi": "3.0.0",
        "info": {"title": "GPU compute futures exchange: WebSocket APIs", "version": "1",
                 "description": "Order entry on the API server and market data on the feed gateway. JSON text "
                                "frames; prices and cash as decimal strings, lots as integers, times in ns. With "
                                "`?batch=1` the market-data socket may send a JSON array of messages in one frame."},
        "defaultContentType": "application/json",
        "servers": {
            API_SERVER: {"host": "127.0.0.1:8000", "protocol": "ws", "description": "the API server (exchange serve)"},
            FEED_SERVER: {"host": "127.0.0.1:8001", "protocol": "ws",
                          "description": "the feed gateway (started by exchange serve)"},
        },
        "channels": {
            "orders": {"address": "/v1/ws/orders", "title": "order entry",
                       "description": "Authenticate once, then requests tagged with your id; answers may come in "
                                      "any order. The per-key rate limit applies per message.",
                       "servers": [{"$ref": f"#/servers/{API_SERVER}"}],
                       "messages": messages({**ORDER_IN, **ORDER_OUT})},
            "market": {"address": "/v1/ws/market", "title": "market data",
                       "description": "Subscribe to channels; books are a snapshot then deltas with seq/prev_seq.",
                       "servers": [{"$ref": f"#/servers/{FEED_SERVER}"}],
                       "messages": messages({**MARKET_IN, **MARKET_OUT})},
        },
        "operations": {
            "receiveOrderRequests": {"action": "receive", "channel": {"$ref": "#/channels/orders"},
                                     "summary": "the client's auth and order requests",
                                     "messages": refs("orders", ORDER_IN)},
            "sendOrderAnswers": {"action": "send", "channel": {"$ref": "#/channels/orders"},
                                 "summary": "answers, tagged with the request's op and id",
                                 "messages": refs("orders", ORDER_OUT)},
            "receiveMarketRequests": {"action": "receive", "channel": {"$ref": "#/channels/market"},
                                      "summary": "subscribe, unsubscribe, auth, ping",
                                      "messages": refs("market", MARKET_IN)},
            "sendMarketData": {"action": "send", "channel": {"$ref": "#/channels/market"},
                               "summary": "acks, snapshots, updates, private messages, heartbeats, errors",
                               "messages": refs("market", MARKET_OUT)},
        },
        "components": {"schemas": schemas},
    }


def install(app: FastAPI) -> None:
    """Serve the document at /asyncapi.json (beside /openapi.json; not an operation of it)."""
    async def asyncapi_json() -> JSONResponse:
        return JSONResponse(_document())

    app.add_api_route(PATH, asyncapi_json, methods=["GET"], include_in_schema=False)


def document() -> JSON:
    """The AsyncAPI document (a fresh copy: callers may change it)."""
    return copy.deepcopy(_document())


def message_name(channel: str, message: JSON) -> str:
    """Which of the document's messages a message the server sent on `channel` ("orders" or "market") is."""
    if channel == "market":
        return str(message.get("type"))
    if "error" in message:
        return "order_error"
    if message.get("op") == "auth":
        return "order_auth_ok"
    return f"{message.get('op')}_result"
