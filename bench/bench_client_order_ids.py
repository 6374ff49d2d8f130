"""Memory and snapshot size over 1,000,000 orders with unique client order ids (issue 13).

    python bench/bench_client_order_ids.py [--orders N] [--days D]

The core remembers a client order id 24 h (and while its order is open). N orders (default 1,000,000)
with unique client order ids are spread evenly over D days (default 3) of command time: a market maker
keeps 20 resting orders a side (each cancelled and replaced after a while, so some ids stay open for
hours) and takers send IOC orders that trade or are cancelled. At every quarter the script prints the
process's resident memory, the number of remembered client order ids and the snapshot's size: once
the first day has passed they stay flat instead of growing with every order.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exchange.domain.commands import CancelOrder, CreateAccount, Deposit, ListSeries, PlaceOrder
from exchange.domain.engine import Engine
from exchange.domain.events import OrderAccepted
from exchange.domain.order import OrderType, Side, TimeInForce
from exchange.service.snapshot import snapshot_bytes
from exchange.testing.specs import T0_NS, make_spec

DAY_NS = 86_400 * 10**9


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=3.0)
    args = parser.parse_args()
    symbol = "H100-M40-261203"
    delivery_ns = (T0_NS + int((args.days + 2) * DAY_NS)) // DAY_NS * DAY_NS   # a delivery after the run
    spec = replace(make_spec(symbol, max_position_lots=10**9), delivery_start_ns=delivery_ns,
                   delivery_end_ns=delivery_ns + DAY_NS, trading_end_ns=delivery_ns - 8 * 3_600 * 10**9)
    engine = Engine()
    t = T0_NS
    for command in (CreateAccount(1), CreateAccount(2), Deposit(1, 10**15), Deposit(2, 10**15), ListSeries(spec)):
        engine.apply(command, t)
    step_ns = int(args.days * DAY_NS / args.orders)
    resting: list[int] = []
    ref = spec.reference_price_ticks
    print(f"{'orders':>10} {'day':>5} {'RSS MiB':>8} {'ids kept':>9} {'open orders':>11} {'snapshot KiB':>12} "
          f"{'orders/s':>9}")
    started = time.perf_counter()
    for n in range(1, args.orders + 1):
        t += step_ns
        if n % 10 == 0:   # the maker: one resting order per ten, the oldest cancelled past 40 a side
            side = Side.BUY if n % 20 else Side.SELL
            price = ref - 1 - n % 7 if side == Side.BUY else ref + 1 + n % 7
            events = engine.apply(PlaceOrder(1, symbol, side, 5, price, client_order_id=f"m{n}"), t)
            resting.extend(e.order_id for e in events if isinstance(e, OrderAccepted))
            if len(resting) > 40:
                engine.apply(CancelOrder(1, resting.pop(0)), t)
        else:             # a taker's IOC: trades against the maker or is cancelled
            side = Side.BUY if n % 2 else Side.SELL
            engine.apply(PlaceOrder(2, symbol, side, 1, ref + (2 if side == Side.BUY else -2), OrderType.LIMIT,
                                    TimeInForce.IOC, client_order_id=f"t{n}"), t)
        if n % (args.orders // 4) == 0:
            gc.collect()
            size_kib = len(snapshot_bytes(engine, n)) / 1024
            rate = n / (time.perf_counter() - started)
            print(f"{n:>10,} {(t - T0_NS) / DAY_NS:>5.2f} {rss_mib():>8.1f} {len(engine.client_orders):>9,} "
                  f"{len(engine.orders):>11,} {size_kib:>12,.0f} {rate:>9,.0f}")
    engine.audit()


if __name__ == "__main__":
    main()
