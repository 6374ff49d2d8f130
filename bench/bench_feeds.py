"""Market-data fan-out benchmark: N WebSocket subscribers to one series' book and trades channels of a
real `exchange serve` process, under order flow entered over an `OrderSession`.

    python bench/bench_feeds.py [--subscribers N] [--seconds S] [--rate R] [--window W] [--quick]
                                [--client-procs P] [--dir PATH] [--no-uvloop]

The server is the production one (`exchange serve --no-demo`: uvicorn, the durable service with its
journal fsyncs, the feed hub fed by every committed batch) on a free loopback port over a data directory
bootstrapped here (one listed series, funded accounts, API keys). Only the rate limits and the
WebSocket in-flight cap are raised (`ServerProcess` defaults). The hub allows at most
`CONNECTIONS_PER_IP_MAX` (50) market-feed connections per client IP and that limit is not a setting,
so the subscribers connect from several loopback source addresses (127.0.0.2, 127.0.0.3, ...: all of
127/8 is loopback on Linux), `--per-ip` connections each.

Subscribers: `--subscribers` raw `websockets` connections (no compression) in `--client-procs` separate
client processes (asyncio/uvloop, one task per connection), each subscribing to
{"channel": "book", "symbol": S} (full depth) and {"channel": "trades", "symbol": S}. On every frame
the receiving task reads time.time_ns() first; for a trade it takes the message's `ts_ns` (the
sequencer's time for the command that made the trade, the server's time.time_ns(): same machine, same
clock) and records the difference: the latency from the engine event to the client receiving it,
including the journal commit (fsync) before the hub publishes, the hub's fan-out, the server's send
queue, TCP, and the client's own event loop. `book_update` messages carry no time stamp (the hub does not
add one), so their latency is not measured: they are counted only.

Order flow (one `OrderSession`, 1-lot IOC orders alternating buy and sell, each crossing the spread by
one tick): every order trades one lot against 8 makers resting 8 x 500 lots a side at ref -/+ 1 tick
(restocked over REST before each phase), so each order is one trade and changes the book (one
`book_update` per committed batch that touched the series: several orders in a batch make one update).

Phases (`--seconds` each, default 10; `--quick`: 100 subscribers, 3 s):
  (a) engine throughput, 0 subscribers: closed loop, `--window` orders in flight (default 256).
  (b) fan-out: the subscribers connected, open loop at `--rate` orders/s (default 2,000: >= 2,000
      trades/s plus the book updates); then the clients drain (until 1 s passes with no message, at
      most 30 s). Delivered messages/s = messages received by all subscribers / (last receipt - phase
      start); expected = (trades + book updates published) x subscribers connected.
  (c) engine throughput, N subscribers (dropped ones reconnected first): as (a), with the fan-out of
      everything it trades. The ratio (c)/(a) is the engine's slow-down by the fan-out (target >= 0.9).
A subscriber whose outbound queue on the server overflows (`feed_queue_messages_max`, 10,000) is closed
with 1013 `slow_consumer`: the table counts those closes.

Client and server share the machine: the table reports the server's, the subscriber processes' and the
order driver's CPU use per phase (100% = one core).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_api import (
    MAKER_BASE,
    MAKER_CASH_MICROS,
    MAKERS,
    TAKER_CASH_MICROS,
    OrderFlow,
    choose_series,
    cpu_seconds,
    load_average,
    log_problems,
    machine_cpu_seconds,
    machine_info,
    percentile,
    restock,
    run_async,
)

from exchange.client.ws_orders import OrderSession
from exchange.feeds.hub import CONNECTIONS_PER_IP_MAX
from exchange.testing.api_harness import bootstrap
from exchange.testing.server_process import ServerProcess

FEED_PATH = "/v1/ws/market"
TAKER = 1
WS_IN_FLIGHT_MAX = 4_096
CONNECT_CONCURRENCY = 50
DRAIN_IDLE_S = 1.0
DRAIN_MAX_S = 30.0
TRADE_PREFIX = '{"type":"trade"'
BOOK_PREFIX = '{"type":"book_update"'
TYPE_MARK = '{"type":"'
TRADE_MARK = '{"type":"trade"'
BOOK_MARK = '{"type":"book_update"'
TS_MARK = '"ts_ns":'


def first_ts_ns(text: str, mark: str) -> int:
    """The ts_ns of the first message starting with `mark` in a frame (ts_ns is its last field)."""
    start = text.index(TS_MARK, text.index(mark)) + len(TS_MARK)
    return int(text[start:text.index("}", start)])


# == the subscriber process ==========================================================================

@dataclass
class Bucket:
    """What the subscribers of one client process received since the last MARK."""

    latencies_ns: array[int] = field(default_factory=lambda: array("q"))
    book_latencies_ns: array[int] = field(default_factory=lambda: array("q"))
    trades: int = 0
    books: int = 0
    other: int = 0
    last_recv_ns: int = 0


class Subscribers:
    def __init__(self, url: str, symbol: str, count: int, first_ip: int, per_ip: int) -> None:
        self.url, self.symbol = url, symbol
        self.addresses = [f"127.0.0.{first_ip + i // per_ip}" for i in range(count)]
        self.conns: list[ClientConnection | None] = [None] * count
        self.tasks: list[asyncio.Task[None] | None] = [None] * count
        self.per_conn: list[int] = [0] * count
        self.bucket = Bucket()
        self.closes: Counter[str] = Counter()
        self.connect_errors: Counter[str] = Counter()
        self.subscribe = json.dumps({"op": "subscribe", "id": 1, "channels": [
            {"channel": "book", "symbol": symbol}, {"channel": "trades", "symbol": symbol}]})

    def connected(self) -> int:
        return sum(1 for t in self.tasks if t is not None and not t.done())

    async def fill(self) -> int:
        """(Re)connect every connection that is not open; the number open."""
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(i: int) -> None:
            async with gate:
                try:
                    ws = await connect(self.url, compression=None, max_size=2**24, open_timeout=30,
                                       local_addr=(self.addresses[i], 0))
                    await ws.send(self.subscribe)
                    while True:   # the ack, then the book snapshot
                        text = await ws.recv()
                        assert isinstance(text, str)
                        if '{"type":"error"' in text:
                            raise RuntimeError(text[:200])
                        if '{"type":"book_snapshot"' in text:   # alone, or inside a batched frame
                            break
                except Exception as error:
                    self.connect_errors[f"{type(error).__name__}: {str(error)[:120]}"] += 1
                    return
                self.conns[i] = ws
                self.tasks[i] = asyncio.create_task(self.receive(i, ws))

        await asyncio.gather(*(one(i) for i, t in enumerate(self.tasks) if t is None or t.done()))
        return self.connected()

    async def receive(self, i: int, ws: ClientConnection) -> None:
        clock = time.time_ns
        per_conn = self.per_conn
        try:
            while True:
                text = await ws.recv()
                now = clock()
                bucket = self.bucket
                bucket.last_recv_ns = now
                assert isinstance(text, str)
                if text.startswith("["):     # a batched frame (?batch=1): several messages, in order
                    # Counted with str.count, not parsed: json.loads of every message would make this
                    # process, not the exchange, the bottleneck. One latency sample per kind per frame:
                    # its first (oldest) message of that kind, the one that waited longest.
                    trades, books = text.count(TRADE_MARK), text.count(BOOK_MARK)
                    per_conn[i] += text.count(TYPE_MARK)
                    bucket.trades += trades
                    bucket.books += books
                    bucket.other += text.count(TYPE_MARK) - trades - books
                    if trades:
                        bucket.latencies_ns.append(now - first_ts_ns(text, TRADE_MARK))
                    if books:
                        bucket.book_latencies_ns.append(now - first_ts_ns(text, BOOK_MARK))
                    continue
                per_conn[i] += 1
                if text.startswith(TRADE_PREFIX):
                    bucket.trades += 1
                    bucket.latencies_ns.append(now - int(text[text.rindex(":") + 1:-1]))
                elif text.startswith(BOOK_PREFIX):
                    bucket.books += 1
                    bucket.book_latencies_ns.append(now - int(text[text.rindex(":") + 1:-1]))
                else:
                    bucket.other += 1
        except ConnectionClosed as closed:
            frame = closed.rcvd
            self.closes[f"{frame.code} {frame.reason}" if frame is not None else "no close frame"] += 1

    def mark(self) -> None:
        self.bucket = Bucket()
        self.per_conn[:] = [0] * len(self.per_conn)   # in place: the receiving tasks hold the list

    async def drain(self) -> float:
        """Wait until DRAIN_IDLE_S passes with no message (at most DRAIN_MAX_S); seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < DRAIN_MAX_S:
            await asyncio.sleep(0.1)
            if time.time_ns() - self.bucket.last_recv_ns > DRAIN_IDLE_S * 1e9:
                break
        return time.monotonic() - started

    def stats(self) -> dict[str, Any]:
        bucket = self.bucket
        ordered = sorted(bucket.latencies_ns)
        books = sorted(bucket.book_latencies_ns)
        received = [n for n, t in zip(self.per_conn, self.tasks, strict=True) if t is not None]
        return {"trades": bucket.trades, "books": bucket.books, "other": bucket.other,
                "last_recv_ns": bucket.last_recv_ns, "samples": len(ordered),
                "p50": percentile(ordered, 0.5), "p90": percentile(ordered, 0.9),
                "p99": percentile(ordered, 0.99), "p999": percentile(ordered, 0.999),
                "max": ordered[-1] if ordered else 0, "min": ordered[0] if ordered else 0,
                "book_p50": percentile(books, 0.5), "book_p99": percentile(books, 0.99),
                "book_max": books[-1] if books else 0,
                "per_conn_min": min(received, default=0), "per_conn_max": max(received, default=0),
                "connected": self.connected(), "closes": dict(self.closes),
                "connect_errors": dict(self.connect_errors),
                # a small sample for the merged percentiles of several processes
                "sample": ordered[:: max(1, len(ordered) // 20_000)]}

    async def close(self) -> None:
        for ws in self.conns:
            if ws is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 2)
        for task in self.tasks:
            if task is not None:
                task.cancel()


async def worker_main(args: argparse.Namespace) -> None:
    """The subscriber process: commands on stdin (one a line), one JSON answer a line on stdout.
    FILL -> {"connected"}; MARK -> {}; DRAIN -> {"waited_s"}; STATS -> the bucket's stats; EOF: exit."""
    subs = Subscribers(args.url, args.symbol, args.count, args.first_ip, args.per_ip)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    try:
        while line := (await reader.readline()).decode().strip():
            if line == "FILL":
                answer({"connected": await subs.fill(), "connect_errors": dict(subs.connect_errors)})
            elif line == "MARK":
                subs.mark()
                answer({})
            elif line == "DRAIN":
                answer({"waited_s": await subs.drain()})
            elif line == "STATS":
                answer(subs.stats())
            else:
                answer({"error": f"unknown command {line!r}"})
    finally:
        await subs.close()


# == the driver ======================================================================================

class Worker:
    """One subscriber process, driven over its stdin/stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def ask(self, command: str, timeout_s: float = 120.0) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
        if not line:
            raise RuntimeError(f"subscriber process {self.process.pid} exited ({self.process.returncode})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


async def ask_all(workers: list[Worker], command: str) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(w.ask(command) for w in workers)))


@dataclass
class Phase:
    name: str
    subscribers: int = 0
    orders: int = 0
    filled: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    started_wall_ns: int = 0
    book_updates: int = 0
    server_cpu: float | None = None
    gateway_cpu: float | None = None
    publish_delay: str = ""
    subs_cpu: float | None = None
    driver_cpu: float = 0.0
    machine_cpu: float | None = None
    cpu_wall: float = 1e-9
    feed: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def rate(self) -> float:
        return self.orders / max(1e-9, self.seconds)


def _place_args(flow: OrderFlow, n: int) -> dict[str, Any]:
    a = flow.args[n % 2]   # 0: buy crossing, 1: sell crossing
    return {"symbol": a["symbol"], "side": a["side"], "amount": 1, "price": a["price"], "time_in_force": "IOC"}


async def _place(session: OrderSession, flow: OrderFlow, n: int, phase: Phase) -> None:
    try:
        result = await session.place(**_place_args(flow, n))
    except Exception as error:
        phase.errors[type(error).__name__ + ": " + str(error)[:80]] += 1
    else:
        phase.filled += int(result.get("filled", 0)) > 0
    phase.orders += 1


async def closed_loop(session: OrderSession, flow: OrderFlow, phase: Phase, window: int, seconds: float) -> None:
    counter = 0
    started = time.perf_counter()
    end = started + seconds

    async def lane() -> None:
        nonlocal counter
        while time.perf_counter() < end:
            counter += 1
            await _place(session, flow, counter, phase)

    await asyncio.gather(*(lane() for _ in range(window)))
    phase.seconds = time.perf_counter() - started


async def open_loop(session: OrderSession, flow: OrderFlow, phase: Phase, rate: int, seconds: float) -> None:
    count = int(rate * seconds)
    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    sent = 0
    while sent < count:
        due = min(count, int((time.perf_counter() - started) * rate) + 1)
        while sent < due:
            tasks.append(asyncio.create_task(_place(session, flow, sent, phase)))
            sent += 1
        await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter()))
    await asyncio.gather(*tasks)
    phase.seconds = time.perf_counter() - started
    if phase.rate < 0.95 * rate:
        phase.note = f"offered {rate:,}/s but only {phase.rate:,.0f}/s were answered: the server was saturated"


async def book_seq(http: httpx.AsyncClient, symbol: str) -> int:
    response = await http.get(f"/v1/series/{symbol}/book", params={"depth": 1})
    response.raise_for_status()
    value: int = response.json()["book_seq"]
    return value


async def publish_delays(http: httpx.AsyncClient) -> dict[str, float]:
    """The gateway's exchange_feed_publish_delay_seconds histogram: cumulative bucket counts by upper
    bound, plus "sum" and "count"."""
    out: dict[str, float] = {}
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith("exchange_feed_publish_delay_seconds_bucket{"):
            out[line.split('le="', 1)[1].split('"', 1)[0]] = float(line.split()[-1])
        elif line.startswith("exchange_feed_publish_delay_seconds_sum "):
            out["sum"] = float(line.split()[-1])
        elif line.startswith("exchange_feed_publish_delay_seconds_count "):
            out["count"] = float(line.split()[-1])
    return out


def delay_summary(before: dict[str, float], after: dict[str, float]) -> str:
    """Mean and bucket-bound p50/p99 of the publish delays observed between two scrapes."""
    count = after.get("count", 0.0) - before.get("count", 0.0)
    if count <= 0:
        return "no batches"
    mean_ms = 1000 * (after["sum"] - before.get("sum", 0.0)) / count
    bounds = sorted((float(le), after[le] - before.get(le, 0.0)) for le in after if le not in ("sum", "count"))

    def bound(fraction: float) -> str:
        for le, n in bounds:
            if n >= fraction * count:
                return f"<= {1000 * le:g}" if le != float("inf") else "> 10,000"
        return "?"

    return f"{count:,.0f} batches, mean {mean_ms:.1f} ms, p50 {bound(0.5)} ms, p99 {bound(0.99)} ms"


async def run_phase(phase: Phase, server: ServerProcess, workers: list[Worker], http: httpx.AsyncClient,
                    symbol: str, load: Any, drain: bool) -> Phase:
    pids = [w.process.pid for w in workers]
    server_pid, gateway = server.pid or 0, server.gateway_pid
    seq_before = await book_seq(http, symbol)
    if workers:
        await ask_all(workers, "MARK")
    gateway_before = cpu_seconds(gateway) if gateway else None
    delays_before = await publish_delays(http)
    before = (cpu_seconds(server_pid), [cpu_seconds(p) for p in pids], time.process_time(), machine_cpu_seconds(),
              time.perf_counter())
    phase.started_wall_ns = time.time_ns()
    await load
    drained = 0.0
    if workers and drain:
        drained = max(a["waited_s"] for a in await ask_all(workers, "DRAIN"))
    after = (cpu_seconds(server_pid), [cpu_seconds(p) for p in pids], time.process_time(), machine_cpu_seconds(),
             time.perf_counter())
    gateway_after = cpu_seconds(gateway) if gateway else None
    phase.publish_delay = delay_summary(delays_before, await publish_delays(http))
    phase.cpu_wall = after[4] - before[4]
    if before[0] is not None and after[0] is not None:
        phase.server_cpu = after[0] - before[0]
    if gateway_before is not None and gateway_after is not None:
        phase.gateway_cpu = gateway_after - gateway_before
    subs_before, subs_after = [v for v in before[1] if v is not None], [v for v in after[1] if v is not None]
    if workers and len(subs_before) == len(subs_after) == len(pids):
        phase.subs_cpu = sum(subs_after) - sum(subs_before)
    phase.driver_cpu = after[2] - before[2]
    if before[3] is not None and after[3] is not None:
        phase.machine_cpu = after[3] - before[3]
    phase.book_updates = await book_seq(http, symbol) - seq_before
    if workers:
        phase.feed = merge(await ask_all(workers, "STATS"))
        phase.feed["drained_s"] = drained
    return phase


def merge(stats: list[dict[str, Any]]) -> dict[str, Any]:
    if len(stats) == 1:
        return stats[0]
    sample = sorted(v for s in stats for v in s["sample"])
    merged: dict[str, Any] = {k: sum(s[k] for s in stats) for k in ("trades", "books", "other", "samples",
                                                                      "connected")}
    merged.update(last_recv_ns=max(s["last_recv_ns"] for s in stats), max=max(s["max"] for s in stats),
                  min=min(s["min"] for s in stats), per_conn_min=min(s["per_conn_min"] for s in stats),
                  per_conn_max=max(s["per_conn_max"] for s in stats),
                  closes=sum((Counter(s["closes"]) for s in stats), Counter()),
                  connect_errors=sum((Counter(s["connect_errors"]) for s in stats), Counter()),
                  # several processes: the worst process's book percentiles (conservative)
                  book_p50=max(s["book_p50"] for s in stats), book_p99=max(s["book_p99"] for s in stats),
                  book_max=max(s["book_max"] for s in stats))
    for key, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)):
        merged[key] = percentile(sample, fraction)
    merged["note"] = "percentiles from a merged sample of every process"
    return merged


ENGINE_CPUS = {0}       # --pin: the exchange process and the order driver
FANOUT_CPUS = {1}       # --pin: the feed gateway and the subscriber processes


def pin(pid: int, cpus: set[int]) -> None:
    """Set the CPU affinity of every thread of `pid` (threads created later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), cpus)


async def start_workers(args: argparse.Namespace, url: str, symbol: str) -> list[Worker]:
    workers: list[Worker] = []
    per_proc = [args.subscribers // args.client_procs + (i < args.subscribers % args.client_procs)
                for i in range(args.client_procs)]
    first_ip = 2
    for count in per_proc:
        command = [sys.executable, __file__, "--worker", "--url", url, "--symbol", symbol, "--count", str(count),
                   "--first-ip", str(first_ip), "--per-ip", str(args.per_ip)]
        if args.no_uvloop:
            command.append("--no-uvloop")
        process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.PIPE,
                                                       stdout=asyncio.subprocess.PIPE, limit=2**24)
        workers.append(Worker(process))
        if args.pin:
            pin(process.pid, FANOUT_CPUS)
        first_ip += -(-count // args.per_ip)
    if first_ip > 255:
        raise ValueError("too many subscribers for the loopback addresses 127.0.0.2-255: raise --per-ip")
    return workers


async def run(args: argparse.Namespace, server: ServerProcess, flow: OrderFlow, taker: Any,
              makers: list[Any]) -> tuple[list[Phase], list[str]]:
    phases: list[Phase] = []
    notes: list[str] = []
    workers: list[Worker] = []
    base_url = server.base_url
    feed_url = server.feed_url.replace("http://", "ws://", 1) + FEED_PATH + "?batch=1"
    session = await OrderSession.connect(base_url, taker.key_id, taker.secret, request_timeout_s=60.0)
    refused = 0
    try:
        # The gateway's book carries the feed's book seq (the count of book updates published).
        async with httpx.AsyncClient(base_url=server.feed_url, timeout=30.0) as http:
            # (a) engine throughput without subscribers
            refused += await restock(base_url, makers, flow)
            await closed_loop(session, flow, Phase("warm-up"), min(args.window, 32), 1.0)
            refused += await restock(base_url, makers, flow)
            phase = Phase(f"(a) closed loop w{args.window}, 0 subs")
            phases.append(await run_phase(phase, server, [], http, flow.symbol,
                                          closed_loop(session, flow, phase, args.window, args.seconds), False))
            # the subscribers
            started = time.perf_counter()
            workers = await start_workers(args, feed_url, flow.symbol)
            filled = await ask_all(workers, "FILL")
            connected = sum(a["connected"] for a in filled)
            notes.append(f"{connected:,} of {args.subscribers:,} subscribers connected and subscribed in "
                         f"{time.perf_counter() - started:.1f} s ({args.client_procs} client process(es), "
                         f"{args.per_ip} per source IP)")
            errors = sum((Counter(a["connect_errors"]) for a in filled), Counter())
            if errors:
                notes.append(f"connect errors: {dict(errors)}")
            # (b) fan-out at a fixed offered rate
            refused += await restock(base_url, makers, flow)
            await asyncio.sleep(1.0)
            phase = Phase(f"(b) open loop {args.rate:,}/s, {connected} subs", subscribers=connected)
            phases.append(await run_phase(phase, server, workers, http, flow.symbol,
                                          open_loop(session, flow, phase, args.rate, args.seconds), True))
            # (c) engine throughput with the subscribers
            filled = await ask_all(workers, "FILL")
            connected = sum(a["connected"] for a in filled)
            refused += await restock(base_url, makers, flow)
            await asyncio.sleep(1.0)
            phase = Phase(f"(c) closed loop w{args.window}, {connected} subs", subscribers=connected)
            phases.append(await run_phase(phase, server, workers, http, flow.symbol,
                                          closed_loop(session, flow, phase, args.window, args.seconds), True))
    finally:
        with contextlib.suppress(Exception):
            await session.close()
        for worker in workers:
            if worker.process.stdin is not None:
                worker.process.stdin.close()
        for worker in workers:
            try:
                await asyncio.wait_for(worker.process.wait(), 10)
            except TimeoutError:
                worker.kill()
                await worker.process.wait()
    if refused:
        notes.append(f"warning: {refused} maker placements were refused while restocking")
    return phases, notes


def ms(ns: float) -> str:
    return f"{ns / 1e6:.1f}"


def report(info: list[tuple[str, str]], phases: list[Phase], notes: list[str]) -> None:
    width = max(len(k) for k, _ in info)
    for key, value in info:
        print(f"{key:<{width}}  {value}")
    print()
    header = (f"{'phase':<32} {'orders':>7} {'secs':>5} {'orders/s':>8} {'trades':>7} {'book upd':>8} "
              f"{'events/s':>8} {'srv CPU':>7} {'gw CPU':>7} {'subs CPU':>8} {'drv CPU':>7} {'oth CPU':>7}")
    print(header)
    print("-" * len(header))
    for p in phases:
        wall = p.cpu_wall

        def pct(value: float | None, wall: float = wall) -> str:
            return f"{100 * value / wall:.0f}%" if value is not None else "-"

        other = None
        if p.machine_cpu is not None and p.server_cpu is not None:
            other = max(0.0, p.machine_cpu - p.server_cpu - (p.gateway_cpu or 0.0) - (p.subs_cpu or 0.0)
                        - p.driver_cpu)
        events = p.filled + p.book_updates
        print(f"{p.name:<32} {p.orders:>7,} {p.seconds:>5.1f} {p.rate:>8,.0f} {p.filled:>7,} {p.book_updates:>8,} "
              f"{events / max(1e-9, p.seconds):>8,.0f} {pct(p.server_cpu):>7} {pct(p.gateway_cpu):>7} "
              f"{pct(p.subs_cpu):>8} {pct(p.driver_cpu):>7} {pct(other):>7}")
    print("CPU: % of one core over the phase (with the drain); "
          f"{os.cpu_count()} cores = {100 * (os.cpu_count() or 1)}%")
    print()
    fan = [p for p in phases if p.feed]
    if fan:
        header = (f"{'phase':<32} {'subs':>5} {'expected':>10} {'delivered':>10} {'msgs/s':>9} {'trade p50':>9} "
                  f"{'p90':>7} {'p99':>7} {'p99.9':>7} {'max ms':>7} {'drain s':>7} {'dropped':>7}")
        print(header)
        print("-" * len(header))
        for p in fan:
            f = p.feed
            delivered = f["trades"] + f["books"]
            expected = (p.filled + p.book_updates) * p.subscribers
            span = max(1e-9, (f["last_recv_ns"] - p.started_wall_ns) / 1e9)
            dropped = sum(Counter(f["closes"]).values())
            print(f"{p.name:<32} {p.subscribers:>5} {expected:>10,} {delivered:>10,} {delivered / span:>9,.0f} "
                  f"{ms(f['p50']):>9} {ms(f['p90']):>7} {ms(f['p99']):>7} {ms(f['p999']):>7} {ms(f['max']):>7} "
                  f"{f['drained_s']:>7.1f} {dropped:>7}")
        print("latency: trades (ts_ns = the sequencer's time of the command); in a batched frame only its oldest "
              "trade and oldest book_update are timed (conservative: the others waited less), "
              "ms, from the engine to the client's receipt; msgs/s = book updates + trades received by all "
              "subscribers / (last receipt - phase start); dropped = connections closed by the server "
              "(cumulative)")
        for p in fan:
            f = p.feed
            print(f"{p.name}: engine -> gateway publish delay: {p.publish_delay}")
            print(f"{p.name}: book_update latency p50 {ms(f['book_p50'])} p99 {ms(f['book_p99'])} "
                  f"max {ms(f['book_max'])} ms")
            print(f"{p.name}: received per subscriber min {f['per_conn_min']:,} max {f['per_conn_max']:,}; "
                  f"{f['samples']:,} trade latency samples; closes {dict(f['closes']) or 'none'}"
                  + (f"; {f['note']}" if "note" in f else ""))
    print()
    for p in phases:
        if p.note or p.errors:
            print(f"{p.name}: {p.note}{'; errors ' + str(dict(p.errors)) if p.errors else ''}")
    for note in notes:
        print(note)
    by = {p.name[:3]: p for p in phases}
    a, c = by.get("(a)"), by.get("(c)")
    if a is not None and c is not None and a.rate > 0:
        ratio = c.rate / a.rate
        print(f"engine throughput with subscribers / without: {c.rate:,.0f} / {a.rate:,.0f} orders/s = {ratio:.2f} "
              f"(target >= 0.90: {'met' if ratio >= 0.9 else 'NOT met'})")
        if a.server_cpu and c.server_cpu and a.orders and c.orders:
            # What the exchange process spends per order, whatever else competes for the machine's
            # cores: the fan-out's cost to the engine itself.
            per_a, per_c = 1e6 * a.server_cpu / a.orders, 1e6 * c.server_cpu / c.orders
            print(f"exchange process CPU per order with subscribers / without: {per_c:,.0f} / {per_a:,.0f} us "
                  f"= {per_c / per_a:.2f}")
    b = by.get("(b)")
    if b is not None and b.feed:
        per_s = (b.filled + b.book_updates) / max(1e-9, b.seconds)
        p99 = b.feed["p99"] / 1e6
        print(f"fan-out (b): {per_s:,.0f} events/s published (target >= 2,000: {'met' if per_s >= 2000 else 'NOT met'})"
              f", trade p99 {p99:.1f} ms (target <= 50 ms: {'met' if p99 <= 50 else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--rate", type=int, default=2000, help="offered orders/s in (b) (one trade each)")
    parser.add_argument("--window", type=int, default=256, help="orders in flight in (a) and (c)")
    parser.add_argument("--client-procs", type=int, default=1, help="subscriber processes")
    parser.add_argument("--per-ip", type=int, default=CONNECTIONS_PER_IP_MAX,
                        help="subscriber connections per loopback source address (the hub's per-IP limit)")
    parser.add_argument("--quick", action="store_true", help="100 subscribers, 3 s phases (a smoke test)")
    parser.add_argument("--pin", action="store_true",
                        help="pin the exchange process and this driver to CPU 0, the feed gateway and the "
                             "subscribers to CPU 1 (the deployment shape: fan-out on cores of its own)")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary data directory goes")
    parser.add_argument("--server-log-level", default="INFO")
    parser.add_argument("--no-uvloop", action="store_true", help="plain asyncio loops in the clients")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--symbol", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--first-ip", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_async(worker_main(args), not args.no_uvloop)
        return
    if args.quick:
        args.subscribers, args.seconds = 100, 3.0
    if args.window > WS_IN_FLIGHT_MAX:
        parser.error(f"--window is at most {WS_IN_FLIGHT_MAX}")

    load_before = load_average()
    base = Path(tempfile.mkdtemp(prefix="feeds-bench-", dir=args.dir))
    try:
        data_dir = base / "data"
        spec = choose_series(time.time_ns())
        server = ServerProcess(data_dir, settings={"ws_in_flight_max": WS_IN_FLIGHT_MAX}, log_dir=base,
                               log_level=args.server_log_level, feeds=True)
        maker_ids = [MAKER_BASE + i for i in range(MAKERS)]
        deposits = {TAKER: TAKER_CASH_MICROS, **{a: MAKER_CASH_MICROS for a in maker_ids}}
        credentials = bootstrap(server.settings, time.time_ns, series=[spec], deposits_micros=deposits,
                                keys=[(a, ["read", "trade"]) for a in [TAKER, *maker_ids]])
        flow = OrderFlow(spec)
        try:
            started = time.perf_counter()
            server.start()
            ready_s = time.perf_counter() - started
            if args.pin:
                gateway = server.gateway_pid
                if gateway is None or (os.cpu_count() or 1) < 2:
                    parser.error("--pin needs 2 CPUs and the feed gateway process")
                pin(server.pid or 0, ENGINE_CPUS)
                pin(gateway, FANOUT_CPUS)
                pin(os.getpid(), ENGINE_CPUS)
            (phases, notes), loop_name = run_async(run(args, server, flow, credentials[0], credentials[1:]),
                                                   not args.no_uvloop)
            server.terminate()
        finally:
            server.close()
        info = [*machine_info(data_dir, loop_name, load_before),
                ("server", f"ready in {ready_s:.1f} s; log level {args.server_log_level}; "
                           f"log: {log_problems(server.log_path)}"),
                ("series", f"{spec.symbol}; {args.subscribers:,} subscribers (book full depth + trades); "
                           f"{args.seconds:g} s per phase"),
                ("cpus", "pinned: exchange + order driver on CPU 0; feed gateway + subscribers on CPU 1"
                         if args.pin else "not pinned: every process may run on any CPU"),
                ("order mix", "1-lot IOC, alternating buy/sell, each crossing: one trade per order against "
                              f"{MAKERS} makers; one OrderSession")]
        report(info, phases, notes)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
