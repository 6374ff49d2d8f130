"""The operator's way out when committed journal records are gone: `exchange recover --accept-loss`.

Restoring the journal from a copy is always better (nothing is lost). When there is no copy, this
accepts the loss explicitly and leaves a data directory that is consistent with what the journal still
holds, so that no seq or order id the exchange issues from now on collides with one it has now:

1. the journal is cut at its last whole record (a damaged record and everything after it, later
   segments included, are moved, never deleted, to `recovery/<stamp>/journal/`);
2. snapshots past the journal's end are moved to `recovery/<stamp>/snapshots/` (they describe state
   the journal no longer has);
3. if the SQL store is ahead of the journal, its projection is reset and rebuilt from the journal at
   the next start (API keys stay, except those of accounts the journal no longer has);
4. the commit marker is set to the journal's end;
5. `recovery/<stamp>/loss.json` records what was lost: the journal's end, every witness, the files moved.

Acknowledged commands past the journal's end are lost for good: clients that hold their answers must be
told (the loss record says from which seq).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from exchange.domain.engine import Engine
from exchange.journal.journal import JournalCorrupt, read_entries, scan, segment_paths
from exchange.journal.marker import CommitMarker
from exchange.service import witness
from exchange.service.snapshot import snapshot_files
from exchange.store.store import Store

TRUNCATIONS_MAX = 1_000   # each pass cuts at least one record: a bound, not an expected count


@dataclass
class LossReport:
    journal_seq: int                                   # the journal's last seq after the cut
    witnesses: list[witness.Witness]
    moved: list[str] = field(default_factory=list)     # files moved aside (original paths)
    store_reset: bool = False
    record: Path | None = None                         # the loss.json written

    @property
    def lost_from_seq(self) -> int | None:
        """The first seq that a witness said was committed and the journal no longer has, or None."""
        floor = witness.committed_floor(self.witnesses)
        return self.journal_seq + 1 if floor > self.journal_seq else None


def accept_loss(data_dir: Path, store: Store | None, now_ns: int) -> LossReport:
    """Make the data directory consistent with what its journal still holds (see the module doc)."""
    journal_dir, snapshot_dir = data_dir / "journal", data_dir / "snapshots"
    stamp = datetime.fromtimestamp(now_ns // 1_000_000_000, UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = data_dir / "recovery" / stamp
    with open(data_dir / "LOCK", "ab") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"{data_dir} is in use by a running exchange: stop it first") from None
        store_seq = store.last_seq() if store is not None else None
        witnesses = witness.gather(journal_dir, snapshot_dir, store_seq, "the SQL store")
        report = LossReport(0, witnesses)
        _cut_journal(journal_dir, aside, report)
        end = report.journal_seq
        for seq, path in snapshot_files(snapshot_dir):
            if seq > end:
                report.moved.append(_move(path, aside / "snapshots"))
        if store is not None and store_seq is not None and store_seq > end:
            engine = Engine()
            for entry in read_entries(journal_dir):
                engine.apply(entry.command, entry.ts_ns)
            store.reset_projection(set(engine.accounts))
            report.store_reset = True
        if journal_dir.is_dir():
            marker = CommitMarker(journal_dir)
            try:
                marker.publish(end)
            finally:
                marker.close()
        aside.mkdir(parents=True, exist_ok=True)
        report.record = aside / "loss.json"
        report.record.write_text(json.dumps({
            "accepted_at": stamp, "journal_seq": end, "lost_from_seq": report.lost_from_seq,
            "witnesses": [{"name": w.name, "seq": w.seq, "where": w.where} for w in witnesses],
            "moved": report.moved, "store_reset": report.store_reset,
        }, indent=2) + "\n")
    return report


def _cut_journal(journal_dir: Path, aside: Path, report: LossReport) -> None:
    """Cut the journal at its first damaged record, moving what is cut aside; report its last seq."""
    if not journal_dir.is_dir():
        return
    for _ in range(TRUNCATIONS_MAX):
        try:
            result = scan(journal_dir)
        except JournalCorrupt as damage:
            for later in [p for p in segment_paths(journal_dir) if p > damage.path]:
                report.moved.append(_move(later, aside / "journal"))
            _cut(damage.path, damage.offset, aside, report)
            continue
        if result.torn_path is not None:
            _cut(result.torn_path, result.torn_offset, aside, report)
        report.journal_seq = result.last_seq
        return
    raise ValueError(f"{journal_dir}: still damaged after {TRUNCATIONS_MAX} cuts")


def _cut(path: Path, offset: int, aside: Path, report: LossReport) -> None:
    """Cut a segment at `offset`, keeping a full copy of it as found."""
    (aside / "journal").mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, aside / "journal" / path.name)
    report.moved.append(f"{path} (from offset {offset}; a full copy kept)")
    if offset == 0:
        path.unlink()
        return
    with open(path, "r+b") as segment:
        segment.truncate(offset)
        os.fsync(segment.fileno())


def _move(path: Path, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    os.replace(path, folder / path.name)
    return str(path)
