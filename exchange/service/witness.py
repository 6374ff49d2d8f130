"""Witnesses of what was committed, checked before recovery trusts the journal's end.

The journal is the truth, but only if it is whole. A journal cut short (a truncated file, a lost
segment, a restore from an old copy) still reads as a valid, shorter journal; recovering from it would
reissue sequence numbers and order ids that clients already hold and leave the SQL store ahead of the
engine. So before anything is written, recovery asks every independent witness how far the journal
was known to be durable:

- the commit marker (`journal/COMMITTED`), as found: published after each group commit's fsync;
- the SQL store's projected seq: the store projects only durable commands;
- the snapshots: each file is named by the journal seq it covers, written only after that seq was durable.

If the journal ends before any of them, the exchange refuses to start (`JournalBehind`), naming the
file, the offset and each witness. Only a record beyond every witness can be a torn write from a crash
(never acknowledged); a damaged record at or below the highest witness is damage, not a torn tail.
The way out is the operator's (README, "Durability"): restore the journal from a copy, or accept the
loss explicitly with `exchange recover --accept-loss`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from exchange.journal.journal import segment_paths
from exchange.journal.marker import CommitMarkerReader
from exchange.service.snapshot import snapshot_files


@dataclass(frozen=True, slots=True)
class Witness:
    name: str      # "commit marker", "SQL store", "snapshot"
    seq: int       # the journal seq it says was committed
    where: str     # the file (or store URL) it was read from

    def __str__(self) -> str:
        return f"{self.name} {self.where} says seq {self.seq}"


class JournalBehind(Exception):
    """The journal ends before what its witnesses say was committed: committed records are missing."""

    def __init__(self, path: Path | None, offset: int, journal_seq: int, witnesses: list[Witness]) -> None:
        ahead = [w for w in witnesses if w.seq > journal_seq]
        where = f"{path} at offset {offset}" if path is not None else "an empty journal"
        super().__init__(
            f"the journal ends at seq {journal_seq} ({where}) but {'; '.join(map(str, ahead))}: committed records "
            "are missing, so the exchange will not start (it would reissue seqs and order ids). Restore the "
            "journal from a copy, or accept the loss with `exchange recover --accept-loss` (see the README, "
            "Durability)")
        self.path = path
        self.offset = offset
        self.journal_seq = journal_seq
        self.witnesses = witnesses


def gather(journal_dir: Path, snapshot_dir: Path, store_seq: int | None, store_where: str = "") -> list[Witness]:
    """Every witness found, read as found (before recovery rewrites anything); none says seq 0."""
    found: list[Witness] = []
    reader = CommitMarkerReader(journal_dir)
    try:
        # A marker still all zeros was created but never published (a crash right after creating it).
        fresh = reader.path.exists() and not reader.path.read_bytes().strip(b"\0")
        marker_seq = None if fresh else reader.read()
    except RuntimeError:
        # Not evidence of anything, but not to be ignored silently either: the operator decides.
        raise ValueError(f"the commit marker {reader.path} is damaged (its check word never matches): if the journal "
                         "is intact (`exchange replay --verify` with the marker moved away says so), remove the "
                         "marker and start again") from None
    finally:
        reader.close()
    if marker_seq:
        found.append(Witness("commit marker", marker_seq, str(reader.path)))
    if store_seq:
        found.append(Witness("SQL store", store_seq, store_where or "(projected seq)"))
    if snapshot_dir.is_dir():
        snapshots = snapshot_files(snapshot_dir)
        if snapshots:
            seq, path = snapshots[0]   # the newest
            if seq:
                found.append(Witness("snapshot", seq, str(path)))
    return found


def committed_floor(witnesses: list[Witness]) -> int:
    """The highest seq any witness says was committed (0 if none)."""
    return max((w.seq for w in witnesses), default=0)


def journal_end(journal_dir: Path) -> tuple[Path | None, int]:
    """The last segment and its size: where a journal that ends early ends."""
    paths = segment_paths(journal_dir) if journal_dir.is_dir() else []
    return (paths[-1], paths[-1].stat().st_size) if paths else (None, 0)
