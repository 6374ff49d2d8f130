"""The REST API's OpenAPI document, made for people and for generated clients.

FastAPI derives the document from the routes and the pydantic models; this module adds what it cannot
know: operation ids that read well in a generated client (`create_order`, `list_trades`), a one-line
summary per operation, the three signature headers as security schemes (declared on every signed
operation, with the scope it needs), the rate-limit headers of every response, and a description and
an example for every schema and field. Field documentation is kept here as data, by field name (with
per-schema overrides where one name means two things), so that one field reads the same everywhere;
`tests/api/test_openapi.py` fails on any operation, schema, property or parameter left without.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

import fastapi.routing
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from exchange.api.auth import OPERATOR, READ, TRADE
from exchange.api.quota import HEADERS_DOC
from exchange.signing import HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP

TS = 1796225400000000000          # 2026-12-02 15:30 UTC, in ns: the time in the examples
SYMBOL = "H100-M40-261203"

# (method, path) -> (operation id, summary). Every route must have one (the test says which lacks it).
OPERATIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("GET", "/health"): ("get_health", "Is the process up"),
    ("GET", "/ready"): ("get_readiness", "Is the exchange ready for orders"),
    ("GET", "/metrics"): ("get_metrics", "Prometheus metrics"),
    ("GET", "/v1/products"): ("list_products", "List the products"),
    ("GET", "/v1/series"): ("list_series", "List the series"),
    ("GET", "/v1/series/{symbol}"): ("get_series", "Get a series' contract terms"),
    ("GET", "/v1/series/{symbol}/book"): ("get_order_book", "Get the order book"),
    ("GET", "/v1/series/{symbol}/trades"): ("list_trades", "List recent trades"),
    ("GET", "/v1/series/{symbol}/ticker"): ("get_ticker", "Get the ticker"),
    ("GET", "/v1/series/{symbol}/candles"): ("list_candles", "List OHLCV candles"),
    ("POST", "/v1/orders"): ("create_order", "Place an order"),
    ("GET", "/v1/orders"): ("list_orders", "List your orders"),
    ("GET", "/v1/orders/{order_id}"): ("get_order", "Get an order"),
    ("PATCH", "/v1/orders/{order_id}"): ("amend_order", "Amend an order"),
    ("DELETE", "/v1/orders/{order_id}"): ("cancel_order", "Cancel an order"),
    ("GET", "/v1/orders/client/{client_order_id}"): ("get_order_by_client_id", "Get an order by your id"),
    ("PATCH", "/v1/orders/client/{client_order_id}"): ("amend_order_by_client_id", "Amend an order by your id"),
    ("DELETE", "/v1/orders/client/{client_order_id}"): ("cancel_order_by_client_id", "Cancel an order by your id"),
    ("POST", "/v1/orders/cancel-all"): ("cancel_all_orders", "Cancel all your orders"),
    ("POST", "/v1/cancel-all-after"): ("set_cancel_all_after", "Arm the dead man's switch"),
    ("GET", "/v1/account"): ("get_account", "Who am I"),
    ("GET", "/v1/balances"): ("get_balances", "Get cash, margin and available"),
    ("GET", "/v1/positions"): ("list_positions", "List your positions"),
    ("GET", "/v1/fills"): ("list_fills", "List your fills"),
    ("GET", "/v1/ledger"): ("list_ledger_postings", "List your cash postings"),
    ("GET", "/v1/settlements"): ("list_settlements", "List daily settlement prices"),
    ("GET", "/v1/deliveries"): ("list_deliveries", "List your deliveries"),
    ("POST", "/v1/admin/accounts"): ("create_account", "Open an account"),
    ("POST", "/v1/admin/accounts/{account_id}/deposits"): ("create_deposit", "Deposit cash"),
    ("POST", "/v1/admin/accounts/{account_id}/withdrawals"): ("create_withdrawal", "Withdraw cash"),
    ("PUT", "/v1/admin/accounts/{account_id}/enabled"): ("set_account_enabled", "Enable or disable an account"),
    ("POST", "/v1/admin/api-keys"): ("create_api_key", "Create an API key"),
    ("DELETE", "/v1/admin/api-keys/{key_id}"): ("revoke_api_key", "Revoke an API key"),
    ("POST", "/v1/admin/series"): ("add_series", "List a series for trading"),
    ("PUT", "/v1/admin/series/{symbol}/halt"): ("set_series_halted", "Halt or resume a series"),
    ("GET", "/v1/statements"): ("list_statements", "List your statements"),
    ("GET", "/v1/statements/{kind}/{ref}"): ("get_statement", "Get a statement (JSON, CSV or HTML)"),
    ("GET", "/v1/admin/accounts/{account_id}"): ("get_account_view", "Get an account's cash and positions"),
    ("GET", "/v1/admin/ledger/{ledger_account}"): ("list_account_ledger", "List a ledger account's postings"),
    ("POST", "/v1/admin/snapshots"): ("request_snapshot", "Snapshot the core"),
    ("POST", "/v1/admin/commands"): ("submit_settlement_command", "Submit a settlement command"),
    ("GET", "/v1/admin/jobs"): ("list_job_runs", "List settlement job runs"),
    ("PUT", "/v1/admin/telemetry/{name}"): ("upload_telemetry", "Upload a probe telemetry file"),
}

TAGS: list[dict[str, str]] = [
    {"name": "market data", "description": "Public: products, series, books, trades, tickers, candles. Limited "
                                           "per client IP."},
    {"name": "orders", "description": "Order entry and queries: signed, `trade` scope to change, `read` to look."},
    {"name": "account", "description": "The signed-in account: fills, positions, balances, ledger (`read`)."},
    {"name": "settlement", "description": "Published settlement prices (public) and your deliveries (`read`)."},
    {"name": "operator", "description": "Accounts, cash, API keys, listing and halting series, settlement jobs "
                                        "and telemetry uploads (`operator`)."},
    {"name": "operations", "description": "Liveness, readiness, Prometheus metrics."},
]

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": HEADER_KEY,
               "description": "your API key id (`ak_` and 16 hex digits)"},
    "Timestamp": {"type": "apiKey", "in": "header", "name": HEADER_TIMESTAMP,
                  "description": "the request time in seconds since the epoch, an integer or with up to 6 "
                                 "decimals (signed as sent); more than 5 s from the server clock is refused"},
    "Signature": {"type": "apiKey", "in": "header", "name": HEADER_SIGNATURE,
                  "description": "base64(HMAC-SHA256(secret, timestamp + METHOD + path with query "
                                 "[+ \"\\nIdempotency-Key:\" + key + \"\\n\" when sent] + body)); the three headers go "
                                 "together; a signature that acts is accepted once (auth_replayed)"},
}
SIGNED: list[dict[str, list[str]]] = [{"ApiKey": [], "Timestamp": [], "Signature": []}]

_COMPOSED = object()   # no example in the table: one is built from the property's schema
_TIME = "time in integer nanoseconds since the epoch (UTC)"
_PRICE = "USD per GPU-hour, a decimal string on the series' tick grid"
_USD = "USD, a decimal string with six decimals"
Doc = tuple[str, Any]   # (description, example)

# Field name -> (description, example): what the field means wherever it appears ...
FIELDS: dict[str, Doc] = {
    "account_id": ("the account's id", 1001),
    "amount": ("whole lots", 2),
    "ask": ("the best ask price (" + _PRICE + "); null if none", "2.405"),
    "asks": ("ask levels, best (lowest) first: [price, lots, orders]", [["2.405", 12, 3]]),
    "available": ("cash less the margin held: what new orders and withdrawals can use (" + _USD + ")", "9394.704000"),
    "average": ("the average fill price (USD per GPU-hour, six decimals); null before the first fill", "2.400000"),
    "bid": ("the best bid price (" + _PRICE + "); null if none", "2.395"),
    "bids": ("bid levels, best (highest) first: [price, lots, orders]", [["2.395", 10, 2]]),
    "book_seq": ("the series' book seq in the market feed (the feed gateway's book; null on the API server)", None),
    "buyer": ("the buyer's account id", 1002),
    "cancel_reason": ("why lots were cancelled (requested, ioc_remainder, self_trade, amend_reduced, "
                      "dead_mans_switch, outside_band...)",
                      "requested"),
    "cancelled": ("lots cancelled", 0),
    "cash": ("cash balance (" + _USD + ")", "10000.000000"),
    "change_24h": ("last price less the first of the last 24 h (USD per GPU-hour)", "0.010"),
    "client_order_id": ("your id for the order, unique per account (1 to 36 letters, digits, _ or -); a retry "
                        "with it is safe", "my-order-1"),
    "close": ("the last trade price in the bar (" + _PRICE + ")", "2.405"),
    "code": ("a stable snake_case error code to switch on", "price_outside_band"),
    "counterparty": ("the other account of the posting (negative ids are the exchange's own accounts)", -2),
    "created_ns": ("when the order was accepted, " + _TIME, TS),
    "currency": ("always USD", "USD"),
    "damages": ("liquidated damages paid by the seller (" + _USD + "); null until settled", "0.000000"),
    "date": ("the settlement date, YYYY-MM-DD", "2026-12-02"),
    "deadline_ns": ("when the switch fires unless re-armed, " + _TIME + "; null when disarmed", TS + 60 * 10**9),
    "default": ("whether the seller defaulted; null until settled", False),
    "delivery_end_ns": ("end of the delivery period (exclusive), " + _TIME, 1796342400000000000),
    "delivery_id": ("the delivery's id: symbol/number", f"{SYMBOL}/1"),
    "delivery_start_ns": ("start of the delivery period, " + _TIME, 1796256000000000000),
    "description": ("what the GPU generation is", "NVIDIA H100 SXM 80GB"),
    "details": ("the numbers behind the error, in the API's units (e.g. band_low, band_high, tick, nearest_valid; "
                "required and available for margin; errors[] for schema violations)",
                {"price": "3.000", "band_low": "2.160", "band_high": "2.640", "reference_price": "2.400",
                 "tick": "0.005", "nearest_valid": ["2.640"]}),
    "effective_gpu_hours": ("the GPU-hours the probe measured as delivered (six decimals); null until settled",
                            "190.500000"),
    "enabled": ("whether the account may trade", True),
    "entry_price": ("the average entry price of the position (USD per GPU-hour, six decimals)", "2.400000"),
    "expire_time_ns": ("GTD only: when the order expires, " + _TIME, TS + 3_600 * 10**9),
    "fee": ("the fee charged on this fill (" + _USD + ")", "0.184320"),
    "filled": ("lots filled", 2),
    "final": ("whether this is the series' final settlement price", False),
    "final_settlement_price": ("the series' final settlement price (" + _PRICE + ")", "2.400"),
    "generation": ("the GPU generation", "H100"),
    "gpu_hours": ("GPU-hours to deliver: lots × GPUs per lot × hours", 384),
    "gpus": ("GPUs to deliver", 16),
    "gpus_per_lot": ("GPUs in one lot", 8),
    "halted": ("whether trading is halted (no new orders or amends; cancels work)", False),
    "high": ("the highest trade price in the bar (" + _PRICE + ")", "2.410"),
    "high_24h": ("the highest trade price of the last 24 h; null without trades", "2.410"),
    "id": ("the exchange's order id (a decimal string)", "4711"),
    "initial_margin_per_lot": ("initial margin one lot needs at the reference price (" + _USD + ")", "55.296000"),
    "initial_margin_rate": ("initial margin as a fraction of a lot's notional", "0.12"),
    "invoice": ("what the buyer pays the seller for the delivered GPU-hours (" + _USD + "); null until settled",
                "457.200000"),
    "items": ("this page's items", _COMPOSED),
    "journal_seq": ("the last journal seq committed", 120345),
    "key_id": ("the API key's id", "ak_0123456789abcdef"),
    "kind": ("what moved the cash: deposit, withdrawal, fee, variation_margin, delivery_invoice...", "deposit"),
    "last": ("the last trade price (" + _PRICE + "); null without trades", "2.400"),
    "leg": ("the posting's number within its event", 0),
    "liquidity": ("maker (your order rested) or taker", "taker"),
    "lot_gpu_hours": ("GPU-hours in one lot: GPUs per lot × hours of the delivery period", 192),
    "lots": ("lots delivered", 2),
    "low": ("the lowest trade price in the bar (" + _PRICE + ")", "2.395"),
    "low_24h": ("the lowest trade price of the last 24 h; null without trades", "2.390"),
    "maker_fee_rate": ("fee of the resting side, a fraction of notional", "0"),
    "margin": ("initial margin held by open orders and positions (" + _USD + ")", "605.296000"),
    "mark_price": ("the price positions are valued at: the reference price (" + _PRICE + ")", "2.400"),
    "max_order_lots": ("the largest order, in lots", 500),
    "max_position_lots": ("the largest worst-case position, in lots", 5000),
    "message": ("what went wrong, for a person, with the numbers in USD, lots and prices per GPU-hour",
                "price 3.000 USD per GPU-hour is outside the band 2.160..2.640 (the reference price 2.400 ± the "
                "band)"),
    "mfu_grade": ("the minimum model FLOPs utilisation the delivered GPUs must reach, a fraction", "0.40"),
    "next_cursor": ("pass as `cursor` for the next page; null on the last page", None),
    "open": ("the first trade price in the bar (" + _PRICE + ")", "2.400"),
    "open_24h": ("the first trade price of the last 24 h; null without trades", "2.390"),
    "order_id": ("the exchange's order id (a decimal string)", "4711"),
    "period": ("the delivery period: a day, an ISO week or a month", "2026-12-03"),
    "post_only": ("refuse the order if it would trade on arrival (it only adds liquidity)", False),
    "prev_cursor": ("pass as `cursor` for the items newer than this page; null only past the oldest end", "o1234"),
    "price": ("the price (" + _PRICE + ")", "2.400"),
    "price_band_high": ("the highest price accepted now (" + _PRICE + ")", "2.640"),
    "price_band_low": ("the lowest price accepted now (" + _PRICE + ")", "2.160"),
    "product": ("the product: GPU generation and minimum MFU grade", "H100-M40"),
    "projected_seq": ("the last journal seq the SQL store has applied", 120345),
    "reference_price": ("the price margin and the band are computed from: the last settlement price (" + _PRICE
                        + ")", "2.400"),
    "remaining": ("lots still open on the book", 0),
    "revoked": ("whether the key is revoked", True),
    "scopes": ("what the key may do: read, trade, operator", ["read", "trade"]),
    "secret": ("the key's secret, shown only in this answer: sign requests with it", "c2VjcmV0LXNob3duLW9uY2U"),
    "seller": ("the seller's account id", 1003),
    "seq": ("the journal seq of the event that last changed this", 120345),
    "series": ("symbols of this product's listed series", [SYMBOL]),
    "side": ("buy or sell (for a trade: the taker's side)", "buy"),
    "size": ("the net position in lots: positive long, negative short", 2),
    "start_ns": ("the bar's start, " + _TIME, TS),
    "status": ("the state", "ok"),
    "stp": ("self-trade prevention: which of your own orders is cancelled when they would meet",
            "cancel_newest"),
    "symbol": ("the series' symbol: product and delivery period", SYMBOL),
    "taker_fee_rate": ("fee of the incoming side, a fraction of notional", "0.0002"),
    "terminated": ("whether trading has terminated (the day before delivery, 16:00 UTC)", False),
    "tick_size": ("the price grid step (USD per GPU-hour)", "0.005000"),
    "time_in_force": ("GTC, GTD (with expire_time_ns), IOC or FOK; default GTC for limit, IOC for market", "GTC"),
    "timeout_seconds": ("seconds until every open order is cancelled unless re-armed; 0 disarms", 60),
    "trade_id": ("the trade's id, increasing within its series", 1234),
    "trades": ("number of trades in the bar", 3),
    "trading_end_ns": ("when trading terminates, " + _TIME, 1796227200000000000),
    "ts_ns": ("when it happened (the engine's time), " + _TIME, TS),
    "type": ("limit, or market (an IOC or FOK at the band edge: never trades outside the band)", "limit"),
    "unrealized_pnl": ("profit or loss at the mark price (" + _USD + ", signed)", "0.960000"),
    "updated_ns": ("when the order last changed, " + _TIME, TS),
    "volume": ("lots traded in the bar", 7),
    "volume_24h": ("lots traded in the last 24 h", 120),
}
# ... and where the same name means something else.
SCHEMA_FIELDS: dict[tuple[str, str], Doc] = {
    ("CashBody", "amount"): ("USD to move, a positive decimal string with at most 6 decimals", "2500.00"),
    ("PostingOut", "amount"): ("USD, signed: positive credits the account", "2500.000000"),
    ("PostingOut", "symbol"): ("the series the posting is about; null for deposits and withdrawals", SYMBOL),
    ("PostingOut", "trade_id"): ("the trade the posting is about (fees); null otherwise", 1234),
    ("AmendOrderBody", "price"): ("the new price (" + _PRICE + ")", "2.405"),
    ("AmendOrderBody", "amount"): ("the new open (remaining) quantity in lots", 3),
    ("PlaceOrderBody", "price"): ("limit orders only: the limit price (" + _PRICE + ")", "2.400"),
    ("PlaceOrderBody", "amount"): ("the order's quantity in whole lots", 2),
    # null in the example: examples are combined into one request by tools, and only a GTD order takes one
    ("PlaceOrderBody", "expire_time_ns"): ("GTD orders only (required there): when the order expires, " + _TIME,
                                           None),
    ("OrderOut", "amount"): ("the order's quantity in lots", 2),
    ("OrderOut", "status"): ("open, closed (filled), canceled, expired or rejected", "open"),
    ("OrderOut", "type"): ("limit or market", "limit"),
    ("OrderOut", "price"): ("the limit price (" + _PRICE + "); null for a market order", "2.400"),
    ("CancelAllBody", "symbol"): ("only this series' orders (default: all)", SYMBOL),
    ("CancelAllBody", "side"): ("only this side's orders (default: both)", "buy"),
    ("CreateAccountBody", "account_id"): ("the new account's id; default: one more than the highest existing",
                                          1001),
    ("CreateKeyBody", "account_id"): ("the account the key acts for", 1001),
    ("EnabledBody", "enabled"): ("true enables the account; false disables it and cancels its orders", False),
    ("HaltBody", "halted"): ("true halts the series; false resumes trading", True),
    ("ListSeriesBody", "symbol"): ("a symbol of the catalog's calendar", SYMBOL),
    ("ReadyOut", "status"): ("ready", "ready"),
    ("DeliveryOut", "status"): ("assigned, then settled", "assigned"),
    ("SettlementOut", "price"): ("the settlement price (" + _PRICE + ")", "2.400"),
    ("ProductOut", "reference_price"): ("the product's default reference price (USD per GPU-hour); null: the "
                                        "generation's", None),
    ("CancelledOut", "cancelled"): ("how many orders were cancelled", 3),
    ("FillOut", "amount"): ("lots filled", 2),
    ("FillOut", "side"): ("your side in the trade", "buy"),
    ("TradeOut", "amount"): ("lots traded", 2),
    ("BookOut", "seq"): ("the journal seq the book reflects", 120345),
    ("BookOut", "ts_ns"): ("the engine time of that seq, " + _TIME, TS),
    ("TickerOut", "seq"): ("the journal seq the ticker reflects", 120345),
    ("TickerOut", "ts_ns"): ("the engine time of that seq, " + _TIME, TS),
    ("KeyOut", "scopes"): ("what the key may do", ["read", "trade"]),
    ("WhoAmIOut", "scopes"): ("what this key may do", ["read", "trade"]),
}
# Whole request bodies whose fields' examples would not make a coherent request together.
MODEL_EXAMPLES: dict[str, dict[str, Any]] = {
    "PlaceOrderBody": {"symbol": SYMBOL, "side": "buy", "type": "limit", "price": "2.400", "amount": 2,
                       "time_in_force": "GTC", "client_order_id": "my-order-1"},
    "AmendOrderBody": {"price": "2.405", "amount": 3},
    "OrderOut": {"id": "4711", "client_order_id": "my-order-1", "symbol": SYMBOL, "side": "buy", "type": "limit",
                 "time_in_force": "GTC", "post_only": False, "stp": "cancel_newest", "price": "2.400", "amount": 2,
                 "filled": 1, "remaining": 1, "cancelled": 0, "average": "2.400000", "status": "open",
                 "cancel_reason": None, "expire_time_ns": None, "created_ns": TS, "updated_ns": TS + 10**9,
                 "seq": 120345},
}
# Query and path parameters.
PARAMETERS: dict[str, Doc] = {
    "symbol": ("the series' symbol (GET /v1/series lists them)", SYMBOL),
    "limit": ("items per page", 100),
    "cursor": ("an opaque cursor: the next_cursor (or prev_cursor) of a previous page, passed back unchanged",
               None),
    "status": ("which items: see the values", None),
    "depth": ("price levels per side", 10),
    "interval": ("bar width", "1m"),
    "start_ns": ("first bar at or after this " + _TIME, TS - 3_600 * 10**9),
    "end_ns": ("bars before this " + _TIME, TS),
    "order_id": ("the exchange's order id", 4711),
    "client_order_id": ("your id for the order", "my-order-1"),
    "account_id": ("the account's id", 1001),
    "key_id": ("the API key's id", "ak_0123456789abcdef"),
    "date": ("a settlement date, YYYY-MM-DD", "2026-12-02"),
    "since": ("only items at or after this " + _TIME, TS - 3_600 * 10**9),
    "until": ("only items before this " + _TIME, TS),
    "kind": ("daily or delivery", "daily"),
    "ref": ("the settlement date (daily, YYYY-MM-DD) or the delivery id (delivery)", "2026-12-02"),
    "format": ("json (default), csv or html", "csv"),
    "ledger_account": ("a trader account, or -1 external, -2 fees, -3 settlement", 1001),
    "after_seq": ("postings after this event seq (the previous page's next_after_seq)", 0),
    "state": ("only runs in this state", "failed"),
    "name": ("the file's name in the inbox: letters, digits, . _ -, ending .csv or .jsonl", "probe-2026-12-03.csv"),
}
# ... where one name means different things on different paths.
PATH_PARAMETERS: dict[tuple[str, str], Doc] = {
    ("/v1/series", "cursor"): ("the next_cursor of the previous page (a symbol), passed back unchanged", SYMBOL),
    ("/v1/orders", "cursor"): ("the next_cursor of the previous page, passed back unchanged", "4711"),
    ("/v1/ledger", "cursor"): ("the next_cursor of the previous page, passed back unchanged", "120345"),
    ("/v1/series", "status"): ("trading (default) leaves out terminated series; all lists them too", "all"),
    ("/v1/orders", "status"): ("open (default), closed (filled, canceled or expired) or all", "all"),
    ("/v1/series/{symbol}/trades", "cursor"): ("an opaque cursor: the next_cursor (older trades) or prev_cursor "
                                               "(newer trades) of a previous page, passed back unchanged", "o1234"),
    ("/v1/statements", "cursor"): ("the next_cursor of the previous page, passed back unchanged",
                                   "1796169600000000000.daily.2026-12-02"),
    ("/v1/admin/jobs", "cursor"): ("the next_cursor of the previous page (a run id), passed back unchanged", "42"),
    ("/v1/admin/jobs", "kind"): ("only runs of this job: daily, delivery or retention", "daily"),
    ("/v1/fills", "cursor"): ("an opaque cursor: the next_cursor (older fills) or prev_cursor (newer fills) of a "
                              "previous page, passed back unchanged", f"o120345.{SYMBOL}.1234"),
}
# Operations whose success answer is not JSON get their example here.
CONTENT_EXAMPLES: dict[str, str] = {
    "get_statement": "symbol,settlement_price,method,prior_settlement_price,position_lots,variation_margin\n",
    "get_metrics": "# HELP exchange_journal_seq The last committed journal seq\nexchange_journal_seq 120345\n",
}


def operation_id(route: APIRoute) -> str:
    """FastAPI's `generate_unique_id_function`: the table's id (a route missing there gets FastAPI's
    default-like name, which the contract test refuses)."""
    for method in route.methods or ():
        entry = OPERATIONS.get((method, route.path_format))
        if entry is not None:
            return entry[0]
    return f"{route.name}_{'_'.join(sorted(route.methods or ())).lower()}"


def _api_routes(app: FastAPI) -> list[APIRoute]:
    """The app's API routes with their full paths. FastAPI 0.16x keeps included routers as such and
    builds each route's effective context (prefix, dependencies) on demand; older ones copy routes."""
    contexts: Callable[[Any], Any] | None = getattr(fastapi.routing, "iter_route_contexts", None)
    candidates = list(contexts(app.routes)) if contexts is not None else list(app.routes)
    return [cast(APIRoute, route) for route in candidates
            if hasattr(route, "dependant") and hasattr(route, "path_format")]


def required_scope(route: APIRoute) -> str | None:
    """The scope a route's signature dependency demands (None: a public route)."""
    scopes = {READ: "read", TRADE: "trade", OPERATOR: "operator"}
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        call: Callable[..., Any] | None = dependency.call
        if call in scopes:
            return scopes[call]
        declared = getattr(call, "required_scope", None)   # a route that verifies its signature itself
        if isinstance(declared, str):
            return declared
        pending.extend(dependency.dependencies)
    return None


def _doc_property(schema_name: str, name: str, prop: dict[str, Any]) -> None:
    description, example = SCHEMA_FIELDS.get((schema_name, name)) or FIELDS.get(name) or ("", _COMPOSED)
    if description and "description" not in prop:
        prop["description"] = description
    if "examples" not in prop and "example" not in prop and example is not _COMPOSED:
        prop["examples"] = [example]


def _example(schema: dict[str, Any], schemas: dict[str, Any], depth: int = 0) -> Any:
    """An example of a schema: its own, else one built from its properties' examples."""
    if depth > 8:
        return None
    if "$ref" in schema:
        return _example(schemas[schema["$ref"].rsplit("/", 1)[-1]], schemas, depth + 1)
    if schema.get("examples"):
        return schema["examples"][0]
    if "properties" in schema:
        return {name: _example(prop, schemas, depth + 1) for name, prop in schema["properties"].items()}
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return _example(options[0], schemas, depth + 1) if options else None
    if schema.get("type") == "array" and "items" in schema:
        return [_example(schema["items"], schemas, depth + 1)]
    return schema.get("default")


def _schema_description(name: str, schema: dict[str, Any]) -> str:
    if name.startswith(("Page_", "TradePage_")):
        inner = name.split("_", 1)[1].rstrip("_")
        kind = "newest first, with cursors both ways" if name.startswith("TradePage_") else "with a cursor"
        return f"a page of {inner} items, {kind}"
    return str(schema.get("title", name))


def build(app: FastAPI) -> dict[str, Any]:
    """The document: FastAPI's, completed as the module docstring says."""
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                      tags=TAGS)
    doc = copy.deepcopy(doc)
    schemas: dict[str, Any] = doc.get("components", {}).get("schemas", {})
    for name, schema in schemas.items():
        schema.setdefault("description", _schema_description(name, schema))
        for prop_name, prop in schema.get("properties", {}).items():
            _doc_property(name, prop_name, prop)
    for name, example in MODEL_EXAMPLES.items():
        if name in schemas:
            schemas[name]["examples"] = [example]
    for schema in schemas.values():   # composed from the tables' examples (and the whole ones just set)
        for prop in schema.get("properties", {}).values():
            if "examples" not in prop and "example" not in prop:
                prop["examples"] = [_example(prop, schemas)]
    for schema in schemas.values():
        if "examples" not in schema:
            schema["examples"] = [_example({**schema, "examples": None}, schemas)]
    doc.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    routes = {(method, route.path_format): route for route in _api_routes(app) for method in route.methods or ()}
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            route = routes[(method.upper(), path)]
            entry = OPERATIONS.get((method.upper(), path))
            if entry is not None:
                operation["summary"] = entry[1]
            scope = required_scope(route)
            if scope is not None:
                operation["security"] = SIGNED
                operation["description"] = (operation.get("description", "") +
                                            f"\n\nSigned request; the key needs the `{scope}` scope.").strip()
                operation["x-required-scope"] = scope
            for parameter in operation.get("parameters", []):
                description, example = (PATH_PARAMETERS.get((path, parameter["name"]))
                                         or PARAMETERS.get(parameter["name"], ("", None)))
                specific = (path, parameter["name"]) in PATH_PARAMETERS   # replaces the route's generic text
                if description and (specific or "description" not in parameter):
                    parameter["description"] = description
                if example is not None and "example" not in parameter and "examples" not in parameter:
                    parameter["example"] = example
            for status, response in operation.get("responses", {}).items():
                headers = response.setdefault("headers", {})
                headers.update(copy.deepcopy(HEADERS_DOC))
                if status in ("429", "503"):
                    headers["Retry-After"] = {"description": "seconds to wait before retrying",
                                              "schema": {"type": "integer", "examples": [1]}}
                for media_type, content in response.get("content", {}).items():
                    text_example = CONTENT_EXAMPLES.get(operation.get("operationId", ""))
                    if media_type != "application/json" and text_example is not None:
                        content["example"] = text_example
    return doc


def install(app: FastAPI) -> None:
    """Serve `build(app)` (built once) as the app's OpenAPI document."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
