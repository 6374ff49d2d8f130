"""Snapshot size and speed for a large book: write (encode, hash, fsync) and read (verify, restore).

    python bench/bench_snapshot.py [--orders N] [--dir PATH]

Builds an engine with N resting orders (default 100,000) over the two standard test series and 50
accounts, a tenth with client order ids and a tenth GTD, then times each step. Prints, asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgpack

from exchange.domain.commands import CreateAccount, Deposit, ListSeries, PlaceOrder
from exchange.domain.engine import Engine, EngineLimits
from exchange.domain.order import Side, TimeInForce
from exchange.domain.statehash import state_hash
from exchange.domain.units import NS_PER_SECOND
from exchange.service.snapshot import (
    HEADER_BYTES,
    _engine,
    _gc_paused,
    read_snapshot,
    snapshot_bytes,
    write_snapshot,
)
from exchange.testing.flow import default_specs
from exchange.testing.specs import T0_NS

ACCOUNTS = 50


def build(orders: int) -> Engine:
    rng = random.Random(0)
    specs = default_specs()
    engine = Engine(EngineLimits(max_open_orders_per_account=orders // ACCOUNTS + 1))
    ts = T0_NS
    for spec in specs:
        engine.apply(ListSeries(spec), ts)
    for account in range(1, ACCOUNTS + 1):
        engine.apply(CreateAccount(account), ts)
        engine.apply(Deposit(account, 10**14), ts)
    for i in range(orders):
        ts += 1_000
        spec = specs[i % len(specs)]
        ref = spec.reference_price_ticks
        band = ref // 10
        side = Side(rng.randrange(2))
        price = ref - rng.randint(1, band) if side == Side.BUY else ref + rng.randint(1, band)
        gtd = rng.random() < 0.1
        events = engine.apply(PlaceOrder(
            i % ACCOUNTS + 1, spec.symbol, side, rng.choice((1, 2, 3)), price,
            tif=TimeInForce.GTD if gtd else TimeInForce.GTC,
            client_order_id=f"c{i}" if rng.random() < 0.1 else None,
            expire_ts_ns=ts + 3_600 * NS_PER_SECOND if gtd else None,
        ), ts)
        assert type(events[-1]).__name__ == "OrderAccepted", events
    assert len(engine.orders) == orders
    return engine


def timed(label: str, fn: object) -> object:
    assert callable(fn)
    start = time.perf_counter()
    result = fn()
    print(f"  {label:<44} {time.perf_counter() - start:8.3f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    engine = build(args.orders)
    print(f"{len(engine.orders):,} resting orders, {len(engine.client_orders):,} client order ids, "
          f"{len(engine._expiries):,} pending expiries (built in {time.perf_counter() - start:.1f} s)")
    base = args.dir or Path(tempfile.mkdtemp(prefix="snapshot-bench-"))
    data = timed("snapshot_bytes (encode + state hash)", lambda: snapshot_bytes(engine, 1))
    assert isinstance(data, bytes)
    path = timed("write_snapshot (the above + write + 2 fsyncs)", lambda: write_snapshot(base, engine, 1))
    assert isinstance(path, Path)
    result = timed("read_snapshot (checksum, restore, state hash)", lambda: read_snapshot(path.read_bytes()))
    body = data[HEADER_BYTES:]
    print("  parts (the collector paused, as the module does):")
    with _gc_paused():
        timed("  state_hash (done by both write and read)", lambda: state_hash(engine))
        timed("  unpack + rebuild the engine", lambda: _engine(msgpack.unpackb(body, raw=False)))
    assert isinstance(result, tuple) and result[1] == state_hash(engine)
    print(f"  size {len(data):,} bytes ({len(data) / len(engine.orders):.0f} bytes per resting order)")
    if args.dir is None:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
