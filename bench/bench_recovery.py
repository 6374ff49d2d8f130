"""Recovery speed: replay of a journal from scratch, and from a snapshot plus the journal tail.

    python bench/bench_recovery.py [--commands 1000000]

Writes the seeded mixed command stream (exchange.testing.flow) into a journal, then measures:
- in-memory core speed on the same commands (Engine.apply only), for the ratio;
- recovery from scratch: read + verify + decode every record and apply it (commands/s, seconds);
- recovery from a snapshot taken at 90% of the journal plus the remaining 10% (seconds).
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exchange.domain.engine import Engine
from exchange.domain.statehash import state_hash
from exchange.journal import Journal
from exchange.service.recovery import recover
from exchange.service.snapshot import read_snapshot, snapshot_path, write_snapshot
from exchange.testing.flow import random_commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="recovery-bench-"))
    journal_dir, snapshot_dir = base / "journal", base / "snapshots"
    started = time.perf_counter()
    stream = random_commands(31, args.commands)
    print(f"{len(stream):,} commands generated in {time.perf_counter() - started:.1f} s; data in {base}")

    gc.disable()  # as in bench_engine.py: measure the work, not the collector's pauses
    engine = Engine()
    started = time.perf_counter()
    for command, ts in stream:
        engine.apply(command, ts)
    core_rate = len(stream) / (time.perf_counter() - started)
    live_hash = state_hash(engine)
    print(f"in-memory core:           {core_rate:>10,.0f} commands/s")

    cut = len(stream) * 9 // 10
    with Journal.open(journal_dir) as journal:
        snap_engine = Engine()
        for seq, (command, ts) in enumerate(stream, start=1):
            journal.append(seq, ts, command)
            if seq <= cut:
                snap_engine.apply(command, ts)
            if seq % 1000 == 0:
                journal.commit()
    write_snapshot(snapshot_dir, snap_engine, cut)
    del snap_engine

    started = time.perf_counter()
    recovered, journal = recover(Engine, journal_dir)
    journal.close()
    elapsed = time.perf_counter() - started
    assert state_hash(recovered) == live_hash
    print(f"recovery from scratch:    {len(stream) / elapsed:>10,.0f} commands/s, {elapsed:.1f} s "
          f"({len(stream) / elapsed / core_rate:.2f}x the in-memory core)")
    del recovered

    started = time.perf_counter()
    seq, _, engine_at_cut = read_snapshot(snapshot_path(snapshot_dir, cut).read_bytes())
    recovered, journal = recover(Engine, journal_dir, (seq, engine_at_cut))
    journal.close()
    elapsed = time.perf_counter() - started
    assert state_hash(recovered) == live_hash
    print(f"recovery from snapshot at {cut:,} + {len(stream) - cut:,} tail: {elapsed:.1f} s")
    gc.enable()
    if args.dir is None:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
