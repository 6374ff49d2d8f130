"""Rebuild the core after a restart or a crash: the journal is the truth, the engine is replayed from it.

`recover(Engine, journal_dir)` opens the journal (which checks every record and truncates a torn
tail: a record cut short by a crash was never committed, so never acknowledged), replays every entry
into a fresh engine at the time the sequencer gave it, and returns the engine and the journal, ready
for a `Sequencer` to continue at the next sequence number.

With `snapshot=(seq, engine)` (an engine restored from a snapshot that covers the journal up to and
including `seq`), recovery starts from that engine and replays only the entries after `seq`: this is
where snapshot + journal-tail recovery plugs in, so the time to restart stays bounded however long
the journal grows.

`witnesses` (`exchange.service.witness`: the commit marker as found, the store's seq, the snapshots)
say how far the journal was committed: a journal that ends before any of them raises `JournalBehind`
and a damaged record at or below them `JournalCorrupt`, both before anything is written (the torn-tail
truncation happens only once the whole journal checked out).

`JournalCorrupt` (damage that is not a torn tail) propagates: recovery never skips a record. So does
an exception from the engine while replaying (a core bug that the sequencer also hit live).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from exchange.domain.engine import Engine
from exchange.journal.journal import Journal, JournalCorrupt, ScanResult, read_entries, scan
from exchange.service.witness import JournalBehind, Witness, committed_floor, journal_end


def recover(engine_factory: Callable[[], Engine], journal_dir: Path,
            snapshot: tuple[int, Engine] | None = None,
            witnesses: Sequence[Witness] = ()) -> tuple[Engine, Journal]:
    """(engine, journal) with every committed journal entry applied; the caller closes the journal."""
    journal_dir.mkdir(parents=True, exist_ok=True)
    floor = committed_floor(list(witnesses))
    if snapshot is None:
        after_seq, engine = 0, engine_factory()
    else:
        after_seq, engine = snapshot
    # One pass over the journal: every record is checked, those after the snapshot are applied, and
    # the scan result (last seq, torn tail) opens the journal for appending without reading it again.
    scanned: list[ScanResult] = []
    expected = after_seq + 1
    with cut_is_behind(witnesses):
        for entry in read_entries(journal_dir, after_seq=after_seq, scan=scanned, committed_seq=floor):
            assert entry.seq == expected, (entry.seq, expected)  # read_entries checks gaplessness
            engine.apply(entry.command, entry.ts_ns)
            expected += 1
    result = scanned[0]
    if result.last_seq < max(floor, after_seq):
        path, offset = ((result.torn_path, result.torn_offset) if result.torn_path is not None
                        else journal_end(journal_dir))
        behind = [*witnesses, Witness("snapshot loaded", after_seq, "(recovery)")]
        raise JournalBehind(path, offset, result.last_seq, behind)
    assert expected - 1 == result.last_seq
    return engine, Journal.open_scanned(journal_dir, result)


def check_end(journal_dir: Path, witnesses: Sequence[Witness]) -> None:
    """Raise `JournalBehind` (or `JournalCorrupt`) if the journal's newest segment ends before what a
    witness says was committed. Reads only the newest segment: `exchange serve`'s quick refusal before it
    binds a port (recovery's own full scan makes the same checks on every segment)."""
    floor = committed_floor(list(witnesses))
    if not floor:
        return
    with cut_is_behind(witnesses):
        result = scan(journal_dir, committed_seq=floor, last_segment_only=True)
    if result.last_seq < floor:
        path, offset = ((result.torn_path, result.torn_offset) if result.torn_path is not None
                        else journal_end(journal_dir))
        raise JournalBehind(path, offset, result.last_seq, list(witnesses))


@contextmanager
def cut_is_behind(witnesses: Sequence[Witness]) -> Iterator[None]:
    """A journal whose last segment simply ends inside a committed record was cut short: say so as
    `JournalBehind` (with every witness) rather than as damage."""
    try:
        yield
    except JournalCorrupt as error:
        if error.short and witnesses:
            raise JournalBehind(error.path, error.offset, error.expected_seq - 1, list(witnesses)) from None
        raise
