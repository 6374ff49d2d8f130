"""The feed gateway's replica: it follows a live service's journal through the commit marker and
reaches the identical state, with the identical events, without ever reading past the marker."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from exchange.domain.commands import Command
from exchange.domain.engine import Engine, EngineLimits
from exchange.domain.statehash import state_hash
from exchange.feeds.replica import Replica, ReplicaNotReady
from exchange.journal.journal import Journal, JournalCorrupt
from exchange.journal.marker import CommitMarker, CommitMarkerReader
from exchange.journal.tail import JournalTail
from exchange.service.exchange_service import ExchangeService, ServiceConfig
from exchange.service.sequencer import Sequenced
from exchange.testing.flow import random_commands
from tests.service.test_exchange_service import ReplayClock


def _config(data_dir: Path, **more: object) -> ServiceConfig:
    return ServiceConfig(data_dir, deadline_poll_ms=0, **more)  # type: ignore[arg-type]


def test_the_replica_follows_a_live_service_chunk_by_chunk_with_the_same_events(tmp_path: Path) -> None:
    stream = random_commands(5, 1_500)
    config = _config(tmp_path, snapshot_every_commands=500, snapshot_mode="inline")
    live: list[Sequenced] = []
    followed: list[Sequenced] = []

    async def main() -> None:
        service = ExchangeService(config, clock_ns=ReplayClock([ts for _, ts in stream]))
        service.open()
        service.add_listener(live.extend)
        await service.start()
        replica = Replica(tmp_path, EngineLimits())
        replica.open()
        for start in range(0, len(stream), 97):
            await asyncio.gather(*(service.submit(c) for c, _ in stream[start:start + 97]))
            while batch := replica.poll(records_max=50):
                followed.extend(batch)
            assert replica.seq == service.engine.commands_applied and replica.lag == 0  # type: ignore[union-attr]
        assert replica.engine is not None and service.engine is not None
        assert state_hash(replica.engine) == state_hash(service.engine)
        replica.close()
        await service.stop()

    asyncio.run(main())
    assert [s.seq for s in followed] == list(range(1, len(stream) + 1))
    assert followed == live


def test_a_replica_opened_later_starts_from_the_newest_snapshot(tmp_path: Path) -> None:
    stream = random_commands(6, 900)
    config = _config(tmp_path, snapshot_every_commands=300, snapshot_mode="inline")

    async def main() -> None:
        service = ExchangeService(config, clock_ns=ReplayClock([ts for _, ts in stream]))
        await service.start()
        for command, _ in stream:
            await service.submit(command)
        replica = Replica(tmp_path, EngineLimits())
        engine = replica.open()
        assert service.engine is not None and state_hash(engine) == state_hash(service.engine)
        replica.close()
        await service.stop()

    asyncio.run(main())
    assert any((tmp_path / "snapshots").iterdir())


def test_without_a_marker_the_replica_is_not_ready(tmp_path: Path) -> None:
    with pytest.raises(ReplicaNotReady, match="commit marker"):
        Replica(tmp_path, EngineLimits()).open()


def _write(directory: Path, commands: list[tuple[Command, int]], segment_bytes_max: int, *,
           commit_upto: int) -> Journal:
    journal = Journal.open(directory, segment_bytes_max)
    for seq, (command, ts) in enumerate(commands, start=1):
        journal.append(seq, ts, command)
        if seq == commit_upto:
            journal.commit()
    return journal


def test_the_tail_crosses_segments_and_stops_at_the_requested_seq(tmp_path: Path) -> None:
    stream = random_commands(7, 400)
    journal = _write(tmp_path, stream, 2_000, commit_upto=len(stream))
    assert len(list(tmp_path.glob("*.journal"))) > 5
    tail = JournalTail(tmp_path, after_seq=33)
    got = tail.read_until(250)
    assert [e.seq for e in got] == list(range(34, 251))
    assert [e.command for e in got] == [c for c, _ in stream[33:250]]
    rest = tail.read_until(len(stream), records_max=10)
    assert [e.seq for e in rest] == list(range(251, 261))
    assert tail.read_until(260) == []
    tail.close()
    journal.close()


def test_the_tail_waits_for_the_next_segment_and_refuses_a_missing_record(tmp_path: Path) -> None:
    stream = random_commands(8, 20)
    journal = _write(tmp_path, stream[:10], 1 << 20, commit_upto=10)
    tail = JournalTail(tmp_path, after_seq=10)
    assert tail.read_until(10) == []
    with pytest.raises(JournalCorrupt, match="committed up to seq 11, but the journal ends at seq 10"):
        tail.read_until(11)
    journal.close()


def test_the_tail_refuses_a_damaged_record(tmp_path: Path) -> None:
    stream = random_commands(9, 30)
    journal = _write(tmp_path, stream, 1 << 20, commit_upto=len(stream))
    journal.close()
    segment = next(tmp_path.glob("*.journal"))
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt):
        JournalTail(tmp_path).read_until(len(stream))


def test_the_marker_round_trips_and_a_torn_value_is_never_returned(tmp_path: Path) -> None:
    reader = CommitMarkerReader(tmp_path)
    assert reader.read() is None
    marker = CommitMarker(tmp_path)
    marker.publish(0)
    assert reader.read() == 0
    for seq in (1, 2, 2**40 + 7):
        marker.publish(seq)
        assert reader.read() == seq
    # A second writer (a restarted service) maps the same file: the reader's map sees it.
    marker.close()
    again = CommitMarker(tmp_path)
    again.publish(5)
    assert reader.read() == 5
    with open(tmp_path / "COMMITTED", "r+b") as raw:   # a torn write: the check word does not match
        raw.seek(0)
        raw.write((6).to_bytes(8, "little"))
        raw.flush()
        os.fsync(raw.fileno())
    with pytest.raises(RuntimeError, match="no consistent value"):
        reader.read()
    again.close()
    reader.close()


def test_a_follower_never_applies_what_is_not_committed(tmp_path: Path) -> None:
    stream = random_commands(10, 50)
    journal = _write(tmp_path / "journal", stream[:40], 1 << 20, commit_upto=30)
    marker = CommitMarker(tmp_path / "journal")
    marker.publish(30)
    replica = Replica(tmp_path, EngineLimits())
    engine = replica.open()
    assert engine.commands_applied == 30 and replica.poll() == []
    journal.commit()
    marker.publish(40)
    assert [s.seq for s in replica.poll()] == list(range(31, 41))
    reference = Engine()
    for command, ts in stream[:40]:
        reference.apply(command, ts)
    assert state_hash(engine) == state_hash(reference)
    journal.close()
    marker.close()
    replica.close()
