"""One market-data WebSocket connection of the feed gateway (GET /v1/ws/market).

Protocol (JSON text frames; see the README's feeds section):
- client: {"op": "subscribe" | "unsubscribe", "id", "channels": [CHANNEL, ...]}, {"op": "auth", "key",
  "timestamp", "signature"} (signed like a REST GET of /v1/ws/market with an empty body; needed before
  the private channel), {"op": "ping", "id"}.
  CHANNEL: {"channel": "book", "symbol", "depth"?} | trades | ticker {"symbol"} | candles {"symbol",
  "interval": 1m|5m|1h} | {"channel": "settlement"} | {"channel": "index", "product"} | {"channel": "private"}.
- server: {"type": "subscribed" | "unsubscribed", "id", "channels"}, {"type": "authenticated", "id",
  "account_id"}, {"type": "pong", "id"}, the channel messages of `exchange.feeds.hub`, heartbeats every
  5 s on an idle connection, and errors {"type": "error", "id", "code", "message", "details"} with codes
  malformed_json, message_too_large, unknown_op, invalid_subscription, unknown_channel, unknown_series,
  unknown_product, too_many_subscriptions, auth_required, auth_* (as REST), forbidden_scope, rate_limited.
  A subscribe is all-or-nothing: one bad channel refuses the whole message (nothing subscribed). Errors
  leave the connection open.
- Closes: 1013 after {"code": "slow_consumer"} (its outbound queue overflowed), 1008 when the client's
  IP has too many connections (after {"code": "too_many_connections"}).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from exchange.api.auth import check_rate, verify_signed
from exchange.api.errors import ApiCode, ApiError
from exchange.api.standing import lost_standing, watch_standing
from exchange.api.ws_frames import FrameError, parse_object, receive_text_or_binary
from exchange.feeds.context import FeedContext
from exchange.feeds.hub import FeedError, FeedHub, Key, Subscriber, dumps

log = logging.getLogger(__name__)

PATH = "/v1/ws/market"
HEARTBEAT_S = 5.0
REQUEST_ID_LEN_MAX = 64
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TIMEOUT_S = 1.0


def client_ip(websocket: WebSocket) -> str:
    return websocket.client.host if websocket.client is not None else "unknown"


BATCH_MESSAGES_MAX = 1_000       # messages in one batched frame
BATCH_CHARS_MAX = 1_000_000      # and about this many characters


class Session:
    def __init__(self, websocket: WebSocket, context: FeedContext, hub: FeedHub, sub: Subscriber) -> None:
        self.websocket = websocket
        self.context = context
        self.hub = hub
        self.sub = sub
        self.ip = client_ip(websocket)
        self.key_id: str | None = None   # the key the session authenticated with

    def reply(self, message: dict[str, Any]) -> None:
        self.sub.put(dumps(message))

    def error(self, request_id: object, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        self.reply({"type": "error", "id": request_id, "code": code, "message": message, "details": details or {}})

    async def read_loop(self) -> None:
        limit = self.context.settings.ws_message_bytes_max
        while True:
            text = await receive_text_or_binary(self.websocket)
            request_id: object = None
            try:
                if isinstance(text, str) and (len(text) > limit or len(text.encode()) > limit):
                    raise FeedError("message_too_large", f"message larger than {limit} bytes", {"limit": limit})
                try:
                    message = parse_object(text)
                except FrameError as error:
                    raise FeedError(error.code, error.message) from None
                request_id = message.get("id")
                if not (request_id is None or (isinstance(request_id, int) and not isinstance(request_id, bool))
                        or (isinstance(request_id, str) and len(request_id) <= REQUEST_ID_LEN_MAX)):
                    request_id = None
                    raise FeedError("invalid_request",
                                    f"id must be an integer or a string of at most {REQUEST_ID_LEN_MAX} characters")
                try:
                    check_rate(self.context, None, self.ip)
                except ApiError as error:
                    raise FeedError(error.code, error.message, error.details) from None
                self.handle(message, request_id)
            except FeedError as error:
                self.error(request_id, error.code, error.message, error.details)

    def handle(self, message: dict[str, Any], request_id: object) -> None:
        op = message.get("op")
        if op == "ping":
            self.reply({"type": "pong", "id": request_id, "ts_ns": self.context.clock_ns()})
        elif op == "auth":
            self.authenticate(message, request_id)
        elif op in ("subscribe", "unsubscribe"):
            channels = message.get("channels")
            if not isinstance(channels, list) or not channels:
                raise FeedError("invalid_subscription", "channels must be a non-empty list")
            if len(channels) > self.hub.subscriptions_max:
                raise FeedError("too_many_subscriptions",
                                f"at most {self.hub.subscriptions_max} subscriptions per connection")
            # A channel named twice in one request is one subscription, acknowledged and sent once.
            parsed = list({key: (key, channel, depth) for key, channel, depth
                           in map(self.hub.parse_channel, channels)}.values())
            if op == "subscribe":
                self.subscribe(parsed, request_id)
            else:
                for key, _, _ in parsed:
                    self.hub.unsubscribe(self.sub, key)
                self.reply({"type": "unsubscribed", "id": request_id, "channels": [c for _, c, _ in parsed]})
        else:
            raise FeedError("unknown_op", f"unknown op {op!r}: one of subscribe, unsubscribe, auth, ping",
                            {"ops": ["subscribe", "unsubscribe", "auth", "ping"]})

    def subscribe(self, parsed: list[tuple[Key, dict[str, Any], int | None]], request_id: object) -> None:
        sub, hub = self.sub, self.hub
        new = {key for key, _, _ in parsed} - sub.keys
        if len(sub.keys) + len(new) > hub.subscriptions_max:
            raise FeedError("too_many_subscriptions", f"at most {hub.subscriptions_max} subscriptions per connection",
                            {"subscribed": len(sub.keys), "limit": hub.subscriptions_max})
        if any(key[0] == "private" for key, _, _ in parsed) and sub.account_id is None:
            raise FeedError("auth_required", 'the private channel needs {"op": "auth", ...} first')
        # The ack first, then the snapshots: all in the queue before any later update.
        self.reply({"type": "subscribed", "id": request_id, "channels": [c for _, c, _ in parsed]})
        for key, _, depth in parsed:
            hub.subscribe(sub, key, depth)

    def authenticate(self, message: dict[str, Any], request_id: object) -> None:
        key, timestamp, signature = message.get("key"), message.get("timestamp"), message.get("signature")
        if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in (key, timestamp, signature)):
            raise FeedError(ApiCode.AUTH_MISSING, "auth needs key, timestamp and signature")
        try:
            # The private channel streams the account's orders and fills: a captured auth message must
            # not open it again, so it is accepted once.
            principal = verify_signed(self.context, str(key), str(timestamp), str(signature), "GET", PATH, b"",
                                      ip=self.ip, acting=True)
        except ApiError as error:
            raise FeedError(error.code, error.message, error.details) from None
        if "read" not in principal.scopes:
            raise FeedError(ApiCode.FORBIDDEN_SCOPE, "this API key lacks the 'read' scope")
        if self.sub.account_id is not None and self.sub.account_id != principal.account_id:
            private = ("private", str(self.sub.account_id))
            if private in self.sub.keys:
                self.hub.unsubscribe(self.sub, private)
        self.sub.account_id = principal.account_id
        self.key_id = principal.key_id
        self.reply({"type": "authenticated", "id": request_id, "account_id": principal.account_id})

    async def write_loop(self) -> None:
        """Send what the hub queued: frames in order; with `?batch=1` on the URL, everything queued goes
        out as one frame holding a JSON array of the messages, in order (one send per wakeup instead of
        one per message, which is most of the cost of fan-out; the SDK's MarketFeed asks for it)."""
        sub, websocket = self.sub, self.websocket
        while True:
            text = sub.take(BATCH_MESSAGES_MAX, BATCH_CHARS_MAX)
            if text is None:
                try:
                    async with asyncio.timeout(HEARTBEAT_S):
                        await sub.ready.wait()
                    continue
                except TimeoutError:
                    text = self.hub.heartbeat(sub)
            await websocket.send_text(text)

    def standing(self) -> tuple[str, str] | None:
        """Why an authenticated session may no longer see its account's private channel, or None."""
        if self.sub.account_id is None or self.key_id is None:
            return None
        return lost_standing(self.context.keyring, self.key_id, self.sub.account_id, self.context.replica.engine)

    async def close_for(self, code: str, message: str) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.websocket.send_text(dumps({"type": "error", "id": None, "code": code, "message": message,
                                                      "details": {}}))
                await self.websocket.close(CLOSE_POLICY_VIOLATION, code)

    async def serve(self) -> None:
        reader = asyncio.create_task(self.read_loop())
        writer = asyncio.create_task(self.write_loop())
        slow = asyncio.create_task(self.sub.slow_event.wait())
        # Revocation and the kill switch close an authenticated session within a second.
        watch = asyncio.create_task(watch_standing(self.standing, self.context.settings.session_check_ms,
                                                   self.close_for))
        tasks = {reader, writer, slow, watch}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        if self.sub.slow:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self.websocket.send_text(dumps({
                        "type": "error", "id": None, "code": "slow_consumer",
                        "message": f"more than {self.hub.queue_max} messages waiting: closing (1013), reconnect "
                                   "and resubscribe", "details": {"queue_max": self.hub.queue_max}}))
                    await self.websocket.close(CLOSE_TRY_AGAIN_LATER, "slow_consumer")
        for task in (reader, writer):   # retrieve every outcome (a disconnect is the normal end)
            if task.done() and not task.cancelled():
                error = task.exception()
                if error is not None and not isinstance(error, WebSocketDisconnect | ConnectionError):
                    log.warning("market feed connection failed: %r", error)
