"""Engine throughput against the reference book, on the standard seeded workload.

    python bench/bench_engine.py [--events N] [--runs R]

Reports, as medians of R runs on one core, events/s of:
  ref       bench/refengine.py, the yardstick (a bare sortedcontainers book: no validation, no events)
  matching  exchange.domain.book.OrderBook alone: matching + events, no validation or risk
  core      exchange.domain.engine.Engine: validation, STP, risk, margin, fees, ledger, events
and each as a ratio to `ref` measured in the same run (absolute speed drifts on shared machines).
The cyclic garbage collector is paused inside each timed loop, as `timeit` does, for all three.
Every run checks that the traded quantity and fill count equal the workload's own expectation.
Then it measures memory per resting order with tracemalloc over 100,000 resting orders.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

# Benchmark the tree this file sits in (a mypyc-compiled copy made by bench/compile_core.py too),
# not whichever `exchange` happens to be installed.
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import refengine
import workload

from exchange.domain.book import NO_ASK, OrderBook, Stamp
from exchange.domain.codes import CancelReason
from exchange.domain.commands import (
    CancelOrder,
    Command,
    CreateAccount,
    Deposit,
    ListSeries,
    PlaceOrder,
)
from exchange.domain.engine import Engine
from exchange.domain.events import Trade
from exchange.domain.order import Order, OrderType, Side, StpMode, TimeInForce
from exchange.domain.spec import PeriodKind, SeriesSpec
from exchange.domain.units import NS_PER_HOUR

SYMBOL = "H100-M40-261203"
ACCOUNTS_PER_SIDE = 1_000  # buyers and sellers never share an account, so STP never fires
T0_NS = 1_764_000_000 * 1_000_000_000


def bench_spec() -> SeriesSpec:
    """A daily H100 series with the shipped fee, margin and size limits. The workload's price walk
    spans 1000±430 ticks, so the band is ±50% around 1000 instead of the rulebook's ±10%."""
    return SeriesSpec(
        symbol=SYMBOL, product="H100-M40", generation="H100", mfu_grade=Decimal("0.40"),
        period=PeriodKind.DAILY, gpus_per_lot=8, delivery_start_ns=T0_NS + 48 * NS_PER_HOUR,
        delivery_end_ns=T0_NS + 72 * NS_PER_HOUR, trading_end_ns=T0_NS + 40 * NS_PER_HOUR,
        tick_micros=5_000, reference_price_ticks=1_000, price_band_ppm=500_000, max_order_lots=500,
        max_position_lots=5_000, initial_margin_ppm=120_000, taker_fee_ppm=200, maker_fee_ppm=0,
    )


def run_ref(events: list[tuple[int, int, int, int, int]]) -> tuple[float, int, int]:
    book = refengine.OrderBook()
    limit, market, cancel = book.limit, book.market, book.cancel
    traded = fills = 0
    start = time.perf_counter()
    for kind, oid, side, price, qty in events:
        if kind == 0:
            trades = limit(oid, side, price, qty)
        elif kind == 1:
            cancel(oid)
            continue
        else:
            trades = market(oid, side, qty)
        for trade in trades:
            traded += trade[3]
            fills += 1
    return time.perf_counter() - start, traded, fills


def run_matching(events: list[tuple[int, int, int, int, int]]) -> tuple[float, int, int]:
    stamp = Stamp(ts_ns=T0_NS)
    book = OrderBook(bench_spec(), stamp)
    place, cancel = book.place, book.cancel
    orders: dict[int, Order] = {}
    gtc, ioc, stp = TimeInForce.GTC, TimeInForce.IOC, StpMode.CANCEL_NEWEST
    requested = CancelReason.REQUESTED
    out: list[Any] = []
    start = time.perf_counter()
    for kind, oid, side, price, qty in events:
        if kind == 1:
            cancel(orders.pop(oid), requested, out)
            continue
        if kind == 0:
            order = Order(oid, oid, SYMBOL, side, price, qty, gtc, False, stp, None, None)
            orders[oid] = order
            place(order, out, True)
        else:
            order = Order(oid, oid, SYMBOL, side, NO_ASK - 1 if side == 0 else 1, qty, ioc,
                          False, stp, None, None)
            place(order, out, False)
    elapsed = time.perf_counter() - start
    trades = [e for e in out if type(e) is Trade]
    return elapsed, sum(t.qty_lots for t in trades), len(trades)


def core_commands(events: list[tuple[int, int, int, int, int]]) -> tuple[list[Command], list[Command]]:
    setup: list[Command] = [ListSeries(bench_spec())]
    for account_id in range(1, 2 * ACCOUNTS_PER_SIDE + 1):
        setup += [CreateAccount(account_id), Deposit(account_id, 10**13)]
    cmds: list[Command] = []
    for kind, oid, side, price, qty in events:
        account_id = 1 + oid % ACCOUNTS_PER_SIDE + (ACCOUNTS_PER_SIDE if side == 1 else 0)
        if kind == 0:
            cmds.append(PlaceOrder(account_id, SYMBOL, Side(side), qty, price))
        elif kind == 1:
            # The core numbers orders itself; every workload order is accepted, so ids coincide.
            account_id = 1 + oid % ACCOUNTS_PER_SIDE + (ACCOUNTS_PER_SIDE if side == 1 else 0)
            cmds.append(CancelOrder(account_id, oid))
        else:
            cmds.append(PlaceOrder(account_id, SYMBOL, Side(side), qty, None, OrderType.MARKET, TimeInForce.IOC))
    return setup, cmds


def run_core(setup: list[Command], cmds: list[Command]) -> tuple[float, int, int]:
    engine = Engine()
    for cmd in setup:
        engine.apply(cmd, T0_NS)
    apply = engine.apply
    times = range(T0_NS + 1, T0_NS + 1 + len(cmds))
    results: list[list[Any]] = []
    keep = results.append
    start = time.perf_counter()
    for cmd, ts in zip(cmds, times, strict=True):
        keep(apply(cmd, ts))
    elapsed = time.perf_counter() - start
    traded = fills = rejected = 0
    for events in results:
        for event in events:
            if type(event) is Trade:
                traded += event.qty_lots
                fills += 1
            elif type(event).__name__ == "Rejected":
                rejected += 1
    assert rejected == 0, f"{rejected} workload commands were rejected"
    engine.audit()
    return elapsed, traded, fills


def measure(name: str, fn: Callable[[], tuple[float, int, int]], n_events: int, expected: dict[str, int],
            runs: int) -> float:
    rates = []
    for _ in range(runs):
        gc.collect()
        gc.disable()  # as timeit does: the collector's pauses are not the engine's work
        try:
            elapsed, traded, fills = fn()
        finally:
            gc.enable()
        want = expected["expected_traded_qty"]
        assert traded == want, f"{name}: traded {traded} != {want}"
        assert fills == expected["expected_fills"], f"{name}: fills {fills} != {expected['expected_fills']}"
        rates.append(n_events / elapsed)
    median = statistics.median(rates)
    print(f"  {name:<9} {median:>10,.0f} events/s   (runs: {', '.join(f'{r:,.0f}' for r in rates)})")
    return median


def memory_per_resting_order(n: int = 100_000) -> tuple[float, float]:
    """Bytes per resting order: (matching layer book, full core)."""
    spec = bench_spec()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    book = OrderBook(spec, Stamp(ts_ns=T0_NS))
    out: list[Any] = []
    for i in range(n):  # bids on 200 levels well below any ask: nothing matches, everything rests
        book.place(Order(i + 1, 1, SYMBOL, Side.BUY, 600 + i % 200, 1, TimeInForce.GTC, False,
                         StpMode.CANCEL_NEWEST, None, None), out, True)
    book_bytes = (tracemalloc.get_traced_memory()[0] - before) / n
    tracemalloc.stop()
    del book

    engine = Engine()
    engine.apply(ListSeries(spec), T0_NS)
    accounts = 100
    for account_id in range(1, accounts + 1):
        engine.apply(CreateAccount(account_id), T0_NS)
        engine.apply(Deposit(account_id, 10**13), T0_NS)
    cmds = [PlaceOrder(1 + i % accounts, SYMBOL, Side.BUY, 1, 600 + i % 200) for i in range(n)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    from exchange.domain.engine import EngineLimits

    engine.limits = EngineLimits(max_open_orders_per_account=n)
    for cmd in cmds:
        engine.apply(cmd, T0_NS)  # the returned events are dropped: only state is measured
    core_bytes = (tracemalloc.get_traced_memory()[0] - before) / n
    tracemalloc.stop()
    assert len(engine.orders) == n
    return book_bytes, core_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    import exchange.domain.engine as engine_module

    compiled = not engine_module.__file__ or not engine_module.__file__.endswith(".py")
    print(f"core: {'mypyc-compiled' if compiled else 'pure Python'} ({engine_module.__file__}), "
          f"Python {sys.version.split()[0]}")
    events, stats = workload.generate(args.events, args.seed)
    print(f"workload: {args.events:,} events, seed {args.seed}, expected traded {stats['expected_traded_qty']:,}"
          f" lots in {stats['expected_fills']:,} fills; median of {args.runs} runs, one core")
    setup, cmds = core_commands(events)
    ref = measure("ref", lambda: run_ref(events), len(events), stats, args.runs)
    matching = measure("matching", lambda: run_matching(events), len(events), stats, args.runs)
    core = measure("core", lambda: run_core(setup, cmds), len(events), stats, args.runs)
    print(f"ratio matching/ref: {matching / ref:.2f}x   (target >= 1.3x)")
    print(f"ratio core/ref:     {core / ref:.2f}x   (target >= 0.8x)")
    if not args.skip_memory:
        book_bytes, core_bytes = memory_per_resting_order()
        print(f"memory per resting order (tracemalloc, 100,000 orders): book {book_bytes:,.0f} B, "
              f"full core {core_bytes:,.0f} B")


if __name__ == "__main__":
    main()
