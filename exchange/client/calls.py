"""One API call, described independently of how it is sent: `Call` (method, path with query, body
bytes, auth, Idempotency-Key, retry safety), and the argument builders shared by REST and WebSocket.

The body is serialized once, here, with compact separators; those exact bytes are signed and sent,
as many times as the call is retried. The query string is built here too (urlencode), so that the
signed request target is the one sent.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from exchange.client.values import Money, flag, money, whole


class Retry(enum.Enum):
    """When a failed attempt of a call may be sent again."""

    IDEMPOTENT = "idempotent"
    """Sending it twice has the effect of sending it once (GET, an order with a client order id, a
    mutation with an Idempotency-Key): retried after any network error, timeout, 429 or 503."""
    UNSENT = "unsent"
    """Not idempotent: retried only when the server certainly did not act on it (the connection
    could not be opened, or 429)."""
    NEVER = "never"
    """Never retried (e.g. a readiness probe, whose 503 is the answer)."""


def new_client_order_id() -> str:
    """A fresh client order id: 32 hex characters (the API allows 1 to 36 of [A-Za-z0-9_-])."""
    return uuid.uuid4().hex


def new_idempotency_key() -> str:
    """A fresh Idempotency-Key: 32 hex characters (the API allows 1 to 64 of [A-Za-z0-9._:-])."""
    return uuid.uuid4().hex


def segment(value: str | int) -> str:
    """A value as one path segment (percent-encoded, so it cannot add segments or a query)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"a path segment must be a str or int, not {type(value).__name__}")
    return quote(str(value), safe="")


def with_query(path: str, params: Mapping[str, object]) -> str:
    """`path` with the query string of the non-None `params` (booleans as true/false)."""
    pairs = [(name, ("true" if value else "false") if isinstance(value, bool) else str(value))
             for name, value in params.items() if value is not None]
    return f"{path}?{urlencode(pairs)}" if pairs else path


def compact(args: Mapping[str, Any]) -> dict[str, Any]:
    """`args` without its None values (optional fields are omitted, not sent as null)."""
    return {name: value for name, value in args.items() if value is not None}


def encode_json(payload: Mapping[str, Any]) -> bytes:
    """The one serialization of a request body: compact, ASCII, keys in the given order."""
    return json.dumps(payload, separators=(",", ":")).encode("ascii")


@dataclass(frozen=True, slots=True)
class Call:
    """A logical API call. `path` includes the query string; `body` is the exact bytes to send (empty
    for none); `idempotency_key`, when set, is sent on every attempt of this call."""

    method: str
    path: str
    body: bytes = b""
    private: bool = True
    retry: Retry = Retry.IDEMPOTENT
    idempotency_key: str | None = None

    @classmethod
    def get(cls, path: str, params: Mapping[str, object] | None = None, *, private: bool = True,
            retry: Retry = Retry.IDEMPOTENT) -> Call:
        return cls("GET", with_query(path, params or {}), private=private, retry=retry)

    @classmethod
    def mutation(cls, method: str, path: str, payload: Mapping[str, Any] | None = None, *,
                 idempotency_key: str | None = None, retry: Retry = Retry.IDEMPOTENT) -> Call:
        """A signed mutation carrying an Idempotency-Key (the caller's, or a fresh one for this call)."""
        return cls(method, path, b"" if payload is None else encode_json(payload),
                   retry=retry, idempotency_key=idempotency_key or new_idempotency_key())


# -- argument builders shared by the REST clients and the WebSocket session ---------------------------

def order_args(symbol: str, side: str, amount: int, price: Money | None = None, type: str = "limit",
               time_in_force: str | None = None, post_only: bool = False, stp: str | None = None,
               client_order_id: str | None = None, expire_time_ns: int | None = None) -> dict[str, Any]:
    """The body of a new order. A client order id is generated when none is given, which makes the
    placement idempotent (a retry returns the original order instead of placing a second one)."""
    return compact({
        "symbol": symbol,
        "side": side,
        "type": type,
        "price": None if price is None else money(price, "price"),
        "amount": whole(amount, "amount"),
        "time_in_force": time_in_force,
        "post_only": True if flag(post_only, "post_only") else None,
        "stp": stp,
        "client_order_id": client_order_id or new_client_order_id(),
        "expire_time_ns": None if expire_time_ns is None else whole(expire_time_ns, "expire_time_ns"),
    })


def order_ref(order_id: str | int | None, client_order_id: str | None) -> dict[str, Any]:
    """Exactly one of the two order references, as WebSocket args."""
    if (order_id is None) == (client_order_id is None):
        raise ValueError("give exactly one of order_id and client_order_id")
    if order_id is not None:
        return {"order_id": str(whole(order_id, "order_id") if isinstance(order_id, int) else order_id)}
    return {"client_order_id": client_order_id}


def order_path(order_id: str | int | None, client_order_id: str | None) -> str:
    """The REST path of an order named by exactly one of its two ids."""
    ref = order_ref(order_id, client_order_id)
    if "order_id" in ref:
        return f"/v1/orders/{segment(ref['order_id'])}"
    return f"/v1/orders/client/{segment(ref['client_order_id'])}"


def amend_args(price: Money | None, amount: int | None) -> dict[str, Any]:
    """The body of an amend: a new price and/or a new open quantity (at least one)."""
    if price is None and amount is None:
        raise ValueError("an amend needs a price, an amount or both")
    return compact({"price": None if price is None else money(price, "price"),
                    "amount": None if amount is None else whole(amount, "amount")})


def cancel_all_args(symbol: str | None, side: str | None) -> dict[str, Any]:
    return compact({"symbol": symbol, "side": side})
