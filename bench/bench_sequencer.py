"""Sequencer benchmark: durable throughput vs the bare engine, and ack latency at a paced offered load.

    python bench/bench_sequencer.py [--commands N] [--window W] [--seconds S] [--dir PATH]

1. The in-memory core: `Engine.apply` over the seeded mixed stream of exchange.testing.flow.
2. The durable path on the same stream in the same run: a `Sequencer` over a real `Journal` with
   `--window` submissions in flight (a pipelined client), so every ack means "fsynced". Reports
   commands/s, the ratio to (1), batches and fsync times, and checks the state hash equals (1)'s.
3. Ack latency at offered loads of 1,000 and 10,000 commands/s for `--seconds` each: a paced driver
   submits command i at t0 + i/rate and measures from that scheduled time (not from when the driver
   got round to it) to the ack, so a stall shows up in the latency rather than hiding it.

The directory should be on the disk the exchange will use (default: a temporary directory): the
fsync cost is the disk's. Numbers are printed, not asserted.
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

from exchange.domain.commands import Command
from exchange.domain.engine import Engine
from exchange.domain.statehash import state_hash
from exchange.journal import Journal
from exchange.service.sequencer import Sequencer
from exchange.testing.crashdriver import replaying_clock
from exchange.testing.flow import random_commands


def percentile(sorted_values: list[int], fraction: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def micros(ns: int) -> str:
    return f"{ns / 1_000:,.0f} us"


async def durable(stream: list[tuple[Command, int]], directory: Path, window: int) -> tuple[float, Sequencer]:
    journal = Journal.open(directory)
    sequencer = Sequencer(Engine(), journal, clock_ns=replaying_clock(ts for _, ts in stream))
    await sequencer.start()
    next_index = 0

    async def submitter() -> None:
        nonlocal next_index
        while next_index < len(stream):
            index = next_index  # take and queue with no await between: the stream's order, the stream's times
            next_index += 1
            await sequencer.submit(stream[index][0])

    start = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(window)))
    elapsed = time.perf_counter() - start
    await sequencer.stop()
    journal.close()
    return elapsed, sequencer


async def durable_batched(stream: list[tuple[Command, int]], directory: Path, groups: int,
                          group_size: int) -> tuple[float, Sequencer]:
    """The same, with a client that pipelines groups of commands (`submit_many`): `groups` in flight."""
    journal = Journal.open(directory)
    sequencer = Sequencer(Engine(), journal, clock_ns=replaying_clock(ts for _, ts in stream))
    await sequencer.start()
    next_index = 0

    async def submitter() -> None:
        nonlocal next_index
        while next_index < len(stream):
            start = next_index  # take and queue with no await between, as above
            next_index = min(start + group_size, len(stream))
            outcomes = await sequencer.submit_many([command for command, _ in stream[start:next_index]])
            assert all(not isinstance(o, Exception) for o in outcomes)

    start = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(groups)))
    elapsed = time.perf_counter() - start
    await sequencer.stop()
    journal.close()
    return elapsed, sequencer


async def paced(stream: list[tuple[Command, int]], directory: Path, rate: int, seconds: float) -> None:
    count = min(len(stream), int(rate * seconds))
    journal = Journal.open(directory)
    sequencer = Sequencer(Engine(), journal, clock_ns=replaying_clock(ts for _, ts in stream))
    await sequencer.start()
    latencies: list[int] = []       # from the scheduled submit time
    service_times: list[int] = []    # from the actual submit call
    tasks: list[asyncio.Task[None]] = []
    t0 = time.perf_counter_ns()
    period_ns = 1_000_000_000 // rate

    async def one(index: int) -> None:
        submitted = time.perf_counter_ns()
        await sequencer.submit(stream[index][0])
        acked = time.perf_counter_ns()
        latencies.append(acked - (t0 + index * period_ns))
        service_times.append(acked - submitted)

    index = 0
    while index < count:
        due = min(count, (time.perf_counter_ns() - t0) // period_ns + 1)
        while index < due:
            tasks.append(asyncio.create_task(one(index)))
            index += 1
        await asyncio.sleep(max(0.0, (t0 + index * period_ns - time.perf_counter_ns()) / 1e9))
    await asyncio.gather(*tasks)
    elapsed = (time.perf_counter_ns() - t0) / 1e9
    await sequencer.stop()
    journal.close()
    latencies.sort()
    service_times.sort()
    print(f"  offered {rate:>6,}/s for {count:,} commands: achieved {count / elapsed:,.0f}/s, "
          f"{sequencer.batches_committed:,} commits ({count / max(1, sequencer.batches_committed):.1f} commands each)\n"
          f"    ack latency from schedule: p50 {micros(percentile(latencies, 0.50))}, "
          f"p99 {micros(percentile(latencies, 0.99))}, max {micros(latencies[-1])}\n"
          f"    ack latency from submit:   p50 {micros(percentile(service_times, 0.50))}, "
          f"p99 {micros(percentile(service_times, 0.99))}, max {micros(service_times[-1])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=1_024, help="submissions in flight (durable run)")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each paced run")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    stream = random_commands(7, args.commands)
    base = args.dir or Path(tempfile.mkdtemp(prefix="sequencer-bench-"))
    print(f"{len(stream):,} commands; journal under {base}")

    engine = Engine()
    start = time.perf_counter()
    for command, ts in stream:
        engine.apply(command, ts)
    in_memory = len(stream) / (time.perf_counter() - start)
    print(f"  in-memory Engine.apply:           {in_memory:>10,.0f} commands/s")

    directory = base / "durable"
    shutil.rmtree(directory, ignore_errors=True)
    elapsed, sequencer = asyncio.run(durable(stream, directory, args.window))
    rate = len(stream) / elapsed
    fsyncs = sorted(sequencer.fsync_ns)
    print(f"  durable, {args.window} in flight:        {rate:>10,.0f} commands/s  "
          f"({rate / in_memory:.0%} of in-memory; {sequencer.batches_committed:,} commits, "
          f"{len(stream) / sequencer.batches_committed:.0f} commands each; "
          f"commit p50 {micros(percentile(fsyncs, 0.5))}, p99 {micros(percentile(fsyncs, 0.99))})")
    print(f"  same state as in-memory:          {state_hash(sequencer.engine) == state_hash(engine)}")

    directory = base / "durable-batched"
    shutil.rmtree(directory, ignore_errors=True)
    elapsed, sequencer = asyncio.run(durable_batched(stream, directory, groups=16, group_size=64))
    rate = len(stream) / elapsed
    print(f"  durable, 16 groups of 64 in flight (submit_many): {rate:>10,.0f} commands/s  "
          f"({rate / in_memory:.0%} of in-memory; {sequencer.batches_committed:,} commits); same state: "
          f"{state_hash(sequencer.engine) == state_hash(engine)}")

    for offered in (1_000, 10_000):
        directory = base / f"paced-{offered}"
        shutil.rmtree(directory, ignore_errors=True)
        asyncio.run(paced(stream, directory, offered, args.seconds))
    if args.dir is None:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
