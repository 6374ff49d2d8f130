"""Everything the sync and async REST clients share: configuration, request preparation (signing),
response decoding, and the endpoint methods themselves.

Each endpoint method is written once, here: it builds a `Call` and hands it to `_call`, which the
sync client implements returning the decoded JSON and the async client implements as a coroutine.
`BaseClient[R]` is generic in that result type, so `Client.place_order(...)` returns a dict and
`AsyncClient.place_order(...)` a coroutine of one.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from exchange.client.calls import (
    Call,
    Retry,
    amend_args,
    cancel_all_args,
    compact,
    encode_json,
    order_args,
    order_path,
    segment,
)
from exchange.client.errors import (
    AuthError,
    ExchangeError,
    NetworkError,
    RequestTimeoutError,
    ServerError,
    error_from_response,
)
from exchange.client.retry import RetryPolicy
from exchange.client.signer import Signer
from exchange.client.values import Money, flag, money, whole
from exchange.signing import HEADER_IDEMPOTENCY_KEY

R = TypeVar("R")

USER_AGENT = "compute-exchange-python/0.1"
DEFAULT_TIMEOUT_S = 10.0

# Connection failures that prove the request never reached the server.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True, slots=True)
class Prepared:
    """One attempt of a call, ready to send to `origin + target`; `target` is the path and query
    exactly as sent and signed."""

    method: str
    origin: str
    target: str
    body: bytes
    headers: dict[str, str]

    @property
    def url(self) -> str:
        return self.origin + self.target


def decode_response(status: int, content: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
    """The JSON object of a 2xx answer; raises the mapped `ExchangeError` for any other status."""
    if not 200 <= status < 300:
        raise error_from_response(status, content, headers)
    if not content.strip():
        return {}
    try:
        parsed = httpx.Response(status, content=content).json()
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ServerError(status, "invalid_response", "the server's answer is not a JSON object",
                          {"body": content[:300].decode("utf-8", "replace")})
    return parsed


def network_error(error: httpx.TransportError) -> NetworkError:
    """The SDK error for an httpx transport failure (its cause is kept as __cause__)."""
    maybe_sent = not isinstance(error, _NOT_SENT)
    cls = RequestTimeoutError if isinstance(error, httpx.TimeoutException) else NetworkError
    code = "timeout" if cls is RequestTimeoutError else "network_error"
    wrapped = cls(0, code, f"{type(error).__name__}: {error}".rstrip(": "), maybe_sent=maybe_sent)
    wrapped.__cause__ = error
    return wrapped


class BaseClient(ABC, Generic[R]):
    """The exchange's REST API (see the sync `Client` and the async `AsyncClient`).

    `base_url` is the server's origin, e.g. "http://127.0.0.1:8000". Private endpoints need `key_id`
    and `secret`. Failed attempts of retry-safe calls are retried up to `max_retries` times (see
    `RetryPolicy`); every attempt is signed afresh with a timestamp to the microsecond, strictly
    increasing (`clock_s`, whole seconds, replaces the system clock in tests). `rng` (a source of floats in
    [0, 1)) draws the backoff jitter.

    Prices and cash amounts are accepted as Decimal, str or int, and sent as decimal strings; a float
    is refused with TypeError. Answers are returned as the parsed JSON objects (dicts) the API
    documents; failures raise `ExchangeError` subclasses (see `exchange.client.errors`).
    """

    def __init__(self, base_url: str, key_id: str | None = None, secret: str | None = None, *,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S, max_retries: int = 3,
                 clock_s: Callable[[], int] | None = None, rng: Callable[[], float] = random.random,
                 retry_policy: RetryPolicy | None = None) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
        if url.query or url.fragment:
            raise ValueError("base_url must not carry a query or fragment")
        if (key_id is None) != (secret is None):
            raise ValueError("give both key_id and secret, or neither")
        self.base_url = str(url)
        self._origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
        self._prefix = url.raw_path.decode("ascii").rstrip("/")  # a path prefix, if any, is signed too
        self.signer = None if key_id is None or secret is None else Signer(key_id, secret, clock_s)
        self.timeout = timeout
        self.retry_policy = retry_policy or RetryPolicy(max_retries=max_retries)
        self._rng = rng

    # -- shared mechanics ----------------------------------------------------------------------------

    @abstractmethod
    def _call(self, call: Call) -> R:
        """Send `call` (with retries) and decode its answer."""

    def _prepare(self, call: Call) -> Prepared:
        """The next attempt of `call`: signed now, with the call's Idempotency-Key."""
        headers: dict[str, str] = {}
        if call.body:
            headers["Content-Type"] = "application/json"
        if call.idempotency_key is not None:
            headers[HEADER_IDEMPOTENCY_KEY] = call.idempotency_key
        target = self._prefix + call.path
        if call.private:
            if self.signer is None:
                raise AuthError(401, "auth_missing", f"{call.method} {call.path.split('?')[0]} needs an API key: "
                                "construct the client with key_id and secret")
            headers.update(self.signer.headers(call.method, target, call.body, call.idempotency_key))
        return Prepared(call.method, self._origin, target, call.body, headers)

    def _retry_delay_s(self, call: Call, attempt: int, error: ExchangeError) -> float | None:
        return self.retry_policy.delay_s(call.retry, attempt, error, self._rng)

    def request(self, method: str, path: str, *, params: Mapping[str, object] | None = None,
                payload: Mapping[str, Any] | None = None, private: bool = True,
                idempotency_key: str | None = None) -> R:
        """Any endpoint, for what the named methods do not cover: `path` like "/v1/orders", `params`
        the query (None values dropped), `payload` the JSON body. GETs are retried; mutations carry
        an Idempotency-Key (the one given, or a fresh one) and are retried with it."""
        method = method.upper()
        if method == "GET":
            return self._call(Call.get(path, params, private=private))
        if params:
            raise ValueError("query parameters are only supported on GET here")
        return self._call(Call.mutation(method, path, payload, idempotency_key=idempotency_key))

    # -- public: health and market data --------------------------------------------------------------

    def health(self) -> R:
        """GET /health: {"status": "ok"} while the process is up."""
        return self._call(Call.get("/health", private=False))

    def ready(self) -> R:
        """GET /ready: {"status": "ready", "journal_seq", "projected_seq"}; raises UnavailableError
        (without retrying) while the exchange is not ready."""
        return self._call(Call.get("/ready", private=False, retry=Retry.NEVER))

    def products(self) -> R:
        """GET /v1/products: {"items": [product], "next_cursor": None}."""
        return self._call(Call.get("/v1/products", private=False))

    def series(self, status: str = "trading", limit: int | None = None, cursor: str | None = None) -> R:
        """GET /v1/series: one page of series ("trading" or "all"), {"items": [series], "next_cursor"}."""
        return self._call(Call.get("/v1/series", {"status": status, "limit": _opt_int(limit, "limit"),
                                                  "cursor": cursor}, private=False))

    def series_spec(self, symbol: str) -> R:
        """GET /v1/series/{symbol}: the series' contract terms, tick size, price band, limits, fees."""
        return self._call(Call.get(f"/v1/series/{segment(symbol)}", private=False))

    def order_book(self, symbol: str, depth: int | None = None) -> R:
        """GET /v1/series/{symbol}/book: {"symbol", "seq", "ts_ns", "bids": [[price, lots, orders]],
        "asks": [...]}, best first, `depth` levels a side (1..500, server default 50)."""
        return self._call(Call.get(f"/v1/series/{segment(symbol)}/book", {"depth": _opt_int(depth, "depth")},
                                   private=False))

    def trades(self, symbol: str, limit: int | None = None, cursor: str | None = None, *,
               since_ns: int | None = None, until_ns: int | None = None) -> R:
        """GET /v1/series/{symbol}/trades: one page of public trades, newest first, {"items", "next_cursor"
        (older trades), "prev_cursor" (newer ones)}; `since_ns` <= trade time < `until_ns`."""
        return self._call(Call.get(f"/v1/series/{segment(symbol)}/trades",
                                   {"limit": _opt_int(limit, "limit"), "cursor": cursor,
                                    "since": _opt_int(since_ns, "since_ns"), "until": _opt_int(until_ns, "until_ns")},
                                   private=False))

    def ticker(self, symbol: str) -> R:
        """GET /v1/series/{symbol}/ticker: bid, ask, last and 24 h statistics."""
        return self._call(Call.get(f"/v1/series/{segment(symbol)}/ticker", private=False))

    def candles(self, symbol: str, interval: str = "1m", limit: int | None = None, start_ns: int | None = None,
                end_ns: int | None = None) -> R:
        """GET /v1/series/{symbol}/candles: {"items": [{"start_ns", "open", "high", "low", "close",
        "volume", "trades"}]} for `interval` "1m", "5m" or "1h"."""
        return self._call(Call.get(f"/v1/series/{segment(symbol)}/candles", {
            "interval": interval, "limit": _opt_int(limit, "limit"), "start_ns": _opt_int(start_ns, "start_ns"),
            "end_ns": _opt_int(end_ns, "end_ns")}, private=False))

    # -- private: orders ---------------------------------------------------------------------------

    def place_order(self, symbol: str, side: str, amount: int, price: Money | None = None, type: str = "limit",
                    time_in_force: str | None = None, post_only: bool = False, stp: str | None = None,
                    client_order_id: str | None = None, expire_time_ns: int | None = None) -> R:
        """POST /v1/orders [trade]: place an order; returns the order object.

        `side` "buy"/"sell"; `amount` whole lots; `price` (limit only) in USD per GPU-hour; `type`
        "limit"/"market"; `time_in_force` "GTC"/"GTD"/"IOC"/"FOK" (server default GTC, IOC for market);
        `stp` "cancel_newest"/"cancel_oldest"/"cancel_both"/"decrement"; `expire_time_ns` for GTD.
        A `client_order_id` is generated when none is given: the call is then safe to retry (a
        retry returns the original order), and the id can be read back from the answer.
        """
        args = order_args(symbol, side, amount, price, type, time_in_force, post_only, stp, client_order_id,
                          expire_time_ns)
        # Idempotent on its client order id (always present), so retry-safe without an Idempotency-Key.
        return self._call(Call("POST", "/v1/orders", encode_json(args), retry=Retry.IDEMPOTENT))

    def get_order(self, order_id: str | int | None = None, client_order_id: str | None = None) -> R:
        """GET /v1/orders/{id} or /v1/orders/client/{client_order_id} [read] (exactly one of the two)."""
        return self._call(Call.get(order_path(order_id, client_order_id)))

    def orders(self, status: str = "all", symbol: str | None = None, limit: int | None = None,
               cursor: str | None = None) -> R:
        """GET /v1/orders [read]: one page of the account's orders by ascending id; `status` "open",
        "closed" (filled, canceled or expired) or "all"; {"items": [order], "next_cursor"}."""
        return self._call(Call.get("/v1/orders", {"status": status, "symbol": symbol,
                                                  "limit": _opt_int(limit, "limit"), "cursor": cursor}))

    def open_orders(self, symbol: str | None = None, limit: int | None = None, cursor: str | None = None) -> R:
        """One page of the account's open orders (`orders(status="open")`)."""
        return self.orders("open", symbol, limit, cursor)

    def closed_orders(self, symbol: str | None = None, limit: int | None = None, cursor: str | None = None) -> R:
        """One page of the account's closed orders (`orders(status="closed")`)."""
        return self.orders("closed", symbol, limit, cursor)

    def amend_order(self, order_id: str | int | None = None, client_order_id: str | None = None, *,
                    price: Money | None = None, amount: int | None = None, idempotency_key: str | None = None) -> R:
        """PATCH /v1/orders/{id} or /v1/orders/client/{client_order_id} [trade]: a new price and/or
        a new open quantity (a smaller quantity at the same price keeps time priority); the order."""
        return self._call(Call.mutation("PATCH", order_path(order_id, client_order_id), amend_args(price, amount),
                                        idempotency_key=idempotency_key))

    def cancel_order(self, order_id: str | int | None = None, client_order_id: str | None = None, *,
                     idempotency_key: str | None = None) -> R:
        """DELETE /v1/orders/{id} or /v1/orders/client/{client_order_id} [trade]: the canceled order."""
        return self._call(Call.mutation("DELETE", order_path(order_id, client_order_id),
                                        idempotency_key=idempotency_key))

    def cancel_all(self, symbol: str | None = None, side: str | None = None, *,
                   idempotency_key: str | None = None) -> R:
        """POST /v1/orders/cancel-all [trade]: cancel the account's open orders, optionally only in
        one series and/or on one side; {"cancelled": n}."""
        return self._call(Call.mutation("POST", "/v1/orders/cancel-all", cancel_all_args(symbol, side),
                                        idempotency_key=idempotency_key))

    def cancel_all_after(self, timeout_seconds: int, *, idempotency_key: str | None = None) -> R:
        """POST /v1/cancel-all-after [trade]: the dead-man's switch; unless called again within
        `timeout_seconds` (0..86400), all the account's orders are cancelled. 0 disarms it.
        Returns {"deadline_ns": int | None}."""
        return self._call(Call.mutation("POST", "/v1/cancel-all-after",
                                        {"timeout_seconds": whole(timeout_seconds, "timeout_seconds")},
                                        idempotency_key=idempotency_key))

    # -- private: account --------------------------------------------------------------------------

    def fills(self, symbol: str | None = None, limit: int | None = None, cursor: str | None = None, *,
              since_ns: int | None = None, until_ns: int | None = None) -> R:
        """GET /v1/fills [read]: one page of the account's fills (price, amount, fee, maker/taker), newest
        first, with cursors both ways like `trades`."""
        return self._call(Call.get("/v1/fills", {"symbol": symbol, "limit": _opt_int(limit, "limit"),
                                                 "cursor": cursor, "since": _opt_int(since_ns, "since_ns"),
                                                 "until": _opt_int(until_ns, "until_ns")}))

    def positions(self) -> R:
        """GET /v1/positions [read]: {"items": [{"symbol", "size", "entry_price", "realized_pnl"}]}."""
        return self._call(Call.get("/v1/positions"))

    def balances(self) -> R:
        """GET /v1/balances [read]: {"account_id", "currency", "cash", "margin", "available"}."""
        return self._call(Call.get("/v1/balances"))

    def ledger(self, limit: int | None = None, cursor: str | None = None) -> R:
        """GET /v1/ledger [read]: one page of cash postings (deposits, fees, settlements, ...)."""
        return self._call(Call.get("/v1/ledger", {"limit": _opt_int(limit, "limit"), "cursor": cursor}))

    def account(self) -> R:
        """GET /v1/account [read]: {"account_id", "enabled", "key_id", "scopes"} of this API key."""
        return self._call(Call.get("/v1/account"))

    # -- operator ------------------------------------------------------------------------------------

    def create_account(self, account_id: int | None = None, *, idempotency_key: str | None = None) -> R:
        """POST /v1/admin/accounts [operator]: a new account (the next free id unless one is given);
        {"account_id", "enabled"}."""
        return self._call(Call.mutation("POST", "/v1/admin/accounts",
                                        compact({"account_id": _opt_int(account_id, "account_id")}),
                                        idempotency_key=idempotency_key))

    def deposit(self, account_id: int, amount: Money, *, idempotency_key: str | None = None) -> R:
        """POST /v1/admin/accounts/{id}/deposits [operator]: credit USD cash; {"account_id", "cash"}."""
        return self._call(Call.mutation("POST", f"/v1/admin/accounts/{whole(account_id, 'account_id')}/deposits",
                                        {"amount": money(amount, "amount")}, idempotency_key=idempotency_key))

    def withdraw(self, account_id: int, amount: Money, *, idempotency_key: str | None = None) -> R:
        """POST /v1/admin/accounts/{id}/withdrawals [operator]: debit USD cash (refused with
        insufficient_funds if it would leave margin uncovered); {"account_id", "cash"}."""
        return self._call(Call.mutation("POST", f"/v1/admin/accounts/{whole(account_id, 'account_id')}/withdrawals",
                                        {"amount": money(amount, "amount")}, idempotency_key=idempotency_key))

    def set_account_enabled(self, account_id: int, enabled: bool, *, idempotency_key: str | None = None) -> R:
        """PUT /v1/admin/accounts/{id}/enabled [operator]: the kill switch (disabling cancels all the
        account's orders and refuses new ones); {"account_id", "enabled"}."""
        return self._call(Call.mutation("PUT", f"/v1/admin/accounts/{whole(account_id, 'account_id')}/enabled",
                                        {"enabled": flag(enabled, "enabled")}, idempotency_key=idempotency_key))

    def create_api_key(self, account_id: int, scopes: Sequence[str]) -> R:
        """POST /v1/admin/api-keys [operator]: a new key for the account with `scopes` ("read",
        "trade", "operator"); {"key_id", "secret", "scopes", "account_id"} — the secret is shown
        only here. Not idempotent: retried only when the request certainly never reached the server."""
        if isinstance(scopes, str):
            raise TypeError("scopes must be a sequence of scope names, not a str")
        return self._call(Call.mutation("POST", "/v1/admin/api-keys",
                                        {"account_id": whole(account_id, "account_id"), "scopes": list(scopes)},
                                        retry=Retry.UNSENT))

    def list_series(self, symbol: str, *, idempotency_key: str | None = None) -> R:
        """POST /v1/admin/series [operator]: list a series of the catalog; the series object."""
        return self._call(Call.mutation("POST", "/v1/admin/series", {"symbol": symbol},
                                        idempotency_key=idempotency_key))

    def halt_series(self, symbol: str, halted: bool = True, *, idempotency_key: str | None = None) -> R:
        """PUT /v1/admin/series/{symbol}/halt [operator]: halt (no new orders or amends; cancels
        still work) or resume (`halted=False`) a series; the series object."""
        return self._call(Call.mutation("PUT", f"/v1/admin/series/{segment(symbol)}/halt",
                                        {"halted": flag(halted, "halted")}, idempotency_key=idempotency_key))

    def account_view(self, account_id: int) -> R:
        """GET /v1/admin/accounts/{id} [operator]: cash, initial margin, open orders and positions."""
        return self._call(Call.get(f"/v1/admin/accounts/{whole(account_id, 'account_id')}"))

    def account_ledger(self, ledger_account: int, limit: int | None = None, after_seq: int | None = None) -> R:
        """GET /v1/admin/ledger/{account} [operator]: postings oldest first and the balance (system
        accounts too: -1 external, -2 fees, -3 settlement)."""
        if isinstance(ledger_account, bool) or not isinstance(ledger_account, int):
            raise TypeError("ledger_account must be an int")
        return self._call(Call.get(f"/v1/admin/ledger/{ledger_account}",
                                   {"limit": _opt_int(limit, "limit"), "after_seq": _opt_int(after_seq, "after_seq")}))

    def request_snapshot(self) -> R:
        """POST /v1/admin/snapshots [operator]: snapshot the core after the next commit."""
        return self._call(Call.mutation("POST", "/v1/admin/snapshots"))

    def submit_command(self, command: Mapping[str, Any]) -> R:
        """POST /v1/admin/commands [operator]: one settlement command as typed JSON ({"kind":
        "settle_daily" | "assign_deliveries" | "settle_delivery" | "advance_time", ...}: see
        `exchange.api.job_schemas`), answered once durable with {"seq", "ts_ns", "events"}. The
        settlement jobs use it against a running exchange; each command is idempotent by its digest."""
        return self._call(Call.mutation("POST", "/v1/admin/commands", {"command": dict(command)}))

    def job_runs(self, limit: int | None = None, cursor: str | None = None, state: str | None = None,
                 kind: str | None = None) -> R:
        """GET /v1/admin/jobs [operator]: the scheduler's job runs, newest first, with state, progress,
        duration, counts and error; {"items", "next_cursor"}."""
        return self._call(Call.get("/v1/admin/jobs", {"limit": _opt_int(limit, "limit"), "cursor": cursor,
                                                      "state": state, "kind": kind}))

    def statements(self, kind: str | None = None, limit: int | None = None, cursor: str | None = None) -> R:
        """GET /v1/statements [read]: this account's statements (daily, delivery), newest first;
        {"items", "next_cursor"}."""
        return self._call(Call.get("/v1/statements", {"kind": kind, "limit": _opt_int(limit, "limit"),
                                                      "cursor": cursor}))

    def statement(self, kind: str, ref: str) -> R:
        """GET /v1/statements/{kind}/{ref} [read]: one statement as JSON (`?format=csv|html` over plain
        HTTP gives the other forms)."""
        return self._call(Call.get(f"/v1/statements/{segment(kind)}/{segment(ref)}"))


def _opt_int(value: int | None, name: str) -> int | None:
    return None if value is None else whole(value, name)
