"""A process to kill: submits the seeded command stream through a Sequencer onto a real journal.

    python -m exchange.testing.crashdriver --dir D --seed S --count N [--window W]

Prints `ready` once the stream is built and the sequencer started, then `ack <seq> <index>` (flushed)
for each command whose result came back, i.e. whose journal record was fsynced, and `done` at the end.
Up to `--window` submissions are in flight at once (a pipelined client), so batches are large.

The sequencer's clock replays the stream's own timestamps: commands are queued in stream order and
the sequencer reads the clock once per command, so the journal should hold exactly a prefix of the
stream, times included, and the state after recovery should equal a plain replay of that prefix.
The crash test (tests/service/test_sequencer.py) kills this process with SIGKILL and checks that.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from exchange.domain.engine import Engine
from exchange.journal.journal import Journal
from exchange.service.sequencer import Sequencer
from exchange.testing.flow import random_commands


def replaying_clock(timestamps: Iterable[int]) -> Callable[[], int]:
    """A clock that returns the given times one call after another (then keeps the last one)."""
    it = iter(timestamps)
    last = 0

    def clock() -> int:
        nonlocal last
        last = next(it, last)
        return last

    return clock


async def drive(directory: Path, seed: int, count: int, window: int) -> None:
    stream = random_commands(seed, count)
    journal = Journal.open(directory)
    if journal.last_seq:
        raise SystemExit(f"{directory} already holds a journal (up to seq {journal.last_seq})")
    sequencer = Sequencer(Engine(), journal, clock_ns=replaying_clock(ts for _, ts in stream))
    await sequencer.start()
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    next_index = 0

    async def submitter() -> None:
        nonlocal next_index
        while next_index < len(stream):
            index = next_index  # taking the index and queueing happen with no await between: stream order
            next_index += 1
            result = await sequencer.submit_sequenced(stream[index][0])
            out.write(f"ack {result.seq} {index}\n")
            out.flush()

    await asyncio.gather(*(submitter() for _ in range(window)))
    await sequencer.stop()
    journal.close()
    out.write("done\n")
    out.flush()


async def drive_service(data_dir: Path, seed: int, count: int, window: int, snapshot_every: int) -> None:
    """The same, through the whole service: data directory, SQL store projection, periodic snapshots."""
    from exchange.service.exchange_service import ExchangeService, ServiceConfig
    from exchange.store import Store

    stream = random_commands(seed, count)
    data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{data_dir / 'exchange.db'}")
    store.migrate()
    # No deadline task: it would read the replaying clock and add AdvanceTime records to the stream.
    config = ServiceConfig(data_dir, snapshot_every_commands=snapshot_every, snapshot_mode="fork",
                           deadline_poll_ms=0)
    service = ExchangeService(config, store, clock_ns=replaying_clock(ts for _, ts in stream))
    report = service.open()
    if report.journal_seq:
        raise SystemExit(f"{data_dir} already holds a journal (up to seq {report.journal_seq})")
    await service.start()
    sequencer = service.sequencer
    assert sequencer is not None
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    next_index = 0

    async def submitter() -> None:
        nonlocal next_index
        while next_index < len(stream):
            index = next_index
            next_index += 1
            result = await sequencer.submit_sequenced(stream[index][0])
            out.write(f"ack {result.seq} {index}\n")
            out.flush()

    await asyncio.gather(*(submitter() for _ in range(window)))
    await service.stop()
    out.write("done\n")
    out.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--service", action="store_true",
                        help="go through ExchangeService with the SQL store and snapshots; --dir is the data dir")
    parser.add_argument("--snapshot-every", type=int, default=2_000)
    args = parser.parse_args(argv)
    if args.service:
        asyncio.run(drive_service(args.dir, args.seed, args.count, args.window, args.snapshot_every))
    else:
        asyncio.run(drive(args.dir, args.seed, args.count, args.window))


if __name__ == "__main__":
    main()
