"""API benchmark: order entry through a real `exchange serve` process over loopback, REST and WebSocket.

    python bench/bench_api.py [--seconds S] [--quick] [--clients N] [--rate R] [--window W] [--dir PATH]

The server is the production one (`python -m exchange.cli serve`: uvicorn, the durable service with its
journal fsyncs, the SQLite store projected before every answer, JSON access log on stderr), started
in a subprocess on a free loopback port over a data directory bootstrapped here first (one listed
series, funded accounts, API keys). Only the rate limits (per key, per IP: every client is 127.0.0.1)
and the WebSocket in-flight cap are raised, so that the limits do not become the thing measured.

Phases, `--seconds` each (default 10; `--quick`: 2, a smoke test):
  (a) REST, `--clients` concurrent clients (default 32), closed loop: each its own account, API key and
      httpx.AsyncClient with one keep-alive connection, sending its next order when the last is answered.
  (b) REST, open loop at a fixed offered rate (`--rate`, default 500 orders/s) spread round-robin over
      the same clients: order i is due at t0 + i/rate and its latency runs from that scheduled time
      (not from when it was actually sent) to the answer, so a stall is not hidden by the client
      waiting (no coordinated omission). The phase ends when all rate x seconds orders are answered, so
      above the server's capacity it runs longer than `--seconds` and the latency grows with it.
  (c) REST, one client, one connection, sequential: the baseline for (d).
  (d) WebSocket order entry on one connection (`websockets` client, no compression): authenticate,
      then keep `--window` requests in flight (default 256), sending the next on each answer.

Order mix (every phase, per client): amount 1 lot, time in force IOC, cycling through four kinds
  buy crossing (ref + 2 ticks), sell crossing (ref - 2 ticks), buy passive (ref - 3), sell passive (ref + 3).
Before each phase 8 maker accounts cancel their orders and rest 8 x 500 lots per side at ref -/+ 1
tick, so the crossing half trades one lot each (a trade, fees, positions) and the passive half is
accepted and cancelled unfilled. Takers rest nothing, and buys and sells alternate, so the book stays
at 8 x 2 x 8 orders, positions stay near zero and no account nears the open-order (1000 per account),
position (5000 lots) or margin limits. The "filled" column shows how many orders traded (about half
while the makers' 32,000 lots per side last). Latencies use time.perf_counter_ns; an answer other
than 201 counts as an error (and in the rate).

Client and server share the machine: on a small machine the Python load generator (httpx in
particular) competes with the server for CPU, so the table reports both processes' CPU use per phase
and that of every other process on the machine (100% = one core): with "oth CPU" high, the figures
say more about the neighbours than about the exchange. The data directory should be on the disk the
exchange would use (`--dir`, default the system temporary directory): every answer waits for fsyncs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exchange.catalog import load_catalog
from exchange.domain.spec import PeriodKind, SeriesSpec
from exchange.domain.units import ticks_to_price
from exchange.settings import Settings
from exchange.signing import sign
from exchange.testing.api_harness import Credentials, bootstrap, json_body, signed_headers

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
MASTER_KEY = "5e" * 32
ORDERS_PATH = "/v1/orders"
WS_PATH = "/v1/ws/orders"
HIGH_LIMIT = 10_000_000          # requests/s and burst: the rate limits out of the way
WS_IN_FLIGHT_MAX = 4_096
MAKERS = 8
MAKER_ORDERS_PER_SIDE = 8
MAKER_ORDER_LOTS = 500
TAKER_CASH_MICROS = 10_000_000 * 1_000_000      # $10M
MAKER_CASH_MICROS = 1_000_000_000 * 1_000_000   # $1B: 4,000 lots a side at ~$1.7k initial margin a lot
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
TAKER_BASE, WS_ACCOUNT, MAKER_BASE = 1, 900, 1_000


# -- results ---------------------------------------------------------------------------------------

@dataclass
class Result:
    name: str
    latencies_ns: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    filled: int = 0
    started_ns: int = 0
    finished_ns: int = 0
    server_cpu_s: float | None = None
    client_cpu_s: float = 0.0
    machine_cpu_s: float | None = None   # every process on the machine, in CPU-seconds
    cpu_wall_s: float = 1e-9             # the wall time the CPU figures cover (the phase with its warm-up)
    note: str = ""

    @property
    def count(self) -> int:
        return len(self.latencies_ns)

    @property
    def seconds(self) -> float:
        return max(1e-9, (self.finished_ns - self.started_ns) / 1e9)

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def record(self, started_ns: int, status: int | str, filled: bool) -> None:
        done = time.perf_counter_ns()
        self.latencies_ns.append(done - started_ns)
        self.finished_ns = max(self.finished_ns, done)
        if status not in (200, 201):
            self.errors[str(status)] += 1
        elif filled:
            self.filled += 1


def percentile(sorted_values: list[int], fraction: float) -> int:
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


# -- the order flow --------------------------------------------------------------------------------

class OrderFlow:
    """The four order bodies (crossing buy, crossing sell, passive buy, passive sell), pre-encoded."""

    def __init__(self, spec: SeriesSpec) -> None:
        self.symbol = spec.symbol
        ref = spec.reference_price_ticks

        def price(ticks: int) -> str:
            return str(ticks_to_price(ticks, spec.tick_micros))

        self.bid, self.ask = price(ref - 1), price(ref + 1)   # the makers' quotes
        kinds = (("buy", ref + 2), ("sell", ref - 2), ("buy", ref - 3), ("sell", ref + 3))
        self.args: list[dict[str, Any]] = [
            {"symbol": spec.symbol, "side": side, "type": "limit", "price": price(ticks), "amount": 1,
             "time_in_force": "IOC"} for side, ticks in kinds]
        self.bodies: list[bytes] = [json_body(a) for a in self.args]
        self.ws_args: list[str] = [json.dumps(a, separators=(",", ":")) for a in self.args]

    def body(self, n: int) -> bytes:
        return self.bodies[n % 4]


@dataclass
class Taker:
    credentials: Credentials
    client: httpx.AsyncClient
    sent: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)   # sign only once the connection is ours


def _filled(content: bytes) -> bool:
    filled: int = json.loads(content)["filled"]
    return filled > 0


async def place(taker: Taker, flow: OrderFlow) -> tuple[int | str, bool, int]:
    """Send the taker's next order: (HTTP status, or the exception's name on a transport error; filled;
    when it was sent)."""
    body = flow.body(taker.sent)
    taker.sent += 1
    async with taker.lock:   # a queued order is signed when its connection is free, not when it was due
        sent_ns = time.perf_counter_ns()
        headers = signed_headers(taker.credentials, "POST", ORDERS_PATH, body, int(time.time()))
        try:
            response = await taker.client.post(ORDERS_PATH, content=body, headers=headers)
        except httpx.HTTPError as error:
            return type(error).__name__, False, sent_ns
    if response.status_code != 201:
        return response.status_code, False, sent_ns
    return 201, _filled(response.content), sent_ns


def http_client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(60.0),
                             limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))


async def call(client: httpx.AsyncClient, credentials: Credentials, method: str, path: str,
               payload: Any) -> httpx.Response:
    body = json_body(payload)
    headers = signed_headers(credentials, method, path, body, int(time.time()))
    return await client.request(method, path, content=body, headers=headers)


async def restock(base_url: str, makers: list[Credentials], flow: OrderFlow) -> int:
    """Each maker cancels its orders and rests MAKER_ORDERS_PER_SIDE x 500 lots a side at ref -/+ 1
    tick. Returns how many placements were refused (0 expected)."""
    refused = 0
    async with http_client(base_url) as client:
        for maker in makers:
            response = await call(client, maker, "POST", "/v1/orders/cancel-all", {"symbol": flow.symbol})
            response.raise_for_status()
            for side, price in (("buy", flow.bid), ("sell", flow.ask)):
                for _ in range(MAKER_ORDERS_PER_SIDE):
                    response = await call(client, maker, "POST", ORDERS_PATH,
                                          {"symbol": flow.symbol, "side": side, "price": price,
                                           "amount": MAKER_ORDER_LOTS, "time_in_force": "GTC"})
                    refused += response.status_code != 201
    return refused


# -- the phases ------------------------------------------------------------------------------------

async def rest_closed_loop(name: str, takers: list[Taker], flow: OrderFlow, seconds: float) -> Result:
    result = Result(name)
    for taker in takers:   # open the connections outside the measurement
        await place(taker, flow)
    result.started_ns = time.perf_counter_ns()
    end_ns = result.started_ns + int(seconds * 1e9)

    async def worker(taker: Taker) -> None:
        while time.perf_counter_ns() < end_ns:
            started = time.perf_counter_ns()
            status, filled, _ = await place(taker, flow)
            result.record(started, status, filled)

    await asyncio.gather(*(worker(t) for t in takers))
    return result


async def rest_open_loop(name: str, takers: list[Taker], flow: OrderFlow, rate: int, seconds: float) -> Result:
    result = Result(name)
    count = max(1, int(rate * seconds))
    period_ns = 1_000_000_000 // rate
    tasks: list[asyncio.Task[None]] = []
    service_ns: list[int] = []
    for taker in takers:   # (re)open the connections outside the measurement
        await place(taker, flow)
    t0 = time.perf_counter_ns()
    result.started_ns = t0

    async def one(index: int) -> None:
        status, filled, sent_ns = await place(takers[index % len(takers)], flow)
        result.record(t0 + index * period_ns, status, filled)   # latency from the schedule
        service_ns.append(time.perf_counter_ns() - sent_ns)

    index = 0
    while index < count:
        due = min(count, (time.perf_counter_ns() - t0) // period_ns + 1)
        while index < due:
            tasks.append(asyncio.create_task(one(index)))
            index += 1
        await asyncio.sleep(max(0.0, (t0 + index * period_ns - time.perf_counter_ns()) / 1e9))
    await asyncio.gather(*tasks)
    service_ns.sort()
    result.note = (f"offered {rate:,}/s over {len(takers)} connections; from the actual send: "
                   f"p50 {percentile(service_ns, 0.5) / 1e6:.2f} ms, p99 {percentile(service_ns, 0.99) / 1e6:.2f} ms")
    if result.rate < 0.95 * rate:
        result.note += ("; the offered rate is above what the server sustained, so the backlog (and the "
                        "latency from the schedule) grew for the whole phase")
    return result


async def ws_pipelined(name: str, base_url: str, credentials: Credentials, flow: OrderFlow, window: int,
                       seconds: float) -> Result:
    result = Result(name)
    ws_url = base_url.replace("http://", "ws://", 1) + WS_PATH
    async with connect(ws_url, compression=None, max_size=2**20) as ws:
        ts = int(time.time())
        await ws.send(json.dumps({"op": "auth", "key": credentials.key_id, "timestamp": ts,
                                  "signature": sign(credentials.secret, ts, "GET", WS_PATH, b"")}))
        auth = json.loads(await ws.recv())
        if auth.get("ok") is not True:
            raise RuntimeError(f"WebSocket auth refused: {auth}")
        sent_at: dict[int, int] = {}
        next_id = 0

        async def send_next() -> None:
            nonlocal next_id
            request_id = next_id
            next_id += 1
            sent_at[request_id] = time.perf_counter_ns()
            await ws.send(f'{{"op":"place","id":{request_id},"args":{flow.ws_args[request_id % 4]}}}')

        result.started_ns = time.perf_counter_ns()
        end_ns = result.started_ns + int(seconds * 1e9)
        for _ in range(window):
            await send_next()
        while sent_at:
            reply = json.loads(await ws.recv())
            started = sent_at.pop(reply["id"])
            status = reply["status"]
            result.record(started, status, status == 201 and reply["result"]["filled"] > 0)
            if status != 201 and len(result.errors) == 1 and sum(result.errors.values()) == 1:
                result.note = f"first error: {reply.get('error')}"
            if time.perf_counter_ns() < end_ns:
                await send_next()
    result.note = result.note or f"window {window} in flight"
    return result


# -- the server ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), or None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float | None:
    """CPU-seconds the whole machine has been busy (Linux /proc/stat: all but idle and iowait)."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def filesystem_of(path: Path) -> str:
    best, kind = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            mount = parts[1]
            if str(path.resolve()).startswith(mount) and len(mount) > len(best):
                best, kind = mount, parts[2]
    except OSError:
        pass
    return f"{kind} ({best or '?'})"


def log_problems(path: Path) -> str:
    """How many WARNING/ERROR lines the server logged, and the first of them."""
    problems: list[str] = []
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            if '"level": "WARNING"' in line or '"level": "ERROR"' in line or '"level": "CRITICAL"' in line \
                    or line.startswith("Traceback"):
                problems.append(line)
    if not problems:
        return "no warnings or errors"
    return f"{len(problems)} warning/error lines, the first: {problems[0][:300]}"


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def start_server(data_dir: Path, port: int, log_path: Path, log_level: str,
                 database_url: str | None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    env.update({
        "EXCHANGE_MASTER_KEY": MASTER_KEY,
        "EXCHANGE_RATE_PER_KEY_PER_S": str(HIGH_LIMIT), "EXCHANGE_BURST_PER_KEY": str(HIGH_LIMIT),
        "EXCHANGE_RATE_PER_IP_PER_S": str(HIGH_LIMIT), "EXCHANGE_BURST_PER_IP": str(HIGH_LIMIT),
        "EXCHANGE_WS_IN_FLIGHT_MAX": str(WS_IN_FLIGHT_MAX),
        "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    })
    if database_url:
        env["EXCHANGE_DATABASE_URL"] = database_url
    command = [sys.executable, "-m", "exchange.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--data", str(data_dir), "--log-level", log_level]
    with log_path.open("wb") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)


def wait_ready(base_url: str, server: subprocess.Popen[bytes], log_path: Path) -> float:
    started = time.perf_counter()
    with httpx.Client(base_url=base_url, timeout=2.0) as client:
        while time.perf_counter() - started < READY_TIMEOUT_S:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with {server.returncode}:\n{log_tail(log_path)}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/ready").status_code == 200:
                    return time.perf_counter() - started
            time.sleep(0.1)
    raise RuntimeError(f"the server was not ready within {READY_TIMEOUT_S:.0f} s:\n{log_tail(log_path)}")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@contextlib.contextmanager
def running_server(data_dir: Path, log_path: Path, log_level: str,
                   database_url: str | None) -> Iterator[tuple[str, subprocess.Popen[bytes], float]]:
    port = free_port()
    server = start_server(data_dir, port, log_path, log_level, database_url)
    try:
        base_url = f"http://127.0.0.1:{port}"
        ready_s = wait_ready(base_url, server, log_path)
        yield base_url, server, ready_s
    finally:
        stop_server(server)


# -- set-up and report -----------------------------------------------------------------------------

def choose_series(now_ns: int) -> SeriesSpec:
    """A listed monthly series (H100-M40 if there is one) whose trading ends well after the run."""
    listed = [s for s in load_catalog().listed_series(now_ns)
              if s.period is PeriodKind.MONTHLY and s.trading_end_ns > now_ns + 2 * 86_400 * 10**9]
    if not listed:
        raise RuntimeError("no monthly series is listed now with trading open for two more days")
    preferred = [s for s in listed if s.product == "H100-M40"]
    return (preferred or listed)[0]


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def machine_info(data_dir: Path, loop_name: str, load_before: str) -> list[tuple[str, str]]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}"
                         for p in ("uvicorn", "fastapi", "httpx", "websockets"))
    return [("machine", f"{os.cpu_count()} CPUs ({model}), {platform.platform()}"),
            ("load average", f"{load_before} before the run (1, 5, 15 min)"),
            ("python", f"{platform.python_implementation()} {platform.python_version()}; client loop {loop_name}"),
            ("packages", versions),
            ("data dir fs", filesystem_of(data_dir))]


def print_report(info: list[tuple[str, str]], results: list[Result]) -> None:
    width = max(len(k) for k, _ in info)
    for key, value in info:
        print(f"{key:<{width}}  {value}")
    print()
    header = (f"{'phase':<34} {'orders':>8} {'secs':>6} {'orders/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'p99.9 ms':>9} {'max ms':>8} {'errors':>7} {'filled':>7} {'srv CPU':>8} {'cli CPU':>8} {'oth CPU':>8}")
    print(header)
    print("-" * len(header))
    for r in results:
        ordered = sorted(r.latencies_ns)
        wall = r.cpu_wall_s
        server_cpu = f"{100 * r.server_cpu_s / wall:.0f}%" if r.server_cpu_s is not None else "?"
        other_cpu = "?"
        if r.machine_cpu_s is not None and r.server_cpu_s is not None:
            other_cpu = f"{100 * max(0.0, r.machine_cpu_s - r.server_cpu_s - r.client_cpu_s) / wall:.0f}%"
        print(f"{r.name:<34} {r.count:>8,} {r.seconds:>6.1f} {r.rate:>9,.0f} "
              f"{percentile(ordered, 0.5) / 1e6:>8.2f} {percentile(ordered, 0.99) / 1e6:>8.2f} "
              f"{percentile(ordered, 0.999) / 1e6:>9.2f} {(ordered[-1] if ordered else 0) / 1e6:>8.2f} "
              f"{sum(r.errors.values()):>7,} {r.filled:>7,} {server_cpu:>8} "
              f"{100 * r.client_cpu_s / wall:>7.0f}% {other_cpu:>8}")
    print("CPU columns: % of one core over the phase; oth = every other process on the machine "
          f"({os.cpu_count()} cores = {100 * (os.cpu_count() or 1)}%)")
    print()
    for r in results:
        extra = f"; errors by status {dict(r.errors)}" if r.errors else ""
        if r.note or extra:
            print(f"{r.name}: {r.note}{extra}")
    by_name = {r.name[:3]: r for r in results}
    single, ws = by_name.get("(c)"), by_name.get("(d)")
    if single is not None and ws is not None and single.rate > 0:
        ratio = ws.rate / single.rate
        print(f"WebSocket (d) / single REST client (c): {ratio:.1f}x "
              f"(target >= 10x: {'met' if ratio >= 10 else 'NOT met'})")


async def measured(server_pid: int, phase: Coroutine[Any, Any, Result]) -> Result:
    server_before, client_before, machine_before = cpu_seconds(server_pid), time.process_time(), machine_cpu_seconds()
    wall_before = time.perf_counter()
    result = await phase
    server_after, client_after, machine_after = cpu_seconds(server_pid), time.process_time(), machine_cpu_seconds()
    result.cpu_wall_s = time.perf_counter() - wall_before
    if server_before is not None and server_after is not None:
        result.server_cpu_s = server_after - server_before
    if machine_before is not None and machine_after is not None:
        result.machine_cpu_s = machine_after - machine_before
    result.client_cpu_s = client_after - client_before
    return result


async def run_phases(args: argparse.Namespace, base_url: str, server_pid: int, flow: OrderFlow,
                     takers: list[Credentials], ws_taker: Credentials, makers: list[Credentials]) -> list[Result]:
    seconds: float = args.seconds
    results: list[Result] = []
    refused = 0
    clients = [Taker(c, http_client(base_url)) for c in takers]
    try:
        refused += await restock(base_url, makers, flow)
        results.append(await measured(server_pid, rest_closed_loop(
            f"(a) REST {len(clients)} clients, closed loop", clients, flow, seconds)))
        refused += await restock(base_url, makers, flow)
        results.append(await measured(server_pid, rest_open_loop(
            f"(b) REST open loop {args.rate}/s", clients, flow, args.rate, seconds)))
        refused += await restock(base_url, makers, flow)
        results.append(await measured(server_pid, rest_closed_loop(
            "(c) REST 1 client, sequential", clients[:1], flow, seconds)))
        refused += await restock(base_url, makers, flow)
        results.append(await measured(server_pid, ws_pipelined(
            f"(d) WebSocket 1 conn, window {args.window}", base_url, ws_taker, flow, args.window, seconds)))
    finally:
        for taker in clients:
            await taker.client.aclose()
    if refused:
        print(f"warning: {refused} maker placements were refused while restocking", file=sys.stderr)
    return results


def run_async(coroutine: Coroutine[Any, Any, T], use_uvloop: bool) -> tuple[T, str]:
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    name = "asyncio"
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            factory, name = uvloop.new_event_loop, f"uvloop {importlib.metadata.version('uvloop')}"
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coroutine), name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--quick", action="store_true", help="2 s per phase (a smoke test)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent REST clients in (a) and (b)")
    parser.add_argument("--rate", type=int, default=500, help="offered orders/s in (b)")
    parser.add_argument("--window", type=int, default=256, help="WebSocket requests in flight in (d)")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary data directory goes")
    parser.add_argument("--database-url", default=None, help="store URL (default: SQLite in the data dir)")
    parser.add_argument("--server-log-level", default="INFO",
                        help="the server's --log-level (INFO, the default, writes the JSON access log)")
    parser.add_argument("--no-uvloop", action="store_true", help="plain asyncio loop in the load generator")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 2.0
    if args.window > WS_IN_FLIGHT_MAX:
        parser.error(f"--window is at most {WS_IN_FLIGHT_MAX}")

    load_before = load_average()
    base = Path(tempfile.mkdtemp(prefix="api-bench-", dir=args.dir))
    try:
        data_dir, log_path = base / "data", base / "server.log"
        spec = choose_series(time.time_ns())
        settings = Settings(data_dir=data_dir, master_key=SecretStr(MASTER_KEY), database_url=args.database_url,
                            snapshot_every_commands=100_000)
        taker_ids = [TAKER_BASE + i for i in range(args.clients)]
        maker_ids = [MAKER_BASE + i for i in range(MAKERS)]
        deposits = {**{a: TAKER_CASH_MICROS for a in [*taker_ids, WS_ACCOUNT]},
                    **{a: MAKER_CASH_MICROS for a in maker_ids}}
        keys = [(a, ["read", "trade"]) for a in [*taker_ids, WS_ACCOUNT, *maker_ids]]
        credentials = bootstrap(settings, time.time_ns, series=[spec], deposits_micros=deposits, keys=keys)
        takers = credentials[:args.clients]
        ws_taker = credentials[args.clients]
        makers = credentials[args.clients + 1:]
        flow = OrderFlow(spec)
        with running_server(data_dir, log_path, args.server_log_level, args.database_url) as (url, server, ready_s):
            results, loop_name = run_async(run_phases(args, url, server.pid, flow, takers, ws_taker, makers),
                                           not args.no_uvloop)
        reference = ticks_to_price(spec.reference_price_ticks, spec.tick_micros)
        info = [*machine_info(data_dir, loop_name, load_before),
                ("server", f"ready in {ready_s:.1f} s; log level {args.server_log_level}; store "
                           f"{'SQLite' if args.database_url is None else args.database_url.split(':', 1)[0]}; "
                           f"log: {log_problems(log_path)}"),
                ("series", f"{spec.symbol} (reference {reference}); {args.seconds:g} s per phase"),
                ("order mix", "IOC 1 lot, cycling buy/sell x crossing/passive; the crossing half trades against "
                              f"{MAKERS} makers resting {MAKER_ORDERS_PER_SIDE} x {MAKER_ORDER_LOTS} lots a side")]
        print_report(info, results)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
