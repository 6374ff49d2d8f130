"""Order entry over one persistent WebSocket: the same commands and answers as REST, without the
per-request HTTP and signature cost.

Protocol (JSON text frames):
1. The client's first message authenticates the connection, signed like a REST request over
   timestamp + "GET" + "/v1/ws/orders" (empty body):
   `{"op": "auth", "key": KEY_ID, "timestamp": SECONDS, "signature": B64, "cancel_on_disconnect": false}`
   Answer: `{"op": "auth", "ok": true, "account_id": N}`, or an error and close code 1008.
2. Then requests `{"op": OP, "id": REQUEST_ID, "args": {...}}` with OP one of place, amend, cancel,
   cancel_all, cancel_all_after, get; args are the REST bodies (amend, cancel and get name the order
   with "order_id" or "client_order_id"). Each answer echoes op and id and carries the HTTP status of
   the equivalent REST call: `{"op", "id", "status": 201, "result": ORDER}` or
   `{"op", "id", "status": 409, "error": {"code", "message", "details"}}`. Requests are processed
   concurrently (so they share group commits); answers may come in any order: match them by id.
Limits: a message is at most `ws_message_bytes_max` bytes; at most `ws_in_flight_max` requests per
connection may be unanswered (more are refused with 429); the per-key rate limit applies per message.
With `cancel_on_disconnect`, the account's orders are all cancelled when the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ValidationError

from exchange.api import trading
from exchange.api.auth import Principal, check_rate, verify_signed
from exchange.api.errors import ApiCode, ApiError, validation_failed
from exchange.api.runtime import Runtime, get_runtime
from exchange.api.schemas import AmendOrderBody, CancelAllAfterBody, CancelAllBody, PlaceOrderBody
from exchange.api.standing import lost_standing, watch_standing
from exchange.api.ws_frames import FrameError, parse_object, receive_text_or_binary
from exchange.domain.commands import MassCancel

router = APIRouter()
log = logging.getLogger(__name__)

PATH = "/v1/ws/orders"
AUTH_TIMEOUT_S = 5
REQUEST_ID_LEN_MAX = 64
POLICY_VIOLATION = 1008


class OrderRefArgs(BaseModel):
    model_config = {"extra": "forbid", "strict": True}
    order_id: int | str | None = None
    client_order_id: str | None = None


class AmendArgs(AmendOrderBody, OrderRefArgs):
    pass


def _ref(args: OrderRefArgs) -> trading.OrderRef:
    if (args.order_id is None) == (args.client_order_id is None):
        raise ApiError(422, "invalid_order_reference", "give exactly one of order_id and client_order_id")
    if args.order_id is not None:
        text = str(args.order_id)
        if not text.isascii() or not text.isdigit() or not 0 < len(text) <= 18:
            raise ApiError(422, ApiCode.VALIDATION_ERROR, "order_id must be a positive integer")
        return int(text), None
    return None, args.client_order_id


Handler = Callable[[Runtime, Principal, dict[str, Any]], Awaitable[tuple[int, Any]]]


async def _place(runtime: Runtime, principal: Principal, args: dict[str, Any]) -> tuple[int, Any]:
    return await trading.place(runtime, principal, PlaceOrderBody.model_validate(args))


async def _amend(runtime: Runtime, principal: Principal, args: dict[str, Any]) -> tuple[int, Any]:
    parsed = AmendArgs.model_validate(args)
    body = AmendOrderBody(price=parsed.price, amount=parsed.amount)
    return await trading.amend(runtime, principal, _ref(parsed), body)


async def _cancel(runtime: Runtime, principal: Principal, args: dict[str, Any]) -> tuple[int, Any]:
    return await trading.cancel(runtime, principal, _ref(OrderRefArgs.model_validate(args)))


async def _get(runtime: Runtime, principal: Principal, args: dict[str, Any]) -> tuple[int, Any]:
    return 200, await trading.order_view(runtime, principal.account_id, _ref(OrderRefArgs.model_validate(args)))


async def _cancel_all(runtime: Runtime, principal: Principal, args: dict[str, Any]) -> tuple[int, Any]:
    return await trading.cancel_all(runtime, principal, CancelAllBody.model_validate(args))


async def _cancel_all_after(runtime: Runtime, principal: Principal, args: dict[str, Any]) -> tuple[int, Any]:
    return await trading.cancel_all_after(runtime, principal, CancelAllAfterBody.model_validate(args))


OPS: dict[str, tuple[str, Handler]] = {   # op -> (scope, handler)
    "place": ("trade", _place),
    "amend": ("trade", _amend),
    "cancel": ("trade", _cancel),
    "cancel_all": ("trade", _cancel_all),
    "cancel_all_after": ("trade", _cancel_all_after),
    "get": ("read", _get),
}


class Session:
    def __init__(self, websocket: WebSocket, runtime: Runtime) -> None:
        self.websocket = websocket
        self.runtime = runtime
        self.send_lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()
        self.principal: Principal | None = None
        self.cancel_on_disconnect = False
        self.standing_lost = False   # the key was revoked or the account disabled: closing

    async def send(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.websocket.send_text(json.dumps(message, separators=(",", ":")))

    async def send_error(self, op: object, request_id: object, error: ApiError) -> None:
        await self.send({"op": op if isinstance(op, str) else "error", "id": request_id, "status": error.status,
                         "error": error.body()})

    def parse(self, text: str | object) -> dict[str, Any]:
        if isinstance(text, str) and len(text.encode()) > self.runtime.settings.ws_message_bytes_max:
            raise ApiError(413, ApiCode.BODY_TOO_LARGE,
                           f"message larger than {self.runtime.settings.ws_message_bytes_max} bytes")
        try:
            return parse_object(text)
        except FrameError as error:
            raise ApiError(400, error.code, error.message) from None

    async def authenticate(self) -> bool:
        runtime = self.runtime
        try:
            text = await asyncio.wait_for(receive_text_or_binary(self.websocket), AUTH_TIMEOUT_S)
            message = self.parse(text)
            if message.get("op") != "auth":
                raise ApiError(401, ApiCode.AUTH_MISSING, 'the first message must be {"op": "auth", ...}')
            key, timestamp, signature = message.get("key"), message.get("timestamp"), message.get("signature")
            if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in (key, timestamp, signature)):
                raise ApiError(401, ApiCode.AUTH_MISSING, "auth needs key, timestamp and signature")
            # A session can place orders: its auth message is accepted once (replayed, it is refused).
            principal = verify_signed(runtime, str(key), str(timestamp), str(signature), "GET", PATH, b"",
                                      ip=_ip(self.websocket), acting=True)
            self.cancel_on_disconnect = message.get("cancel_on_disconnect") is True
        except TimeoutError:
            await self.send_error("auth", None, ApiError(401, ApiCode.AUTH_MISSING, "no auth message in time"))
            await self.websocket.close(POLICY_VIOLATION)
            return False
        except ApiError as error:
            await self.send_error("auth", None, error)
            await self.websocket.close(POLICY_VIOLATION)
            return False
        counts, limit = runtime.ws_sessions, runtime.settings.ws_sessions_per_key_max
        if not counts.take(counts.per_key, principal.key_id, limit):
            await _refuse(self, "API key", limit)
            return False
        self.principal = principal   # from here on the session counts against its key
        await self.send({"op": "auth", "ok": True, "account_id": principal.account_id})
        return True

    async def handle(self, op: str, request_id: object, args: dict[str, Any]) -> None:
        principal = self.principal
        assert principal is not None
        if self.standing_lost:
            return
        try:
            scope, handler = OPS[op]
            if scope not in principal.scopes:
                raise ApiError(403, ApiCode.FORBIDDEN_SCOPE, f"this API key lacks the {scope!r} scope")
            status, result = await handler(self.runtime, principal, args)
            await self.send({"op": op, "id": request_id, "status": status, "result": result})
        except ValidationError as error:
            await self.send_error(op, request_id, validation_failed(error.errors()))
        except ApiError as error:
            await self.send_error(op, request_id, error)
        except Exception:
            log.exception("WebSocket request %r failed", op)
            await self.send_error(op, request_id, ApiError(500, "internal_error", "internal error"))

    async def serve(self) -> None:
        runtime = self.runtime
        assert self.principal is not None
        in_flight_max = runtime.settings.ws_in_flight_max
        while True:
            text = await receive_text_or_binary(self.websocket)
            if self.standing_lost:
                return
            request_id: object = None
            op: object = None
            try:
                message = self.parse(text)
                op, request_id, args = message.get("op"), message.get("id"), message.get("args", {})
                if not (request_id is None or (isinstance(request_id, int) and not isinstance(request_id, bool))
                        or (isinstance(request_id, str) and len(request_id) <= REQUEST_ID_LEN_MAX)):
                    request_id = None
                    raise ApiError(422, ApiCode.VALIDATION_ERROR,
                                   f"id must be an integer or a string of at most {REQUEST_ID_LEN_MAX} characters")
                if not isinstance(op, str) or op not in OPS:
                    raise ApiError(422, ApiCode.VALIDATION_ERROR, f"unknown op {op!r}: one of {', '.join(OPS)}",
                                   {"ops": list(OPS)})
                if not isinstance(args, dict):
                    raise ApiError(422, ApiCode.VALIDATION_ERROR, "args must be a JSON object")
                check_rate(runtime, self.principal.key_id, _ip(self.websocket))
                if len(self.tasks) >= in_flight_max:
                    raise ApiError(429, ApiCode.RATE_LIMITED,
                                   f"more than {in_flight_max} requests in flight on this connection", retry_after_s=1)
            except ApiError as error:
                await self.send_error(op, request_id, error)
                continue
            task = asyncio.create_task(self.handle(op, request_id, args))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def serve_while_in_standing(self) -> None:
        """Serve requests until the client leaves, or until the key is revoked or the account disabled:
        then the session gets an error naming why and is closed (1008); nothing it sends acts after that."""
        principal = self.principal
        assert principal is not None
        runtime = self.runtime

        def check() -> tuple[str, str] | None:
            return lost_standing(runtime.keyring, principal.key_id, principal.account_id, runtime.service.engine)

        async def close(code: str, message: str) -> None:
            self.standing_lost = True   # from here on nothing the session sends acts
            await self.send({"op": "error", "id": None, "status": 401 if code == ApiCode.AUTH_KEY_REVOKED else 403,
                             "error": {"code": code, "message": message, "details": {}}})
            await self.websocket.close(POLICY_VIOLATION, code)

        # The watcher only closes the socket; the request's own task keeps serving, and ends on the
        # disconnect that follows the close.
        watching = asyncio.create_task(watch_standing(check, runtime.settings.session_check_ms, close))
        try:
            await self.serve()
        finally:
            watching.cancel()

    async def close(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.cancel_on_disconnect and self.principal is not None and self.runtime.ready:
            with contextlib.suppress(ApiError):
                await self.runtime.submit(MassCancel(self.principal.account_id))


def _ip(websocket: WebSocket) -> str:
    return websocket.client.host if websocket.client is not None else "unknown"


async def _refuse(session: Session, what: str, limit: int) -> None:
    error = ApiError(429, ApiCode.TOO_MANY_SESSIONS, f"more than {limit} order-entry sessions per {what}: close one "
                     "first", {"limit": limit})
    await session.send_error("auth", None, error)
    await session.websocket.close(POLICY_VIOLATION, ApiCode.TOO_MANY_SESSIONS)


@router.websocket(PATH)
async def order_entry(websocket: WebSocket, runtime: Annotated[Runtime, Depends(get_runtime)]) -> None:
    await websocket.accept()
    session = Session(websocket, runtime)
    counts, settings, ip = runtime.ws_sessions, runtime.settings, _ip(websocket)
    if not counts.take(counts.per_ip, ip, settings.ws_sessions_per_ip_max):
        await _refuse(session, "client IP", settings.ws_sessions_per_ip_max)
        return
    runtime.metrics.websocket_connected("orders")
    try:
        if await session.authenticate():
            await session.serve_while_in_standing()
    except WebSocketDisconnect:
        pass
    finally:
        counts.give_back(counts.per_ip, ip)
        if session.principal is not None:
            counts.give_back(counts.per_key, session.principal.key_id)
        runtime.metrics.websocket_disconnected("orders")
        await session.close()
