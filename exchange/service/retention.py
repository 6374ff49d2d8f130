"""Journal retention: old segments move out of `journal/` into `journal-archive/` (issue 13).

A long-running exchange's journal grows with every command. A segment is archived when all of these
hold (the policy is `journal_retention_days`, 0 = off):

- it is not the newest segment (the one being written);
- every record in it is covered by the newest snapshot (recovery starts there) and by the SQL store's
  projection (a restart catches the store up from its own seq);
- it was last written more than `journal_retention_days` ago.

Archiving is a rename into the sibling folder, so it costs nothing and loses nothing: every reader of
history (recovery falling back to an older snapshot, `exchange replay --verify` from scratch, the
settlement jobs' replay of the cuts, feed gateways and other followers, `JournalTail`) reads the
archived segments transparently (`exchange.journal.journal.readable_segment_paths`), and a follower
reading one as it moves keeps its open file. The archive is what an operator moves to cheaper
storage, compresses or, accepting that replays from scratch then need it restored, deletes.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from exchange.journal.journal import archive_dir, segment_paths
from exchange.service.snapshot import snapshot_files

log = logging.getLogger(__name__)

NS_PER_DAY = 86_400 * 1_000_000_000


@dataclass
class RetentionReport:
    archived: list[Path] = field(default_factory=list)
    floor_seq: int = 0          # the highest seq every consumer has passed
    kept: int = 0               # segments left in journal/


def archive_segments(data_dir: Path, keep_days: int, store_seq: int | None,
                     now_ns: int | None = None) -> RetentionReport:
    """Move every segment that the policy lets go into `journal-archive/` (see the module docstring)."""
    assert keep_days >= 1, "retention keeps at least a day"
    journal_dir = data_dir / "journal"
    now_ns = time.time_ns() if now_ns is None else now_ns
    snapshots = snapshot_files(data_dir / "snapshots")
    witnesses = [snapshots[0][0] if snapshots else 0, store_seq or 0]
    report = RetentionReport(floor_seq=min(witnesses))
    paths = segment_paths(journal_dir) if journal_dir.is_dir() else []
    target = archive_dir(journal_dir)
    horizon_ns = now_ns - keep_days * NS_PER_DAY
    for path, following in itertools.pairwise(paths):   # never the newest segment
        last_seq = int(following.stem) - 1
        if last_seq > report.floor_seq or path.stat().st_mtime_ns > horizon_ns:
            break   # segments are in seq order: nothing later can go either
        target.mkdir(mode=0o700, exist_ok=True)
        os.rename(path, target / path.name)
        report.archived.append(target / path.name)
    if report.archived:
        for folder in (target, journal_dir):   # the renames are durable before anyone relies on them
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        log.info("journal retention: archived %d segment(s) up to seq %d into %s", len(report.archived),
                 int(paths[len(report.archived)].stem) - 1, target)
    report.kept = len(paths) - len(report.archived)
    return report
