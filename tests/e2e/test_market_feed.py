"""The market-data feed end to end: a real `exchange serve` subprocess, real WebSocket clients on
loopback, a seeded random order flow from several accounts over REST.

- Clients that join before, a third of the way into and two thirds into the flow (and a depth-5 one)
  end with exactly the server's book (GET /v1/series/{symbol}/book), and the first saw every trade.
- A client whose book updates are dropped on purpose (every 7th) detects the gaps, resyncs from fresh
  snapshots and ends with the exact book.
- A slow consumer (subscribes, then reads nothing) is closed as documented (slow_consumer / 1013, or at
  least disconnected) while another client keeps an exact book and orders keep being acknowledged.

Every wait is a poll against a deadline (the machine may be loaded); nothing relies on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from exchange.client import AsyncClient, MarketFeed
from exchange.client.feed import LocalBook, book_channel, trades_channel
from exchange.domain.spec import SeriesSpec
from exchange.testing.api_harness import Credentials, bootstrap
from exchange.testing.server_process import ServerProcess
from tests.e2e.conftest import CASH_MICROS, far_series, price_str

TRADERS = (2, 3, 4, 5, 6, 7)
DEADLINE_S = 60.0          # for any one wait: generous, the machine may be loaded
Level = tuple[Decimal, int, int]


@dataclass
class World:
    server: ServerProcess
    traders: dict[int, Credentials]
    spec: SeriesSpec

    @property
    def url(self) -> str:
        return self.server.base_url

    @property
    def market_url(self) -> str:
        return f"ws://{self.server.host}:{self.server.feed_port}/v1/ws/market"

    def client(self, account_id: int) -> AsyncClient:
        credentials = self.traders[account_id]
        return AsyncClient(self.url, credentials.key_id, credentials.secret, timeout=60.0)

    def gateway(self) -> AsyncClient:
        """The feed gateway's public endpoints (its book carries the feed's book seq)."""
        return AsyncClient(self.server.feed_url, timeout=60.0)


@contextmanager
def running_world(tmp: Path, settings: dict[str, object] | None = None) -> Iterator[World]:
    server = ServerProcess(tmp / "data", settings=settings, feeds=True)
    credentials = bootstrap(server.settings, time.time_ns,
                            deposits_micros=dict.fromkeys(TRADERS, CASH_MICROS),
                            keys=[(a, ["read", "trade"]) for a in TRADERS])
    with server:
        yield World(server, {c.account_id: c for c in credentials}, far_series(1)[0])


# -- the order flow --------------------------------------------------------------------------------

@dataclass
class Flow:
    """A seeded random order flow: each trader's worker places resting limit orders around the
    reference price, cancels its own open ones and sends crossing IOCs, waiting for every answer.
    `done` counts answered commands; `at(n)` is an event set once n commands were answered."""

    world: World
    seed: int
    commands_per_trader: int
    done: int = 0
    latencies_s: list[tuple[float, float]] = field(default_factory=list)   # (sent at, latency)
    _marks: list[tuple[int, asyncio.Event]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.commands_per_trader * len(TRADERS)

    def at(self, count: int) -> asyncio.Event:
        event = asyncio.Event()
        self._marks.append((count, event))
        self._tick()
        return event

    def _tick(self) -> None:
        for count, event in self._marks:
            if self.done >= count:
                event.set()

    async def run(self) -> None:
        await asyncio.gather(*(self._worker(account_id) for account_id in TRADERS))

    async def _worker(self, account_id: int) -> None:
        rng = random.Random(f"{self.seed}-{account_id}")
        spec = self.world.spec
        symbol, ref = spec.symbol, spec.reference_price_ticks
        open_ids: list[str] = []
        async with self.world.client(account_id) as client:
            for _ in range(self.commands_per_trader):
                roll = rng.random()
                side = rng.choice(("buy", "sell"))
                sent = time.monotonic()
                if roll < 0.25 and open_ids:
                    order_id = open_ids.pop(rng.randrange(len(open_ids)))
                    try:
                        await client.cancel_order(order_id=order_id)
                    except Exception as error:   # filled meanwhile: order_not_open
                        assert getattr(error, "code", None) == "order_not_open", error
                elif roll < 0.45:
                    # An IOC through the other side's best levels (buy high, sell low).
                    ticks = ref + rng.randint(0, 4) if side == "buy" else ref - rng.randint(0, 4)
                    await client.place_order(symbol, side, rng.randint(1, 6), price=price_str(spec, ticks),
                                             time_in_force="IOC")
                else:
                    # A resting order on its own side (may cross a little: then it trades too).
                    ticks = ref - rng.randint(0, 7) if side == "buy" else ref + rng.randint(0, 7)
                    order = await client.place_order(symbol, side, rng.randint(1, 5), price=price_str(spec, ticks))
                    if order["status"] == "open":
                        open_ids.append(order["id"])
                self.latencies_s.append((sent, time.monotonic() - sent))
                self.done += 1
                self._tick()


# -- helpers ---------------------------------------------------------------------------------------

def rest_levels(rows: list[list[Any]]) -> list[Level]:
    return [(Decimal(str(price)), int(lots), int(orders)) for price, lots, orders in rows]


async def rest_book(client: AsyncClient, symbol: str, depth: int = 500) -> tuple[int, list[Level], list[Level]]:
    book = await client.order_book(symbol, depth=depth)
    return int(book["book_seq"]), rest_levels(book["bids"]), rest_levels(book["asks"])


async def eventually(check: Callable[[], Awaitable[str | None]], what: str, timeout_s: float = DEADLINE_S) -> None:
    """Poll `check` (None: satisfied, else why not) until it is satisfied; fail with the last reason."""
    deadline = time.monotonic() + timeout_s
    why: str | None = "never checked"
    while time.monotonic() < deadline:
        why = await check()
        if why is None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout_s} s: {why}")


@dataclass
class Consumer:
    """A MarketFeed read in the background; keeps the trades it saw."""

    feed: MarketFeed
    trade_ids: list[int] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def start(self) -> Consumer:
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for message in self.feed:
            if message.get("type") == "trade":
                self.trade_ids.append(int(message["trade_id"]))

    def book(self, symbol: str) -> LocalBook:
        return self.feed.books[symbol]

    async def close(self) -> None:
        await self.feed.close()
        if self.task is not None:
            await asyncio.wait([self.task], timeout=10)
            if not self.task.done():
                self.task.cancel()
            elif self.task.exception() is not None:
                raise self.task.exception()  # type: ignore[misc]


async def join(world: World, depth: int | None = None, **options: Any) -> Consumer:
    symbol = world.spec.symbol
    feed = await MarketFeed.connect(world.server.feed_url, [book_channel(symbol, depth), trades_channel(symbol)],
                                    backoff_initial_s=0.1, backoff_max_s=1.0, **options)
    return Consumer(feed).start()


async def assert_exact_full_book(client: AsyncClient, consumer: Consumer, symbol: str, name: str) -> None:
    """Wait until the client's book seq is the server's book seq, then compare every level."""
    async def caught_up() -> str | None:
        book = consumer.book(symbol)
        seq, _, _ = await rest_book(client, symbol, depth=1)
        if consumer.task is not None and consumer.task.done():
            return f"{name}: the reader stopped ({consumer.task})"
        return None if book.synced and book.seq == seq else f"{name}: synced {book.synced}, seq {book.seq} != {seq}"

    await eventually(caught_up, f"{name} at the server's book seq")
    seq, bids, asks = await rest_book(client, symbol)
    book = consumer.book(symbol)
    assert book.seq == seq, f"{name}: the flow has stopped, yet the book seq moved"
    assert book.levels() == (bids, asks), f"{name}: the local book differs from the server's"


async def assert_exact_top(client: AsyncClient, consumer: Consumer, symbol: str, depth: int, name: str) -> None:
    """A depth-limited book gets updates only when its top N changes: wait until it shows the top N."""
    async def same_top() -> str | None:
        _, bids, asks = await rest_book(client, symbol, depth=depth)
        book = consumer.book(symbol)
        held = (book.top_bids(), book.top_asks())
        return None if book.synced and held == (bids, asks) else f"{name}: {held} != {(bids, asks)}"

    await eventually(same_top, f"{name} showing the server's top {depth}")
    book = consumer.book(symbol)
    assert len(book.bids) <= depth and len(book.asks) <= depth


async def all_trade_ids(client: AsyncClient, symbol: str) -> list[int]:
    ids: list[int] = []
    cursor: str | None = None
    while True:
        page = await client.trades(symbol, limit=500, cursor=cursor)
        ids.extend(int(t["trade_id"]) for t in page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return ids[::-1]   # the API pages newest first: oldest first, as the feed sent them


# -- the tests -------------------------------------------------------------------------------------

def test_clients_joining_at_different_times_end_with_the_exact_book(tmp_path: Path) -> None:
    with running_world(tmp_path) as world:
        symbol = world.spec.symbol

        async def scenario() -> None:
            flow = Flow(world, seed=5, commands_per_trader=80)      # 480 commands
            third, two_thirds = flow.at(flow.total // 3), flow.at(2 * flow.total // 3)
            early = await join(world)
            flow_task = asyncio.create_task(flow.run())
            consumers = {"early": early}
            try:
                await asyncio.wait_for(third.wait(), DEADLINE_S)
                consumers["third"] = await join(world)
                await asyncio.wait_for(two_thirds.wait(), DEADLINE_S)
                consumers["two_thirds"] = await join(world)
                consumers["depth5"] = await join(world, depth=5)
                await asyncio.wait_for(flow_task, 4 * DEADLINE_S)
                assert flow.done == flow.total
                async with world.client(TRADERS[0]) as trader, world.gateway() as client:
                    for name, consumer in consumers.items():
                        if name == "depth5":
                            await assert_exact_top(client, consumer, symbol, 5, name)
                        else:
                            await assert_exact_full_book(client, consumer, symbol, name)
                    _, bids, asks = await rest_book(client, symbol)
                    assert bids and asks, "the flow should leave a two-sided book"
                    trades = await all_trade_ids(trader, symbol)
                    assert trades, "the flow should trade"
                    await eventually(lambda: _noted(early, trades), "every trade on the early client")
                    assert early.trade_ids == trades, "the early client saw every trade once, in order"
                for name, consumer in consumers.items():
                    assert consumer.feed.resyncs == 0 and consumer.feed.reconnects == 0, name
            finally:
                flow_task.cancel()
                for consumer in consumers.values():
                    await consumer.close()

        asyncio.run(scenario())


async def _noted(consumer: Consumer, trades: list[int]) -> str | None:
    return None if len(consumer.trade_ids) >= len(trades) else f"{len(consumer.trade_ids)} of {len(trades)}"


def test_a_client_losing_frames_detects_the_gaps_and_recovers_the_exact_book(tmp_path: Path) -> None:
    with running_world(tmp_path) as world:
        symbol = world.spec.symbol

        async def scenario() -> None:
            updates = 0

            def every_7th_update(message: dict[str, Any]) -> bool:
                nonlocal updates
                if message.get("type") != "book_update":
                    return False
                updates += 1
                return updates % 7 == 0

            lossy = await join(world, drop_filter=every_7th_update)
            faithful = await join(world)
            flow = Flow(world, seed=7, commands_per_trader=50)      # 300 commands
            try:
                await asyncio.wait_for(flow.run(), 4 * DEADLINE_S)
                assert lossy.feed.dropped > 0
                async with world.gateway() as client:
                    # The last update may be the dropped one: the heartbeat (every 5 s on an idle
                    # connection) then announces the later seq and the client resyncs.
                    await assert_exact_full_book(client, faithful, symbol, "faithful")
                    await assert_exact_full_book(client, lossy, symbol, "lossy")
                assert lossy.feed.resyncs > 0, "the dropped frames went unnoticed"
                assert lossy.feed.reconnects == 0
                assert faithful.feed.resyncs == 0
            finally:
                await lossy.close()
                await faithful.close()

        asyncio.run(scenario())


SLOW_QUEUE_MESSAGES = 32


async def open_silent(world: World) -> ClientConnection:
    """A raw WebSocket that subscribes to the book and trades and then reads nothing: a tiny receive
    buffer (no autotuning) and a one-frame client queue, so what the server sends piles up on its side."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)   # before connect: a small window
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (world.server.host, world.server.feed_port))
    ws = await connect(world.market_url, sock=sock, max_queue=1, open_timeout=DEADLINE_S)
    symbol = world.spec.symbol
    await ws.send(json.dumps({"op": "subscribe", "id": 1, "channels": [book_channel(symbol),
                                                                       trades_channel(symbol)]}))
    return ws


async def market_connections(http: httpx.AsyncClient) -> int:
    """The feed gateway's count of open market-feed WebSockets (GET /metrics)."""
    response = await http.get("/metrics")
    for line in response.text.splitlines():
        if line.startswith("exchange_feed_connections "):
            return int(float(line.split()[-1]))
    return 0


async def how_it_ended(ws: ClientConnection) -> tuple[bool, int | None]:
    """Read what the silent client was sent until the connection ends: (whether a slow_consumer error
    came, the close code; None if the connection was cut without one)."""
    told = False
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(DEADLINE_S):
            async for raw in ws:
                message = json.loads(raw)
                if message.get("type") == "error" and message.get("code") == "slow_consumer":
                    told = True
    return told, ws.close_code


def test_a_slow_consumer_is_disconnected_and_nobody_else_is_affected(tmp_path: Path) -> None:
    with running_world(tmp_path, {"feed_queue_messages_max": SLOW_QUEUE_MESSAGES}) as world:
        symbol = world.spec.symbol

        async def scenario() -> None:
            watcher = await join(world)
            before = Flow(world, seed=11, commands_per_trader=15)      # order latency, no slow consumer
            await asyncio.wait_for(before.run(), 4 * DEADLINE_S)
            silent = await open_silent(world)
            flows: list[Flow] = []
            try:
                async with world.gateway() as client, \
                        httpx.AsyncClient(base_url=world.server.feed_url, timeout=60.0) as http:
                    async def silent_counted() -> str | None:
                        n = await market_connections(http)
                        return None if n == 2 else f"{n} market connections"

                    await eventually(silent_counted, "the silent client connected")
                    # Order flow until the server has let the silent client go (its queue overflowed:
                    # slow_consumer / 1013; or the transport's keepalive gave up on it: it reads nothing).
                    deadline = time.monotonic() + 3 * DEADLINE_S
                    while await market_connections(http) > 1:
                        assert time.monotonic() < deadline, "the silent client was never disconnected"
                        flows.append(Flow(world, seed=100 + len(flows), commands_per_trader=10))
                        await asyncio.wait_for(flows[-1].run(), 4 * DEADLINE_S)
                    told, code = await how_it_ended(silent)
                    assert code in (1013, 1011, 1006, None), f"closed with {code}"
                    assert told or code != 1013, "a 1013 close comes after the slow_consumer error"
                    await assert_exact_full_book(client, watcher, symbol, "watcher")
                    assert await market_connections(http) == 1
                assert watcher.feed.resyncs == 0 and watcher.feed.reconnects == 0
                base = statistics.median(latency for _, latency in before.latencies_s)
                during = statistics.median(latency for flow in flows for _, latency in flow.latencies_s)
                assert during <= max(5 * base, 0.25), f"order latency {during:.3f} s vs {base:.3f} s before"
            finally:
                await silent.close()
                await watcher.close()

        asyncio.run(scenario())
