"""Rebuild the core after a restart or a crash: the journal is the truth, the engine is replayed from it.

`recover(Engine, journal_dir)` opens the journal (which checks every record and truncates a torn
tail: a record cut short by a crash was never committed, so never acknowledged), replays every entry
into a fresh engine at the time the sequencer gave it, and returns the engine and the journal, ready
for a `Sequencer` to continue at the next sequence number.

With `snapshot=(seq, engine)` (an engine restored from a snapshot that covers the journal up to and
including `seq`), recovery starts from that engine and replays only the entries after `seq`: this is
where snapshot + journal-tail recovery plugs in, so the time to restart stays bounded however long
the journal grows.

`JournalCorrupt` (damage that is not a torn tail) propagates: recovery never skips a record. So does
an exception from the engine while replaying (a core bug that the sequencer also hit live).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from exchange.domain.engine import Engine
from exchange.journal.journal import Journal, ScanResult, read_entries


def recover(engine_factory: Callable[[], Engine], journal_dir: Path,
            snapshot: tuple[int, Engine] | None = None) -> tuple[Engine, Journal]:
    """(engine, journal) with every committed journal entry applied; the caller closes the journal."""
    journal_dir.mkdir(parents=True, exist_ok=True)
    if snapshot is None:
        after_seq, engine = 0, engine_factory()
    else:
        after_seq, engine = snapshot
    # One pass over the journal: every record is checked, those after the snapshot are applied, and
    # the scan result (last seq, torn tail) opens the journal for appending without reading it again.
    scanned: list[ScanResult] = []
    expected = after_seq + 1
    for entry in read_entries(journal_dir, after_seq=after_seq, scan=scanned):
        assert entry.seq == expected, (entry.seq, expected)  # read_entries checks gaplessness
        engine.apply(entry.command, entry.ts_ns)
        expected += 1
    result = scanned[0]
    if result.last_seq < after_seq:
        raise ValueError(f"the snapshot is at seq {after_seq} but the journal ends at seq {result.last_seq}: "
                         f"the journal lost committed records")
    assert expected - 1 == result.last_seq
    return engine, Journal.open_scanned(journal_dir, result)
