"""The market-data feed client against a small fake feed server on loopback: the local book follows
snapshot + updates exactly, a lost frame is detected and recovered from a fresh snapshot, and a
dropped connection is reconnected with backoff and everything resubscribed."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from exchange.client import GapDetected, LocalBook, MarketFeed, NetworkError
from exchange.client.feed import book_channel, market_url, trades_channel

S = "H100-M40-261203"
Json = dict[str, Any]


@dataclass
class FakeMarket:
    """One series' book and the feed protocol's book channel: snapshot on subscribe, then updates
    with absolute sizes and seq / prev_seq."""

    bids: dict[str, tuple[int, int]] = field(default_factory=dict)
    asks: dict[str, tuple[int, int]] = field(default_factory=dict)
    seq: int = 0
    received: list[Json] = field(default_factory=list)
    connections: int = 0
    subscribers: dict[ServerConnection, set[str]] = field(default_factory=dict)

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None and ws.request.path == "/v1/ws/market?batch=1"
        self.connections += 1
        self.subscribers[ws] = set()
        try:
            async for raw in ws:
                message = json.loads(raw)
                self.received.append(message)
                books = {c["symbol"] for c in message.get("channels", []) if c["channel"] == "book"}
                if message["op"] == "subscribe":
                    await ws.send(json.dumps({"type": "subscribed", "id": message["id"],
                                              "channels": message["channels"]}))
                    for _ in books:
                        await ws.send(json.dumps({"type": "book_snapshot", "symbol": S, "seq": self.seq,
                                                  "bids": self._rows(self.bids), "asks": self._rows(self.asks)}))
                    self.subscribers[ws] |= books
                elif message["op"] == "unsubscribe":
                    self.subscribers[ws] -= books
                    await ws.send(json.dumps({"type": "unsubscribed", "id": message["id"],
                                              "channels": message["channels"]}))
        finally:
            del self.subscribers[ws]

    @staticmethod
    def _rows(side: dict[str, tuple[int, int]]) -> list[list[Any]]:
        return [[price, lots, orders] for price, (lots, orders) in side.items()]

    async def change(self, side: str, price: str, lots: int, orders: int = 1) -> None:
        """Set one level (0 lots removes it) and publish the update."""
        levels = self.bids if side == "bid" else self.asks
        if lots:
            levels[price] = (lots, orders)
        else:
            levels.pop(price, None)
        self.seq += 1
        row = [[price, lots, orders]]
        await self.broadcast({"type": "book_update", "symbol": S, "seq": self.seq, "prev_seq": self.seq - 1,
                              "bids": row if side == "bid" else [], "asks": row if side == "ask" else []})

    async def broadcast(self, message: Json) -> None:
        for ws, books in list(self.subscribers.items()):
            if S in books:
                await ws.send(json.dumps(message))

    def expected(self) -> tuple[list[tuple[Decimal, int, int]], list[tuple[Decimal, int, int]]]:
        book = LocalBook(S)
        book.apply_snapshot({"seq": 0, "bids": self._rows(self.bids), "asks": self._rows(self.asks)})
        return book.levels()

    def ops(self) -> list[str]:
        return [m["op"] for m in self.received]


@asynccontextmanager
async def fake_market(market: FakeMarket) -> AsyncIterator[str]:
    async with serve(market.handle, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"http://127.0.0.1:{port}"


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.002)


@asynccontextmanager
async def consuming(feed: MarketFeed) -> AsyncIterator[list[Json]]:
    """Iterate the feed in the background, collecting what it yields."""
    seen: list[Json] = []

    async def run() -> None:
        async for message in feed:
            seen.append(message)

    task = asyncio.create_task(run())
    try:
        yield seen
    finally:
        await feed.close()
        await asyncio.wait_for(task, 5)


@dataclass
class Sleeps:
    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


async def publish_some(market: FakeMarket, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        side = "bid" if i % 2 == 0 else "ask"
        price = f"{2 + (i % 5) / 100:.2f}" if side == "bid" else f"{3 + (i % 5) / 100:.2f}"
        await market.change(side, price, 0 if i % 7 == 6 else 1 + i % 4, 1 + i % 3)


def in_sync(feed: MarketFeed, market: FakeMarket) -> Callable[[], bool]:
    return lambda: feed.books[S].synced and feed.books[S].seq == market.seq


# -- the local book ---------------------------------------------------------------------------------


def test_local_book_applies_absolute_sizes_and_refuses_a_gap() -> None:
    book = LocalBook(S)
    with pytest.raises(GapDetected):  # no snapshot yet
        book.apply_update({"seq": 1, "prev_seq": 0, "bids": []})
    book.apply_snapshot({"seq": 10, "bids": [["2.50", 3, 1], ["2.49", 5, 2]], "asks": [["2.52", 4, 1]]})
    book.apply_update({"seq": 11, "prev_seq": 10, "bids": [["2.50", 0, 0], ["2.51", 1, 1]],
                       "asks": [["2.52", 7, 2]]})
    assert book.top_bids() == [(Decimal("2.51"), 1, 1), (Decimal("2.49"), 5, 2)]
    assert book.top_asks(1) == [(Decimal("2.52"), 7, 2)]
    assert (book.best_bid(), book.best_ask(), book.seq, book.synced) == (Decimal("2.51"), Decimal("2.52"), 11, True)
    with pytest.raises(GapDetected) as gap:
        book.apply_update({"seq": 13, "prev_seq": 12, "bids": [["2.40", 1, 1]]})
    assert (gap.value.expected_prev_seq, gap.value.prev_seq, book.synced) == (11, 12, False)
    assert Decimal("2.40") not in book.bids


def test_market_url() -> None:
    assert market_url("http://127.0.0.1:8000") == "ws://127.0.0.1:8000/v1/ws/market"
    assert market_url("https://x.test/") == "wss://x.test/v1/ws/market"
    assert market_url("ws://x.test/feed") == "ws://x.test/feed"
    with pytest.raises(ValueError):
        market_url("ftp://x")


# -- against the fake server ------------------------------------------------------------------------


def test_snapshot_then_updates_keep_the_book_exact() -> None:
    market = FakeMarket()

    async def main() -> list[Json]:
        await publish_some(market, 5)  # history before the client joins: comes in the snapshot
        async with fake_market(market) as url:
            feed = await MarketFeed.connect(url, [book_channel(S, depth=50), trades_channel(S)])
            async with consuming(feed) as seen:
                await until(lambda: feed.books[S].synced)
                await publish_some(market, 40, start=5)
                await until(in_sync(feed, market))
                assert feed.books[S].levels() == market.expected()
                assert feed.resyncs == 0
                return seen

    seen = asyncio.run(main())
    assert market.received[0] == {"op": "subscribe", "id": 1, "channels": [
        {"channel": "book", "symbol": S, "depth": 50}, {"channel": "trades", "symbol": S}]}
    kinds = [m["type"] for m in seen]
    assert kinds[:2] == ["subscribed", "book_snapshot"] and kinds.count("book_update") == 40


def test_a_lost_frame_is_detected_and_the_book_recovers_from_a_fresh_snapshot() -> None:
    market = FakeMarket()
    dropped: list[int] = []

    def drop(message: Json) -> bool:  # lose update seq 7, once
        if message.get("type") == "book_update" and message["seq"] == 7 and not dropped:
            dropped.append(7)
            return True
        return False

    async def main() -> list[Json]:
        async with fake_market(market) as url:
            feed = await MarketFeed.connect(url, [book_channel(S)], drop_filter=drop)
            async with consuming(feed) as seen:
                await until(lambda: feed.books[S].synced)
                await publish_some(market, 20)
                await until(lambda: feed.resyncs == 1 and in_sync(feed, market)())
                await publish_some(market, 10, start=20)
                await until(in_sync(feed, market))
                assert feed.books[S].levels() == market.expected()
                assert (feed.resyncs, feed.dropped) == (1, 1)
                return seen

    seen = asyncio.run(main())
    assert market.ops() == ["subscribe", "unsubscribe", "subscribe"]
    assert market.received[1]["channels"] == [{"channel": "book", "symbol": S}]
    assert [m for m in seen if m["type"] == "resync"] == [
        {"type": "resync", "symbol": S, "expected_prev_seq": 6, "prev_seq": 7}]


def test_a_heartbeat_announcing_a_later_seq_is_a_gap() -> None:
    market = FakeMarket()

    async def main() -> None:
        async with fake_market(market) as url:
            feed = await MarketFeed.connect(url, [book_channel(S)],
                                            drop_filter=lambda m: m.get("type") == "book_update" and m["seq"] == 3)
            async with consuming(feed):
                await until(lambda: feed.books[S].synced)
                await publish_some(market, 3)  # the last one is lost: nothing follows to reveal it ...
                await until(lambda: feed.dropped == 1)
                assert feed.books[S].synced and feed.books[S].seq == 2
                await market.broadcast({"type": "heartbeat", "ts_ns": 1, "seqs": {f"book:{S}": 3}})  # ... but this
                await until(lambda: feed.resyncs == 1 and in_sync(feed, market)())
                assert feed.books[S].levels() == market.expected()

    asyncio.run(main())


def test_a_dropped_connection_is_reconnected_and_everything_resubscribed() -> None:
    market = FakeMarket()
    sleeps = Sleeps()

    async def main() -> list[Json]:
        async with fake_market(market) as url:
            feed = await MarketFeed.connect(url, [book_channel(S), trades_channel(S)], sleep=sleeps,
                                            random=lambda: 1.0, backoff_initial_s=0.25)
            async with consuming(feed) as seen:
                await until(lambda: feed.books[S].synced)
                await publish_some(market, 10)
                await until(in_sync(feed, market))
                for ws in list(market.subscribers):
                    await ws.close(1013, "slow consumer")
                await publish_some(market, 10, start=10)  # missed while disconnected: in the new snapshot
                await until(lambda: feed.reconnects == 1 and in_sync(feed, market)())
                await publish_some(market, 10, start=20)
                await until(in_sync(feed, market))
                assert feed.books[S].levels() == market.expected()
                return seen

    seen = asyncio.run(main())
    assert market.connections == 2
    assert market.ops() == ["subscribe", "subscribe"]
    assert market.received[0]["channels"] == market.received[1]["channels"]
    assert sleeps.waits == [0.25]
    assert {"type": "reconnected", "attempt": 1} in seen


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_reconnection_backs_off_exponentially_with_jitter_then_gives_up() -> None:
    sleeps = Sleeps()
    draws = iter([0.0, 1.0, 0.5, 0.0, 0.0, 0.0])
    feed = MarketFeed(f"http://127.0.0.1:{_closed_port()}", [book_channel(S)], sleep=sleeps,
                      random=lambda: next(draws), backoff_initial_s=1.0, backoff_max_s=6.0, max_reconnects=5)

    async def main() -> None:
        with pytest.raises(NetworkError, match="after 5 attempts"):
            async for _ in feed:
                pass

    asyncio.run(main())
    # ceilings 1, 2, 4, 6 (capped), 6; each wait in [ceiling/2, ceiling]
    assert sleeps.waits == [0.5, 2.0, 3.0, 3.0, 3.0]


def test_connect_to_nothing_is_a_network_error() -> None:
    async def main() -> None:
        with pytest.raises(NetworkError) as caught:
            await MarketFeed.connect(f"ws://127.0.0.1:{_closed_port()}", [book_channel(S)])
        assert caught.value.maybe_sent is False

    asyncio.run(main())


def test_the_watch_screen_renders_the_local_book_and_the_tape() -> None:
    from rich.console import Console

    from exchange.watch_cli import WatchView

    view = WatchView(S, "http://127.0.0.1:8000")
    view.book.apply_snapshot({"seq": 4, "bids": [["2.50", 3, 1]], "asks": [["2.52", 4, 2]]})
    view.consume({"type": "book_snapshot"})
    view.consume({"type": "trade", "symbol": S, "price": "2.51", "amount": 7, "side": "buy", "ts_ns": 10**18})
    console = Console(width=140, record=True)
    console.print(view.render())
    text = console.export_text()
    assert "2.50" in text and "2.52" in text and "2.51" in text and "book seq 4" in text
