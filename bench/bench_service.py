"""The whole durable service under a pipelined load: journal + group commit + core + SQL projection.

    python bench/bench_service.py [--commands N] [--window W] [--pg URL]

The projection runs inside the commit hook, before acknowledgements, so it is never behind an ack
(lag 0 by construction); its cost shows up as lower throughput, reported here per store backend.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exchange.domain.engine import Engine
from exchange.service.exchange_service import ExchangeService, ServiceConfig
from exchange.store import Store
from exchange.testing.crashdriver import replaying_clock
from exchange.testing.flow import random_commands


async def _drive(service: ExchangeService, commands: list[object], window: int) -> None:
    await service.start()
    next_index = 0

    async def submitter() -> None:
        nonlocal next_index
        while next_index < len(commands):
            index = next_index
            next_index += 1
            await service.submit(commands[index])  # type: ignore[arg-type]

    await asyncio.gather(*(submitter() for _ in range(window)))
    await service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=30_000)
    parser.add_argument("--window", type=int, default=1_024)
    parser.add_argument("--pg", default=None, help="PostgreSQL URL (a scratch database: tables are created)")
    args = parser.parse_args()
    stream = random_commands(41, args.commands)
    engine = Engine()
    started = time.perf_counter()
    for command, ts in stream:
        engine.apply(command, ts)
    core = len(stream) / (time.perf_counter() - started)
    print(f"{len(stream):,} commands; in-memory core {core:,.0f} commands/s")
    backends: list[tuple[str, str | None]] = [("no store", None), ("sqlite", "sqlite")]
    if args.pg:
        backends.append(("postgresql", args.pg))
    for name, url in backends:
        base = Path(tempfile.mkdtemp(prefix="service-bench-"))
        store = None
        if url is not None:
            store = Store(f"sqlite:///{base / 'exchange.db'}" if url == "sqlite" else url)
            store.migrate()
        service = ExchangeService(ServiceConfig(base, snapshot_every_commands=0, deadline_poll_ms=0), store,
                                  clock_ns=replaying_clock(ts for _, ts in stream))
        started = time.perf_counter()
        asyncio.run(_drive(service, [c for c, _ in stream], args.window))
        rate = len(stream) / (time.perf_counter() - started)
        lag = "" if store is None else f", projection lag at the end {len(stream) - store.last_seq()} commands"
        print(f"  durable, {name:<10}: {rate:>8,.0f} commands/s ({rate / core:.0%} of in-memory){lag}")
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
