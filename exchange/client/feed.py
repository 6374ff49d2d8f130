"""Market data over the WebSocket feed (GET /v1/ws/market), with a local order book per series.

    feed = await MarketFeed.connect("http://127.0.0.1:8001", [book_channel("H100-M40-Z26"),
                                                              trades_channel("H100-M40-Z26")])
    async with feed:
        async for message in feed:
            book = feed.books["H100-M40-Z26"]
            if book.synced:
                print(book.best_bid(), book.best_ask(), message["type"])

`MarketFeed` keeps a `LocalBook` for every subscribed `book` channel: a snapshot, then updates with
absolute sizes, each proving continuity with `prev_seq == seq of the previous message`. A break in the
chain (a lost frame, or a heartbeat announcing a later seq) is a gap: the book is marked unsynced and
the feed resubscribes its book channel (unsubscribe, subscribe), which makes the server send a fresh
snapshot; updates that arrive meanwhile are ignored. `resyncs` counts these recoveries.

When the connection drops (server restart, slow-consumer close 1013, network) the feed reconnects with
exponential backoff and jitter (`backoff_initial_s` doubling up to `backoff_max_s`, each wait drawn in
[d/2, d]) and subscribes everything again; every book gets a fresh snapshot. Besides the server's
messages, iteration yields two client-side ones: {"type": "resync", "symbol", "expected_prev_seq",
"prev_seq"} when a gap is detected and {"type": "reconnected", "attempt"} after a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from exchange.client.errors import NetworkError, SubscriptionError
from exchange.client.signer import Signer

MARKET_PATH = "/v1/ws/market"

# Errors that no amount of waiting repairs: iterating the feed raises SubscriptionError on them (other
# errors, such as rate_limited, are yielded as messages and the feed goes on).
FATAL_FEED_ERRORS = frozenset({"unknown_series", "unknown_channel", "unknown_product", "invalid_subscription",
                               "too_many_subscriptions", "auth_required", "forbidden_scope", "auth_key_revoked",
                               "account_disabled", "auth_unknown_key", "auth_bad_signature", "auth_replayed"})


JSON = dict[str, Any]
Level = tuple[Decimal, int, int]  # (price, lots, orders)


class GapDetected(Exception):
    """A book update does not follow the book's last sequence number: messages were lost."""

    def __init__(self, symbol: str, expected_prev_seq: int | None, prev_seq: object) -> None:
        super().__init__(f"{symbol}: gap in the book feed (expected prev_seq {expected_prev_seq}, got {prev_seq})")
        self.symbol = symbol
        self.expected_prev_seq = expected_prev_seq
        self.prev_seq = prev_seq


def market_url(url: str) -> str:
    """The market-data WebSocket URL for `url`: an http(s) base URL becomes ws(s), and a URL without a
    path gets /v1/ws/market."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"not a WebSocket or HTTP URL: {url!r}")
    path = parts.path if parts.path not in ("", "/") else MARKET_PATH
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


# -- channels -------------------------------------------------------------------------------------


def book_channel(symbol: str, depth: int | None = None) -> JSON:
    return {"channel": "book", "symbol": symbol} if depth is None else \
        {"channel": "book", "symbol": symbol, "depth": depth}


def trades_channel(symbol: str) -> JSON:
    return {"channel": "trades", "symbol": symbol}


def ticker_channel(symbol: str) -> JSON:
    return {"channel": "ticker", "symbol": symbol}


def candles_channel(symbol: str, interval: str = "1m") -> JSON:
    return {"channel": "candles", "symbol": symbol, "interval": interval}


def index_channel(product: str) -> JSON:
    return {"channel": "index", "product": product}


def settlement_channel() -> JSON:
    return {"channel": "settlement"}


def channel_key(channel: Mapping[str, Any]) -> tuple[str, str, str]:
    """Identity of a subscription: (channel, symbol or product, interval)."""
    return (str(channel.get("channel", "")), str(channel.get("symbol", channel.get("product", ""))),
            str(channel.get("interval", "")))


# -- the local book -------------------------------------------------------------------------------


@dataclass
class LocalBook:
    """One series' level-2 book as the feed describes it: price -> (lots, orders) per side."""

    symbol: str
    bids: dict[Decimal, tuple[int, int]] = field(default_factory=dict)
    asks: dict[Decimal, tuple[int, int]] = field(default_factory=dict)
    seq: int | None = None
    synced: bool = False
    """True from a snapshot until a gap or a lost connection (updates are then not applied)."""

    def apply_snapshot(self, message: Mapping[str, Any]) -> None:
        self.bids = _levels(message.get("bids"))
        self.asks = _levels(message.get("asks"))
        self.seq = int(message["seq"])
        self.synced = True

    def apply_update(self, message: Mapping[str, Any]) -> None:
        """Apply an update (absolute sizes, 0 lots removes the level); raises GapDetected (and marks
        the book unsynced) unless its prev_seq is the book's seq."""
        prev_seq = message.get("prev_seq")
        if not self.synced or self.seq is None or prev_seq != self.seq:
            expected = self.seq if self.synced else None
            self.synced = False
            raise GapDetected(self.symbol, expected, prev_seq)
        for side, changes in ((self.bids, message.get("bids")), (self.asks, message.get("asks"))):
            for price, (lots, orders) in _levels(changes, keep_empty=True).items():
                if lots == 0:
                    side.pop(price, None)
                else:
                    side[price] = (lots, orders)
        self.seq = int(message["seq"])

    def invalidate(self) -> None:
        self.synced = False

    def top_bids(self, depth: int | None = None) -> list[Level]:
        """Bids best (highest) first."""
        return [(p, *self.bids[p]) for p in sorted(self.bids, reverse=True)[:depth]]

    def top_asks(self, depth: int | None = None) -> list[Level]:
        """Asks best (lowest) first."""
        return [(p, *self.asks[p]) for p in sorted(self.asks)[:depth]]

    def best_bid(self) -> Decimal | None:
        return max(self.bids) if self.bids else None

    def best_ask(self) -> Decimal | None:
        return min(self.asks) if self.asks else None

    def levels(self) -> tuple[list[Level], list[Level]]:
        """(bids best first, asks best first): compare with the server's book."""
        return self.top_bids(), self.top_asks()


def _levels(rows: object, keep_empty: bool = False) -> dict[Decimal, tuple[int, int]]:
    out: dict[Decimal, tuple[int, int]] = {}
    if not isinstance(rows, list):
        return out
    for row in rows:
        price, lots = Decimal(str(row[0])), int(row[1])
        orders = int(row[2]) if len(row) > 2 else 0
        if lots or keep_empty:
            out[price] = (lots, orders)
    return out


# -- the feed -------------------------------------------------------------------------------------


Sleep = Callable[[float], Awaitable[None]]


class MarketFeed:
    """A market-data WebSocket that keeps books, resyncs gaps and reconnects. Create it with
    `await MarketFeed.connect(url, channels)` (or construct it and `await feed.open()`); iterate it
    for messages; `close()` (or `async with feed:`) ends the iteration.

    `drop_filter(message) -> True` drops an incoming message as if it were lost (for tests).
    `max_reconnects` bounds consecutive failed reconnection attempts (None: forever), after which the
    iteration raises NetworkError. `sleep` and `random` are injectable for tests."""

    def __init__(self, url: str, channels: Iterable[Mapping[str, Any]] = (), *,
                 key_id: str | None = None, secret: str | None = None,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0, max_reconnects: int | None = None,
                 open_timeout_s: float | None = 10.0, drop_filter: Callable[[JSON], bool] | None = None,
                 sleep: Sleep = asyncio.sleep, random: Callable[[], float] = random.random) -> None:
        self.url = market_url(url)
        self._signer = Signer(key_id, secret) if key_id is not None and secret is not None else None
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_reconnects = max_reconnects
        self.open_timeout_s = open_timeout_s
        self.drop_filter = drop_filter
        self._sleep = sleep
        self._random = random
        self._channels: dict[tuple[str, str, str], JSON] = {}
        self.books: dict[str, LocalBook] = {}
        self.resyncs = 0
        """Gaps detected (each answered by resubscribing the book)."""
        self.reconnects = 0
        """Successful reconnections after a lost connection."""
        self.dropped = 0
        """Messages dropped by `drop_filter`."""
        self.last_error: JSON | None = None
        """The last {"type": "error"} message from the server."""
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._attempt = 0        # consecutive failed (re)connection attempts
        self._lost = False       # a connection was lost: the next open is a reconnection
        self._closed = False
        self._out: deque[JSON] = deque()
        for channel in channels:
            self._add(channel)

    @classmethod
    async def connect(cls, url: str, channels: Iterable[Mapping[str, Any]] = (), **options: Any) -> MarketFeed:
        """Open the feed and subscribe `channels`; raises NetworkError when the server cannot be
        reached (later losses are reconnected automatically)."""
        feed = cls(url, channels, **options)
        await feed.open()
        return feed

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def channels(self) -> list[JSON]:
        return list(self._channels.values())

    async def open(self) -> None:
        """Connect once and subscribe every channel; NetworkError if the server cannot be reached."""
        url = self.url
        try:
            # batch=1: the server may put several messages in one frame (a JSON array), in order.
            ws = await connect(url + ("&" if "?" in url else "?") + "batch=1", open_timeout=self.open_timeout_s,
                               max_size=2**24)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as error:
            raise NetworkError(0, "network_error", f"cannot open {url}: {type(error).__name__}: {error}",
                               maybe_sent=False) from error
        self._ws = ws
        for book in self.books.values():
            book.invalidate()
        try:
            if self._signer is not None:
                ts = self._signer.timestamp()
                await self._send({"op": "auth", "key": self._signer.key_id, "timestamp": ts,
                                  "signature": self._signer.signature(ts, "GET", MARKET_PATH, b"")})
            if self._channels:
                await self._send({"op": "subscribe", "id": next(self._ids), "channels": self.channels})
        except ConnectionClosed:
            self._ws = None
            raise NetworkError(0, "connection_closed", "connection closed while subscribing") from None

    async def subscribe(self, channels: Iterable[Mapping[str, Any]]) -> None:
        """Subscribe more channels (remembered: resubscribed on every reconnect)."""
        added = [self._add(channel) for channel in channels]
        if added and self._ws is not None:
            await self._send_quietly({"op": "subscribe", "id": next(self._ids), "channels": added})

    async def unsubscribe(self, channels: Iterable[Mapping[str, Any]]) -> None:
        removed: list[JSON] = []
        for channel in channels:
            known = self._channels.pop(channel_key(channel), None)
            if known is not None:
                removed.append(known)
                if known["channel"] == "book":
                    self.books.pop(str(known["symbol"]), None)
        if removed and self._ws is not None:
            await self._send_quietly({"op": "unsubscribe", "id": next(self._ids), "channels": removed})

    def _add(self, channel: Mapping[str, Any]) -> JSON:
        copy = dict(channel)
        self._channels[channel_key(copy)] = copy
        if copy.get("channel") == "book":
            symbol = str(copy["symbol"])
            self.books.setdefault(symbol, LocalBook(symbol))
        return copy

    async def _send(self, message: JSON) -> None:
        assert self._ws is not None
        await self._ws.send(json.dumps(message, separators=(",", ":")))

    async def _send_quietly(self, message: JSON) -> None:
        """Send; a lost connection is noticed (and repaired) by the reader."""
        with contextlib.suppress(ConnectionClosed):
            await self._send(message)

    # -- reading ----------------------------------------------------------------------------
    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> JSON:
        while True:
            if self._out:
                return self._out.popleft()
            if self._closed:
                raise StopAsyncIteration
            ws = self._ws
            if ws is None:
                await self._reconnect()
                continue
            try:
                raw = await ws.recv()
            except ConnectionClosed:
                self._ws = None
                if self._closed:
                    raise StopAsyncIteration from None
                self._lost = True
                for book in self.books.values():
                    book.invalidate()
                continue
            for message in _messages(raw):
                if self.drop_filter is not None and self.drop_filter(message):
                    self.dropped += 1
                    continue
                self._attempt = 0
                if await self._handle(message):
                    self._out.append(message)

    async def _reconnect(self) -> None:
        while not self._closed:
            if self.max_reconnects is not None and self._attempt >= self.max_reconnects:
                self._closed = True
                raise NetworkError(0, "network_error", f"gave up reconnecting to {self.url} after "
                                   f"{self._attempt} attempts")
            await self._sleep(self.backoff_s(self._attempt))
            self._attempt += 1
            if self._closed:
                return
            try:
                await self.open()
            except NetworkError:
                continue
            self.reconnects += 1
            self._out.append({"type": "reconnected", "attempt": self._attempt})
            return

    def backoff_s(self, attempt: int) -> float:
        """The wait before reconnection attempt `attempt` (0-based): d = initial x 2^attempt capped at
        the maximum, jittered uniformly into [d/2, d]."""
        ceiling: float = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** min(attempt, 30))
        return ceiling / 2 + self._random() * ceiling / 2

    async def _handle(self, message: JSON) -> bool:
        """Update the books; whether to yield the message."""
        kind = message.get("type")
        if kind == "book_snapshot":
            book = self.books.get(str(message.get("symbol")))
            if book is not None:
                book.apply_snapshot(message)
        elif kind == "book_update":
            book = self.books.get(str(message.get("symbol")))
            if book is None:
                return True
            if not book.synced:
                return False  # waiting for the (fresh) snapshot
            try:
                book.apply_update(message)
            except GapDetected as gap:
                await self._resync(book, gap)
                return False
        elif kind == "heartbeat":
            seqs = message.get("seqs")
            if isinstance(seqs, dict):
                for book in list(self.books.values()):
                    announced = seqs.get(f"book:{book.symbol}")
                    if book.synced and book.seq is not None and isinstance(announced, int) and announced > book.seq:
                        book.invalidate()
                        await self._resync(book, GapDetected(book.symbol, book.seq, announced))
        elif kind == "error":
            self.last_error = message
            code = str(message.get("code"))
            if code in FATAL_FEED_ERRORS:
                raise SubscriptionError(0, code, str(message.get("message")), message.get("details") or {})
        return True

    async def _resync(self, book: LocalBook, gap: GapDetected) -> None:
        self.resyncs += 1
        self._out.append({"type": "resync", "symbol": book.symbol, "expected_prev_seq": gap.expected_prev_seq,
                          "prev_seq": gap.prev_seq})
        channel = self._channels.get(("book", book.symbol, ""))
        if channel is None or self._ws is None:
            return
        await self._send_quietly({"op": "unsubscribe", "id": next(self._ids), "channels": [channel]})
        await self._send_quietly({"op": "subscribe", "id": next(self._ids), "channels": [channel]})

    async def close(self) -> None:
        """Close the connection; the iteration ends."""
        self._closed = True
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


def _messages(raw: str | bytes) -> list[JSON]:
    """The messages of one frame: a JSON object, or (batched) an array of them; anything else: none."""
    try:
        decoded = json.loads(raw)
    except ValueError:
        return []
    if isinstance(decoded, dict):
        return [decoded]
    if isinstance(decoded, list):
        return [m for m in decoded if isinstance(m, dict)]
    return []
