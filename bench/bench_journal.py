"""Journal throughput: appends with group commit of various sizes, and read-back (decode) speed.

    python bench/bench_journal.py [--commands N] [--dir PATH]

Uses the seeded mixed command stream of exchange.testing.flow. The directory should be on the
disk the exchange will use (default: a temporary directory), since fsync cost is the disk's.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exchange.journal import Journal, read_entries
from exchange.testing.flow import random_commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    stream = random_commands(7, args.commands)
    base = args.dir or Path(tempfile.mkdtemp(prefix="journal-bench-"))
    print(f"{len(stream):,} commands into {base}")
    for group in (1, 10, 100, 1_000):
        directory = base / f"group-{group}"
        shutil.rmtree(directory, ignore_errors=True)
        n = min(len(stream), 5_000 if group == 1 else len(stream))  # one fsync per command is slow
        start = time.perf_counter()
        with Journal.open(directory) as journal:
            for seq, (command, ts) in enumerate(stream[:n], start=1):
                journal.append(seq, ts, command)
                if seq % group == 0:
                    journal.commit()
        elapsed = time.perf_counter() - start
        rate = n / elapsed
        print(f"  append + commit every {group:>5}: {rate:>10,.0f} commands/s  ({rate / group:,.0f} fsync/s)")
    directory = base / "group-1000"
    start = time.perf_counter()
    count = sum(1 for _ in read_entries(directory))
    elapsed = time.perf_counter() - start
    print(f"  read back and verify:        {count / elapsed:>10,.0f} commands/s")
    if args.dir is None:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
