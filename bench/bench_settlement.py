"""Settlement jobs at month scale (issue 6 targets): delivery settlement and daily settlement.

    python bench/bench_settlement.py [--quick] [--dir DIR] [--keep]

Delivery settlement (`exchange.jobs.delivery.run_delivery`): a monthly-like series (744 delivery
hours, 8 GPUs a lot) is listed, one account sells enough lots to another to cover the largest run
(nodes × 8 GPUs), the series is settled finally and expires into one delivery; then for each size a
seeded telemetry file (`write_telemetry`, nodes × 744 signed node-hours) is settled by the real job
on a fresh copy of that data directory, each in a fresh subprocess, which reports the job's wall
time end to end, the read + fold phase alone (the job's `fold`, timed from the inside, reading the
file lazily) and its peak RSS (`ru_maxrss`; also the RSS before the job, after imports). Target:
744,000 records (1,000 nodes) in at most 60 s with every signature checked.

Daily settlement (`exchange.jobs.daily.run_daily`): S daily series and A accounts, each account
trading K times (a sell and a crossing buy at the same price, pairs of accounts, spread over the
series and the day, a share in the VWAP window), then the job settles the day, in a fresh subprocess.
Its phases are timed from the inside: service open (recovery of the live core from the journal),
the read-only replay of the journal into cuts, planning, posting (the `SettleDaily` commands,
durable), margin calls, statements (computed, then one store row per account in one transaction per
date: they were two files per account, two thirds of the job), service close.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import SecretStr

from exchange.catalog import Catalog, load_catalog
from exchange.domain.commands import Command, CreateAccount, Deposit, ListSeries, PlaceOrder
from exchange.domain.engine import settlement_day_ns
from exchange.domain.events import Rejected
from exchange.domain.order import Side, TimeInForce
from exchange.domain.spec import PeriodKind, SeriesSpec
from exchange.domain.units import NS_PER_HOUR
from exchange.jobs import daily as daily_job
from exchange.jobs import delivery as delivery_job
from exchange.jobs.session import job_session, running_service
from exchange.service.exchange_service import ExchangeService
from exchange.settings import Settings
from exchange.store.statement_archive import StatementArchive
from exchange.telemetry.generator import GeneratorConfig, write_telemetry
from exchange.testing.specs import DELIVERY_START_NS, make_spec

P = ParamSpec("P")
R = TypeVar("R")

NS_PER_MINUTE = 60 * 10**9
NS_PER_DAY = 24 * NS_PER_HOUR
MONTH_HOURS = 744                                        # 31 days
MONTH_START_NS = DELIVERY_START_NS - 2 * NS_PER_DAY      # 2026-12-01 00:00 UTC
MONTH_TRADING_END_NS = MONTH_START_NS - 8 * NS_PER_HOUR  # 2026-11-30 16:00 UTC
MONTH_SYMBOL = "H100-M40-Z26"
DAILY_TRADING_END_NS = DELIVERY_START_NS - 8 * NS_PER_HOUR   # the make_spec series: 2026-12-02 16:00 UTC
DAILY_CUT_NS = DAILY_TRADING_END_NS - NS_PER_DAY              # 2026-12-01 16:00 UTC: the day benchmarked
BIG_CASH_MICROS = 100_000_000 * 10**6                         # $100M
DAILY_CASH_MICROS = 1_000_000 * 10**6                         # $1M
SUBMIT_CHUNK = 4_096


class Clock:
    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


def _settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, master_key=SecretStr("ab" * 32), probe_key=SecretStr("cd" * 32),
                    snapshot_every_commands=0)


async def _submit_all(service: ExchangeService, clock: Clock, timed: Sequence[tuple[int, Command]]) -> None:
    """Submit in chunks (one submit_many each, clock set to the chunk's first time); no rejections allowed."""
    sequencer = service.sequencer
    assert sequencer is not None
    for start in range(0, len(timed), SUBMIT_CHUNK):
        chunk = timed[start:start + SUBMIT_CHUNK]
        clock.now_ns = max(clock.now_ns, chunk[0][0])
        for outcome in await sequencer.submit_many([command for _, command in chunk]):
            if isinstance(outcome, Exception):
                raise outcome
            refused = [e for e in outcome.events if isinstance(e, Rejected)]
            if refused:
                raise RuntimeError(f"setup command refused: {refused[0]}")


def _setup(settings: Settings, catalog: Catalog, clock: Clock, timed: Sequence[tuple[int, Command]]) -> None:
    async def run() -> None:
        async with running_service(settings, catalog, clock) as service:
            await _submit_all(service, clock, timed)
    asyncio.run(run())


def _timed(phases: dict[str, float], name: str, function: Callable[P, R]) -> Callable[P, R]:
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - started
    return wrapper


def _timed_session(phases: dict[str, float]) -> Callable[..., contextlib.AbstractAsyncContextManager[Any]]:
    """`job_session` (offline here: no server holds the directory), timing its open and close."""
    @contextlib.asynccontextmanager
    async def timed(settings: Settings, catalog: Catalog, clock_ns: Callable[[], int] = time.time_ns,
                    url: str | None = None) -> AsyncIterator[Any]:
        started = time.perf_counter()
        closing = 0.0
        try:
            async with job_session(settings, catalog, clock_ns, url) as session:
                phases["open"] = time.perf_counter() - started
                recovery = getattr(getattr(session, "service", None), "recovery", None)
                phases["recovery_replayed"] = float(recovery.replayed if recovery else 0)
                yield session
                closing = time.perf_counter()
        finally:
            if closing:
                phases["close"] = time.perf_counter() - closing
    return timed


def _rss_mib() -> float:
    """This process's peak RSS in MiB: VmHWM of /proc/self/status, which starts afresh at exec (ru_maxrss of
    a child started by fork/vfork + exec begins at the parent's RSS at the fork), else ru_maxrss."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024                    # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- delivery settlement ---------------------------------------------------------------------------
def monthly_spec(lots: int) -> SeriesSpec:
    """A December 2026 monthly series (744 hours) that takes `lots` lots in one order."""
    spec = make_spec(MONTH_SYMBOL, max_order_lots=lots, max_position_lots=lots, trading_end_ns=MONTH_TRADING_END_NS)
    return replace(spec, period=PeriodKind.MONTHLY, delivery_start_ns=MONTH_START_NS,
                   delivery_end_ns=MONTH_START_NS + MONTH_HOURS * NS_PER_HOUR)


def prepare_delivery(data_dir: Path, lots: int) -> tuple[str, int, float]:
    """List, trade `lots` lots 1 -> 2, settle finally and expire: (delivery id, clock after, seconds)."""
    started = time.perf_counter()
    settings, catalog = _settings(data_dir), load_catalog()
    clock = Clock(MONTH_TRADING_END_NS - 3 * NS_PER_HOUR)
    at = clock.now_ns
    _setup(settings, catalog, clock, [
        (at, ListSeries(monthly_spec(lots))),
        (at, CreateAccount(1)), (at, Deposit(1, BIG_CASH_MICROS)),
        (at, CreateAccount(2)), (at, Deposit(2, BIG_CASH_MICROS)),
        (at + NS_PER_HOUR, PlaceOrder(1, MONTH_SYMBOL, Side.SELL, lots, 480, tif=TimeInForce.GTC)),
        (at + NS_PER_HOUR + 1, PlaceOrder(2, MONTH_SYMBOL, Side.BUY, lots, 480, tif=TimeInForce.GTC)),
    ])
    clock.now_ns = MONTH_TRADING_END_NS + 30 * NS_PER_MINUTE
    report = asyncio.run(daily_job.run_daily(settings, catalog, settlement_day_ns(MONTH_TRADING_END_NS), clock))
    assert report.expired == [(MONTH_SYMBOL, 1)], report.expired
    return f"{MONTH_SYMBOL}/1", clock.now_ns, time.perf_counter() - started


def child_delivery(data_dir: Path, telemetry: Path, clock_ns: int) -> dict[str, Any]:
    settings, catalog = _settings(data_dir), load_catalog()
    phases: dict[str, float] = {}
    delivery_job.fold = _timed(phases, "fold", delivery_job.fold)
    rss_before, cpu_before = _rss_mib(), _cpu_s()
    started = time.perf_counter()
    report = asyncio.run(delivery_job.run_delivery(settings, catalog, [telemetry], clock_ns=Clock(clock_ns),
                                                   rejects_path=data_dir / "rejects.csv"))
    total = time.perf_counter() - started
    summary = report.summary
    return {"total_s": total, "fold_s": phases["fold"], "records": summary.records, "accepted": summary.accepted,
            "rejected": summary.rejected, "duplicate": summary.duplicate,
            "status": [o.status for o in report.outcomes],
            "effective_gpuh": [o.result.effective_micro_gpuh / 10**6 for o in report.outcomes],
            "rss_before_mib": rss_before, "peak_rss_mib": _rss_mib(), "cpu_s": _cpu_s() - cpu_before}


@dataclass
class DeliveryRun:
    nodes: int
    records: int
    file_mib: float
    generate_s: float
    result: dict[str, Any]


def bench_delivery(base: Path, node_counts: Sequence[int], seed: int) -> tuple[list[DeliveryRun], float]:
    lots = max(node_counts)             # one lot = 8 GPUs = one node of 8 GPUs
    template = base / "delivery-template"
    delivery_id, clock_ns, setup_s = prepare_delivery(template, lots)
    probe_key = _settings(template).load_probe_key()
    runs = []
    for nodes in node_counts:
        path = base / f"telemetry-{nodes}.csv"
        started = time.perf_counter()
        records = write_telemetry(path, GeneratorConfig(delivery_id=delivery_id, start_ns=MONTH_START_NS,
                                                        hours=MONTH_HOURS, nodes=nodes, seed=seed,
                                                        failing=Decimal("0.05")), probe_key)
        generate_s = time.perf_counter() - started
        data_dir = base / f"delivery-{nodes}"
        shutil.copytree(template, data_dir)
        result = _child({"kind": "delivery", "data_dir": str(data_dir), "telemetry": str(path), "clock_ns": clock_ns})
        assert result["accepted"] == records and result["status"] == ["posted"], result
        runs.append(DeliveryRun(nodes, records, path.stat().st_size / 2**20, generate_s, result))
        print(f"  delivery {nodes:,} nodes: {records:,} records, job {result['total_s']:.1f} s", flush=True)
        path.unlink()
        shutil.rmtree(data_dir)
    return runs, setup_s


# -- daily settlement ------------------------------------------------------------------------------
def daily_commands(series: int, accounts: int, trades_per_account: int) -> list[tuple[int, Command]]:
    """Listing, accounts, and trades among pairs of accounts during Dec 1 (the last 2% in the VWAP window)."""
    symbols = [f"H100-M40-S{n:03d}" for n in range(series)]
    opening = DAILY_CUT_NS - 8 * NS_PER_HOUR
    timed: list[tuple[int, Command]] = [(opening, ListSeries(make_spec(symbol))) for symbol in symbols]
    for account in range(1, accounts + 1):
        timed += [(opening, CreateAccount(account)), (opening, Deposit(account, DAILY_CASH_MICROS))]
    pairs = [(2 * i + 1, 2 * i + 2) for i in range(accounts // 2)]
    trades = [(r, i, pair) for r in range(trades_per_account) for i, pair in enumerate(pairs)]
    day_start, window_start = opening + NS_PER_MINUTE, DAILY_CUT_NS - 2 * NS_PER_MINUTE
    in_window = len(trades) // 50
    for n, (r, i, (a, b)) in enumerate(trades):
        symbol = symbols[(i + 7 * r) % series]
        seller, buyer = (a, b) if (i + r) % 2 == 0 else (b, a)
        price = 460 + (i * 13 + r * 7) % 41
        lots = 1 + (i + r) % 10
        early = len(trades) - in_window
        at = (day_start + n * (window_start - day_start - NS_PER_MINUTE) // max(1, early) if n < early
              else window_start + (n - early) * (2 * NS_PER_MINUTE - 10**9) // max(1, in_window))
        timed += [(at, PlaceOrder(seller, symbol, Side.SELL, lots, price, tif=TimeInForce.GTC)),
                  (at, PlaceOrder(buyer, symbol, Side.BUY, lots, price, tif=TimeInForce.GTC))]
    return timed


def child_daily(data_dir: Path, clock_ns: int) -> dict[str, Any]:
    settings, catalog = _settings(data_dir), load_catalog()
    phases: dict[str, float] = {}
    patches: dict[str, object] = {name: _timed(phases, name, getattr(daily_job, name))
                                  for name in ("replay_cuts", "plan_daily", "margin_calls", "daily_statements")}
    patches["job_session"] = _timed_session(phases)
    write = StatementArchive.write
    StatementArchive.write = _timed(phases, "statements_write", write)  # type: ignore[method-assign]
    for name, patched in patches.items():
        setattr(daily_job, name, patched)
    rss_before, cpu_before = _rss_mib(), _cpu_s()
    started = time.perf_counter()
    report = asyncio.run(daily_job.run_daily(settings, catalog, settlement_day_ns(DAILY_CUT_NS), Clock(clock_ns)))
    total = time.perf_counter() - started
    accounted = sum(v for k, v in phases.items() if k != "recovery_replayed")
    phases["posting"] = total - accounted
    holders = {a for plan in report.plans for a in plan.positions}
    return {"total_s": total, "phases": phases, "plans": len(report.plans), "posted": len(report.posted),
            "postings": sum(len(plan.postings) for plan in report.plans), "holders": len(holders),
            "positions": sum(len(plan.positions) for plan in report.plans),
            "statements": report.statements_written, "margin_calls": len(report.margin_calls),
            "rss_before_mib": rss_before, "peak_rss_mib": _rss_mib(), "cpu_s": _cpu_s() - cpu_before}


def bench_daily(base: Path, series: int, accounts: int, trades_per_account: int) -> tuple[dict[str, Any], int, float]:
    data_dir = base / "daily"
    started = time.perf_counter()
    timed = daily_commands(series, accounts, trades_per_account)
    clock = Clock(timed[0][0])
    _setup(_settings(data_dir), load_catalog(), clock, timed)
    setup_s = time.perf_counter() - started
    result = _child({"kind": "daily", "data_dir": str(data_dir), "clock_ns": DAILY_CUT_NS + 30 * NS_PER_MINUTE})
    assert result["posted"] == result["plans"] == series, result
    shutil.rmtree(data_dir)
    return result, len(timed), setup_s


# -- driver ----------------------------------------------------------------------------------------
def _child(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job in a fresh interpreter (so its peak RSS is its own); its result as JSON."""
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], check=True, capture_output=True,
                          text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _run_child(spec: str) -> None:
    job = json.loads(spec)
    if job["kind"] == "delivery":
        result = child_delivery(Path(job["data_dir"]), Path(job["telemetry"]), job["clock_ns"])
    else:
        result = child_daily(Path(job["data_dir"]), job["clock_ns"])
    print(json.dumps(result))


def machine_info() -> list[tuple[str, str]]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [("machine", f"{os.cpu_count()} CPUs ({model}), {platform.platform()}"),
            ("load average", f"{load} before the run (1, 5, 15 min)"),
            ("python", f"{platform.python_implementation()} {platform.python_version()}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: check that the script works")
    parser.add_argument("--nodes", type=int, nargs="*", default=None,
                        help="delivery runs, nodes of 8 GPUs × 744 h each (default 135 1000 1345: ~100k, 744k, 1M)")
    parser.add_argument("--series", type=int, default=None, help="daily: series (default 100)")
    parser.add_argument("--accounts", type=int, default=None, help="daily: accounts holding positions (10,000)")
    parser.add_argument("--trades-per-account", type=int, default=3, help="daily: trades each account makes")
    parser.add_argument("--skip-delivery", action="store_true")
    parser.add_argument("--skip-daily", action="store_true")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        _run_child(args.child)
        return
    node_counts = args.nodes or ([3, 14] if args.quick else [135, 1000, 1345])
    series = args.series or (5 if args.quick else 100)
    accounts = args.accounts or (100 if args.quick else 10_000)
    base = args.dir or Path(tempfile.mkdtemp(prefix="settlement-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    try:
        deliveries: list[DeliveryRun] = []
        delivery_setup_s = 0.0
        if not args.skip_delivery:
            print("delivery settlement ...", flush=True)
            deliveries, delivery_setup_s = bench_delivery(base, node_counts, args.seed)
        daily: tuple[dict[str, Any], int, float] | None = None
        if not args.skip_daily:
            print("daily settlement ...", flush=True)
            daily = bench_daily(base, series, accounts, args.trades_per_account)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print()
    width = max(len(k) for k, _ in info)
    for key, value in info:
        print(f"{key:<{width}}  {value}")
    if deliveries:
        print(f"\nDelivery settlement, one delivery of {MONTH_HOURS} h, {max(node_counts) * 8:,} GPUs contracted "
              f"(setup through expiry {delivery_setup_s:.1f} s, not timed); target 744,000 records <= 60 s")
        header = (f"{'nodes':>6} {'records':>10} {'file MiB':>9} {'gen s':>6} {'job s':>7} {'records/s':>10} "
                  f"{'read+fold s':>12} {'rec/s':>9} {'other s':>8} {'CPU s':>7} {'RSS0 MiB':>9} {'peak MiB':>9} "
                  f"{'E GPU-h':>12}")
        print(header)
        print("-" * len(header))
        for run in deliveries:
            r = run.result
            print(f"{run.nodes:>6,} {run.records:>10,} {run.file_mib:>9.1f} {run.generate_s:>6.1f} "
                  f"{r['total_s']:>7.2f} {run.records / r['total_s']:>10,.0f} "
                  f"{r['fold_s']:>12.2f} {run.records / r['fold_s']:>9,.0f} "
                  f"{r['total_s'] - r['fold_s']:>8.2f} {r['cpu_s']:>7.2f} "
                  f"{r['rss_before_mib']:>9.1f} {r['peak_rss_mib']:>9.1f} "
                  f"{r['effective_gpuh'][0]:>12,.1f}")
    if daily is not None:
        result, commands, setup_s = daily
        phases = result["phases"]
        print(f"\nDaily settlement: {series} series, {accounts:,} accounts × {args.trades_per_account} trades; "
              f"journal {commands:,} commands (setup {setup_s:.1f} s, not timed)")
        print(f"  run_daily total {result['total_s']:.2f} s ({result['cpu_s']:.2f} CPU s): "
              f"{result['plans']} series settled, "
              f"{result['postings']:,} variation-margin postings, {result['positions']:,} positions held by "
              f"{result['holders']:,} accounts, {result['statements']:,} statements (one store row each), "
              f"{result['margin_calls']} margin calls; peak RSS {result['peak_rss_mib']:.0f} MiB "
              f"(before the job {result['rss_before_mib']:.0f} MiB)")
        rows = [("service open (recovery of the live core)", "open"),
                ("replay of the journal into cuts", "replay_cuts"), ("planning", "plan_daily"),
                ("posting (SettleDaily, durable) + expiry", "posting"), ("margin calls", "margin_calls"),
                ("statements: computed", "daily_statements"), ("statements: stored (one transaction)",
                                                                "statements_write"), ("service close", "close")]
        for label, key in rows:
            seconds = phases.get(key, 0.0)
            extra = (f"  ({int(phases['recovery_replayed']):,} commands replayed)" if key == "open" else
                     f"  ({commands / seconds:,.0f} commands/s)" if key == "replay_cuts" and seconds else "")
            print(f"  {label:<42} {seconds:>7.2f} s {100 * seconds / result['total_s']:>5.1f}%{extra}")


if __name__ == "__main__":
    main()
