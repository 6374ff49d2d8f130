"""The durable service over a real data directory: recovery, snapshots, projection catch-up, lock."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from exchange.domain.commands import Command
from exchange.domain.engine import Engine
from exchange.domain.statehash import state_hash
from exchange.service.exchange_service import DataDirLocked, ExchangeService, ServiceConfig, verify_replay
from exchange.service.sequencer import Sequenced
from exchange.service.snapshot import snapshot_files
from exchange.testing.flow import random_commands


class ReplayClock:
    """Gives the flow's own timestamps back, so live and replayed states are comparable."""

    def __init__(self, times: list[int]) -> None:
        self.times = iter(times)
        self.last = 0

    def __call__(self) -> int:
        self.last = next(self.times, self.last)
        return self.last


class RecordingProjector:
    """A projection that keeps every seq it was given, and checks it never sees one twice."""

    def __init__(self, last_seq: int = 0) -> None:
        self._last = last_seq
        self.seen: list[int] = []

    def last_seq(self) -> int:
        return self._last

    def project(self, batch: Sequence[Sequenced]) -> None:
        for item in batch:
            if item.seq <= self._last:
                continue
            assert item.seq == self._last + 1, f"projection gap: {self._last} -> {item.seq}"
            self.seen.append(item.seq)
            self._last = item.seq


def _run(service: ExchangeService, commands: list[Command]) -> None:
    async def main() -> None:
        await service.start()
        for command in commands:
            await service.submit(command)
        await service.stop()
    asyncio.run(main())


def _reference(stream: list[tuple[Command, int]]) -> str:
    engine = Engine()
    for command, ts in stream:
        engine.apply(command, ts)
    return state_hash(engine)


def test_restart_recovers_the_exact_state_with_and_without_snapshots(tmp_path: Path) -> None:
    stream = random_commands(21, 1_200)
    config = ServiceConfig(tmp_path, snapshot_every_commands=0)
    first, second = stream[:700], stream[700:]
    _run(ExchangeService(config, clock_ns=ReplayClock([ts for _, ts in first])), [c for c, _ in first])
    assert _reference(first) == verify_replay(config).from_scratch
    service = ExchangeService(config)
    report = service.open()
    assert (report.snapshot_seq, report.journal_seq) == (0, 700)
    service.snapshot_now()
    service.close()
    _run(ExchangeService(config, clock_ns=ReplayClock([ts for _, ts in second])), [c for c, _ in second])
    reopened = ExchangeService(config)
    report = reopened.open()
    assert (report.snapshot_seq, report.journal_seq, report.replayed) == (700, len(stream), len(second))
    assert reopened.engine is not None and state_hash(reopened.engine) == _reference(stream)
    reopened.close()
    check = verify_replay(config)
    assert check.ok and check.snapshot_seq == 700 and check.from_scratch == _reference(stream)


@pytest.mark.parametrize("mode", ["inline", "fork"])
def test_periodic_snapshots_are_written_and_valid(tmp_path: Path, mode: str) -> None:
    stream = random_commands(22, 900)
    config = ServiceConfig(tmp_path, snapshot_every_commands=200, snapshot_mode=mode)  # type: ignore[arg-type]
    _run(ExchangeService(config, clock_ns=ReplayClock([ts for _, ts in stream])), [c for c, _ in stream])
    assert snapshot_files(config.snapshot_dir), "no snapshot written"
    check = verify_replay(config)
    assert check.ok and check.snapshot_seq is not None and check.from_scratch == _reference(stream)


def test_a_lagging_projection_catches_up_without_gaps_or_duplicates(tmp_path: Path) -> None:
    stream = random_commands(23, 600)
    config = ServiceConfig(tmp_path, snapshot_every_commands=250, snapshot_mode="inline")
    projector = RecordingProjector()
    _run(ExchangeService(config, projector, ReplayClock([ts for _, ts in stream])), [c for c, _ in stream])
    assert projector.seen == list(range(1, len(stream) + 1))
    # A projection that crashed after seq 300 (its own transaction recorded 300): it gets 301.. again,
    # from a snapshot no newer than 300 plus the journal.
    lagging = RecordingProjector(last_seq=300)
    service = ExchangeService(config, lagging)
    report = service.open()
    service.close()
    assert lagging.seen == list(range(301, len(stream) + 1))
    assert report.snapshot_seq <= 300 and report.projected == len(stream) - 300


def test_one_process_per_data_directory(tmp_path: Path) -> None:
    config = ServiceConfig(tmp_path)
    first = ExchangeService(config)
    first.open()
    with pytest.raises(DataDirLocked, match="in use"):
        ExchangeService(config).open()
    first.close()
    second = ExchangeService(config)
    second.open()
    second.close()
