"""Settlement while trading: order-entry latency with and without a settlement job running, and the
job's own duration, on a real `exchange serve` with the demo market trading.

    python bench/bench_live_settlement.py [--seconds S] [--rate R] [--runs N]

The server runs the demo market at `--rate` commands/s (default 200) with its clock shifted so that a
16:00 UTC cut passed a few seconds after it started (`EXCHANGE_CLOCK_OFFSET_S`); the calendar is off,
so the job runs only when this script starts it. A probe trader places one IOC order at a time over
REST (signed, durable before the answer: the order-entry path) and records each latency:
  (a) `--seconds` (default 10) of orders with no job;
  (b) `--seconds` of orders while `exchange settle daily --date D` runs against the live server, back
      to back (child processes, as the scheduler runs them): the first run posts every series'
      settlement, the later ones find them settled and post nothing (the read-only part: start-up,
      replica, journal replay, planning).
It prints p50/p99/max per phase and each job's duration. Both processes share the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from exchange.client import Client, nearest_symbol  # noqa: E402
from exchange.jobs.session import yield_cpu  # noqa: E402
from exchange.testing.server_process import ServerProcess  # noqa: E402

DAY_S = 86_400


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _probe(client: Client, symbol: str, stop: threading.Event, out: list[float]) -> None:
    side = 0
    while not stop.is_set():
        started = time.perf_counter()
        client.place_order(symbol, "buy" if side % 2 == 0 else "sell", 1, type="market")
        out.append((time.perf_counter() - started) * 1000)
        side += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=200)
    args = parser.parse_args()
    now = time.time()
    cut = (int(now - 16 * 3_600) // DAY_S + 1) * DAY_S + 16 * 3_600
    offset = int(cut - 8 - now)
    date = datetime.fromtimestamp(cut, UTC).strftime("%Y-%m-%d")
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data", demo=True, settings={
            "clock_offset_s": offset, "scheduler": False, "demo_rate_per_s": args.rate})
        with server:
            key = json.loads((server.data_dir / "operator-key.json").read_text())
            operator = Client(server.base_url, key["key_id"], key["secret"])
            account = operator.create_account()["account_id"]
            operator.deposit(account, "10000000")
            trader_key = operator.create_api_key(account, ["read", "trade"])
            trader = Client(server.base_url, trader_key["key_id"], trader_key["secret"])
            time.sleep(10)   # past the cut, the demo trading
            exchange_now_ns = int((time.time() + offset) * 1e9)   # the series to trade now, by the exchange's clock
            symbol = nearest_symbol(operator.series(limit=500)["items"], "H100-M40", exchange_now_ns)
            phases: list[tuple[str, list[float]]] = []
            stop = threading.Event()
            quiet: list[float] = []
            worker = threading.Thread(target=_probe, args=(trader, symbol, stop, quiet))
            worker.start()
            time.sleep(args.seconds)
            stop.set()
            worker.join()
            phases.append(("no job", quiet))
            env = {**os.environ, **server.settings.to_env(), "PYTHONPATH": str(REPO)}
            command = [sys.executable, "-m", "exchange.cli", "settle", "daily", "--date", date]
            busy: list[float] = []
            stop = threading.Event()
            worker = threading.Thread(target=_probe, args=(trader, symbol, stop, busy))
            worker.start()
            deadline = time.perf_counter() + args.seconds
            runs = 0
            while time.perf_counter() < deadline:   # jobs back to back: the first posts, the others re-read
                started = time.perf_counter()
                job = subprocess.run(command, env=env, capture_output=True, text=True, check=False,
                                     preexec_fn=lambda: yield_cpu(10))   # as the scheduler starts its jobs
                if job.returncode != 0:
                    raise SystemExit(f"the job failed: {job.stderr[-2000:]}")
                runs += 1
                print(f"job run {runs}: {time.perf_counter() - started:.2f} s: {job.stdout.strip().splitlines()[-1]}")
            stop.set()
            worker.join()
            phases.append((f"{runs} jobs", busy))
    print(f"\n{'phase':<12} {'orders':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, values in phases:
        print(f"{name:<12} {len(values):>7} {statistics.median(values):>8.2f} {_percentile(values, 0.99):>8.2f} "
              f"{max(values):>8.2f}")


if __name__ == "__main__":
    main()
