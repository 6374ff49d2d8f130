"""Journal retention (issue 13): old segments covered by the newest snapshot and the store move to
journal-archive/, and every reader of history still reads them; nothing a consumer needs leaves."""

from __future__ import annotations

import os
from pathlib import Path

from exchange.catalog import load_catalog
from exchange.domain.engine import Engine
from exchange.domain.statehash import state_hash
from exchange.feeds.replica import Replica
from exchange.journal.journal import Journal, archive_dir, segment_paths
from exchange.journal.marker import CommitMarker
from exchange.service.exchange_service import ExchangeService, ServiceConfig, verify_replay
from exchange.service.retention import NS_PER_DAY, archive_segments
from exchange.service.snapshot import write_snapshot
from exchange.testing.flow import random_commands

LIMITS = load_catalog().rules.engine_limits()


def _data_dir(tmp_path: Path, snapshot_at: int) -> tuple[Path, str, int]:
    """A journal of many small segments, a snapshot after record `snapshot_at`; (dir, final hash, last seq)."""
    data = tmp_path / "data"
    journal_dir = data / "journal"
    engine = Engine(LIMITS)
    stream = random_commands(11, 600)
    with Journal.open(journal_dir, segment_bytes_max=4_096) as journal:
        for seq, (command, ts) in enumerate(stream, 1):
            journal.append(seq, ts, command)
            engine.apply(command, ts)
            if seq == snapshot_at:
                journal.commit()
                write_snapshot(data / "snapshots", engine, seq)
        journal.commit()
    marker = CommitMarker(journal_dir)
    marker.publish(len(stream))
    marker.close()
    for path in segment_paths(journal_dir):   # written long ago
        os.utime(path, ns=(1, 1))
    return data, state_hash(engine), len(stream)


def test_segments_covered_by_the_snapshot_and_the_store_are_archived_and_still_read(tmp_path: Path) -> None:
    data, final_hash, last_seq = _data_dir(tmp_path, snapshot_at=400)
    before = segment_paths(data / "journal")
    assert len(before) > 5
    lagging = archive_segments(data, 1, store_seq=150)          # the store is behind: it bounds the floor
    assert lagging.floor_seq == 150
    assert all(int(p.stem) <= 150 for p in lagging.archived)
    report = archive_segments(data, 1, store_seq=last_seq)
    archived = lagging.archived + report.archived
    assert archived and report.floor_seq == 400
    kept = segment_paths(data / "journal")
    assert int(kept[0].stem) - 1 <= 400 and kept[-1] == before[-1]   # never the newest, nothing past 400
    assert sorted(p.name for p in archive_dir(data / "journal").iterdir()) == [p.name for p in archived]
    # Every reader of history still reads all of it.
    config = ServiceConfig(data, limits=LIMITS, snapshot_mode="inline", deadline_poll_ms=0)
    check = verify_replay(config)
    assert check.ok and check.from_scratch == final_hash and check.journal_seq == last_seq
    replica = Replica(data, LIMITS)
    (data / "snapshots" / "00000000000000000400.snapshot").rename(data / "hidden")   # from seq 1: the archive
    try:
        assert state_hash(replica.open()) == final_hash
    finally:
        replica.close()
    (data / "hidden").rename(data / "snapshots" / "00000000000000000400.snapshot")
    service = ExchangeService(config)
    report_open = service.open()
    try:
        assert report_open.journal_seq == last_seq and service.engine is not None
        assert state_hash(service.engine) == final_hash
    finally:
        service.close()


def test_recent_segments_stay(tmp_path: Path) -> None:
    data, _, last_seq = _data_dir(tmp_path, snapshot_at=500)
    now_ns = max(p.stat().st_mtime_ns for p in segment_paths(data / "journal"))
    assert archive_segments(data, 1, store_seq=last_seq, now_ns=now_ns + NS_PER_DAY - 1).archived == []
    assert archive_segments(data, 1, store_seq=last_seq).archived
