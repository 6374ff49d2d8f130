"""Order entry over one authenticated WebSocket (GET /v1/ws/orders): lower latency than REST, and
many requests in flight at once.

    session = await OrderSession.connect("ws://127.0.0.1:8000/v1/ws/orders", key_id, secret)
    async with session:
        orders = await asyncio.gather(*(session.place("H100-M40-Z26", "buy", 1, price=p) for p in prices))
        await session.cancel(orders[0]["id"])

Each request gets a fresh id; a reader task matches replies (which may arrive in any order) to the
waiting requests by id. The server refuses more than `ws_in_flight_max` (default 256) unanswered
requests per connection with 429; `max_in_flight` makes the session queue requests beyond a bound
instead of sending them. A refusal raises the same `ExchangeError` subclasses as the REST clients; a
lost connection fails every request in flight with `NetworkError` (whether such a request was acted
on is unknown: look the order up by its client order id, which `place` always sends).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from exchange.client.calls import amend_args, cancel_all_args, order_args, order_ref
from exchange.client.errors import (
    AuthError,
    ExchangeError,
    NetworkError,
    RequestTimeoutError,
    error_from_response,
    status_for_code,
)
from exchange.client.signer import Signer
from exchange.client.values import Money, flag, whole

ORDERS_PATH = "/v1/ws/orders"
POLICY_VIOLATION = 1008  # the close code of a refused authentication

JSON = dict[str, Any]


def orders_url(url: str) -> str:
    """The order-entry WebSocket URL for `url`: an http(s) base URL becomes ws(s), and a URL without a
    path gets /v1/ws/orders."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"not a WebSocket or HTTP URL: {url!r}")
    path = parts.path if parts.path not in ("", "/") else ORDERS_PATH
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def _error_of(message: Mapping[str, Any], status: object = None) -> ExchangeError:
    """The exception for an error reply {"error": {"code", "message", "details"}, "status"?}."""
    body = message.get("error")
    body = body if isinstance(body, Mapping) else {}
    if not isinstance(status, int) or isinstance(status, bool):
        code = body.get("code")
        status = status_for_code(code if isinstance(code, str) else "")
    return error_from_response(status, body)


class OrderSession:
    """An authenticated order-entry WebSocket. Create it with `OrderSession.connect(...)`; close it
    with `close()` or `async with session:`."""

    def __init__(self, connection: ClientConnection, *, request_timeout_s: float | None = 10.0,
                 max_in_flight: int | None = None) -> None:
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._ws = connection
        self.request_timeout_s = request_timeout_s
        self._slots = asyncio.Semaphore(max_in_flight) if max_in_flight is not None else None
        self.last_error: ExchangeError | None = None
        """The last error the server sent that answered no request (e.g. malformed_json)."""
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[JSON]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closed_error: ExchangeError | None = None

    @classmethod
    async def connect(cls, url: str, key_id: str, secret: str, cancel_on_disconnect: bool = False, *,
                      clock_s: Callable[[], int] | None = None, open_timeout_s: float | None = 10.0,
                      request_timeout_s: float | None = 10.0, max_in_flight: int | None = None) -> OrderSession:
        """Open the WebSocket at `url` (ws(s)://host/v1/ws/orders, or the server's http(s) base URL)
        and authenticate with the API key. With `cancel_on_disconnect`, the server cancels all the
        account's orders when this connection drops. `request_timeout_s` bounds the wait for each
        reply (None: no bound); `max_in_flight` bounds the requests awaiting a reply (None: no bound).
        Raises AuthError when the key is refused, NetworkError when the server cannot be reached."""
        url = orders_url(url)
        signer = Signer(key_id, secret, clock_s)
        try:
            connection = await connect(url, open_timeout=open_timeout_s, max_size=2**22)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as error:
            raise NetworkError(0, "network_error", f"cannot open {url}: {type(error).__name__}: {error}",
                               maybe_sent=False) from error
        session = cls(connection, request_timeout_s=request_timeout_s, max_in_flight=max_in_flight)
        try:
            await session._authenticate(signer, flag(cancel_on_disconnect, "cancel_on_disconnect"), open_timeout_s)
        except BaseException:
            await connection.close()
            raise
        session._reader = asyncio.create_task(session._read(), name="exchange-order-session-reader")
        return session

    async def _authenticate(self, signer: Signer, cancel_on_disconnect: bool, timeout_s: float | None) -> None:
        # Signed over the fixed path of the contract, whatever URL (e.g. behind a proxy) was dialled.
        timestamp_s = signer.timestamp()
        await self._ws.send(json.dumps({
            "op": "auth", "key": signer.key_id, "timestamp": timestamp_s,
            "signature": signer.signature(timestamp_s, "GET", ORDERS_PATH, b""),
            "cancel_on_disconnect": cancel_on_disconnect,
        }, separators=(",", ":")))
        try:
            async with asyncio.timeout(timeout_s):
                raw = await self._ws.recv()
        except TimeoutError as error:
            raise RequestTimeoutError(0, "timeout", "no answer to the authentication") from error
        except ConnectionClosed as error:
            if error.rcvd is not None and error.rcvd.code == POLICY_VIOLATION:
                raise AuthError(401, "auth_failed", error.rcvd.reason or "authentication refused") from error
            raise NetworkError(0, "network_error", f"connection closed during authentication: {error}") from error
        reply = parse_object(raw)
        if reply is not None and reply.get("op") == "auth" and reply.get("ok") is True:
            return
        if reply is not None and "error" in reply:
            raise _error_of(reply, reply.get("status"))
        raise ExchangeError(0, "invalid_response", f"unexpected answer to authentication: {str(raw)[:200]}")

    async def _read(self) -> None:
        """Dispatch replies to the requests waiting for them, until the connection closes."""
        try:
            async for raw in self._ws:
                message = parse_object(raw)
                if message is None:
                    continue
                request_id = message.get("id")
                future = self._pending.pop(str(request_id), None) if request_id is not None else None
                if future is None:  # an answer to no request of ours, or to one that timed out
                    if request_id is None and "error" in message:
                        self.last_error = _error_of(message, message.get("status"))
                    continue
                if future.done():
                    continue
                if "error" in message:
                    future.set_exception(_error_of(message, message.get("status")))
                else:
                    result = message.get("result")
                    future.set_result(result if isinstance(result, dict) else {})
        except ConnectionClosed:
            pass
        finally:
            error = NetworkError(0, "connection_closed", f"order session closed (code {self._ws.close_code}, "
                                 f"{self._ws.close_reason or 'no reason'})")
            self._closed_error = error
            pending, self._pending = self._pending, {}
            for future in pending.values():
                if not future.done():
                    future.set_exception(error)

    @property
    def closed(self) -> bool:
        return self._closed_error is not None

    async def request(self, op: str, args: Mapping[str, Any], *, timeout_s: float | None = None) -> JSON:
        """Send one request and await its reply's `result`; raises the mapped error for an error reply.
        `timeout_s` overrides the session's `request_timeout_s` (None: the session's)."""
        if self._slots is None:
            return await self._request(op, args, timeout_s)
        async with self._slots:
            return await self._request(op, args, timeout_s)

    async def _request(self, op: str, args: Mapping[str, Any], timeout_s: float | None) -> JSON:
        if self._closed_error is not None:
            raise self._closed_error
        request_id = str(next(self._ids))
        future: asyncio.Future[JSON] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            try:
                await self._ws.send(json.dumps({"op": op, "id": request_id, "args": dict(args)},
                                               separators=(",", ":")))
            except ConnectionClosed as error:
                raise self._closed_error or NetworkError(0, "connection_closed", str(error)) from error
            limit = self.request_timeout_s if timeout_s is None else timeout_s
            try:
                async with asyncio.timeout(limit):
                    return await future
            except TimeoutError as error:
                raise RequestTimeoutError(0, "timeout", f"no reply to {op} request {request_id} in {limit} s") \
                    from error
        finally:
            self._pending.pop(request_id, None)

    async def place(self, symbol: str, side: str, amount: int, price: Money | None = None, type: str = "limit",
                    time_in_force: str | None = None, post_only: bool = False, stp: str | None = None,
                    client_order_id: str | None = None, expire_time_ns: int | None = None) -> JSON:
        """Place an order (the same arguments as `Client.place_order`; a client order id is
        generated when none is given); returns the order object."""
        return await self.request("place", order_args(symbol, side, amount, price, type, time_in_force, post_only,
                                                      stp, client_order_id, expire_time_ns))

    async def amend(self, order_id: str | int | None = None, client_order_id: str | None = None, *,
                    price: Money | None = None, amount: int | None = None) -> JSON:
        """Change an order's price and/or open quantity; returns the order."""
        return await self.request("amend", {**order_ref(order_id, client_order_id), **amend_args(price, amount)})

    async def cancel(self, order_id: str | int | None = None, client_order_id: str | None = None) -> JSON:
        """Cancel an order; returns it (status canceled)."""
        return await self.request("cancel", order_ref(order_id, client_order_id))

    async def cancel_all(self, symbol: str | None = None, side: str | None = None) -> JSON:
        """Cancel the account's open orders (optionally one series and/or side); {"cancelled": n}."""
        return await self.request("cancel_all", cancel_all_args(symbol, side))

    async def cancel_all_after(self, timeout_seconds: int) -> JSON:
        """Arm (or with 0 disarm) the dead-man's switch; {"deadline_ns": int | None}."""
        return await self.request("cancel_all_after", {"timeout_seconds": whole(timeout_seconds, "timeout_seconds")})

    async def get(self, order_id: str | int | None = None, client_order_id: str | None = None) -> JSON:
        """An order by exactly one of its ids."""
        return await self.request("get", order_ref(order_id, client_order_id))

    async def close(self) -> None:
        """Close the connection; requests still in flight fail with NetworkError."""
        await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


def parse_object(raw: str | bytes) -> JSON | None:
    """A WebSocket frame as a JSON object, or None if it is not one (both SDK WebSocket clients)."""
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None
