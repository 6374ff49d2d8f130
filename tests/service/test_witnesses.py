"""A journal that ends before what was committed never starts (issue: integrity, durability).

A data directory runs 500 commands through the real service with a real SQLite store, with and
without a snapshot (at seq 300). Copies of it are then damaged the ways disks and operators damage
them: truncated at ≥ 20 seeded random offsets after the newest snapshot (or anywhere, without one),
a flipped byte in the last committed record, a commit marker ahead of the journal, a store ahead of
the journal. Each must refuse, before writing anything, naming the file, the offset and the seqs; the
operator's way out (`recover --accept-loss`) must leave a directory that never issues a seq or order id
twice and whose store equals its core.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exchange.cli import app
from exchange.domain.commands import Command, PlaceOrder
from exchange.domain.events import OrderAccepted
from exchange.domain.order import Side
from exchange.journal.journal import JournalCorrupt, segment_paths
from exchange.journal.marker import CommitMarker, CommitMarkerReader
from exchange.journal.record import HEADER
from exchange.service.exchange_service import ExchangeService, ServiceConfig, verify_replay
from exchange.service.loss import accept_loss
from exchange.service.witness import JournalBehind
from exchange.store import Store
from exchange.store.store import existing_store_seq
from exchange.testing.flow import random_commands
from tests.service.test_exchange_service import ReplayClock

COMMANDS = 500
SNAPSHOT_AT = 300
runner = CliRunner()


def _config(data: Path) -> ServiceConfig:
    return ServiceConfig(data, snapshot_every_commands=0, snapshot_mode="inline", deadline_poll_ms=0)


def _url(data: Path) -> str:
    return f"sqlite:///{data / 'exchange.db'}"


def _store(data: Path) -> Store:
    store = Store(_url(data))
    store.migrate()
    return store


def _build(data: Path, snapshot: bool) -> None:
    stream = random_commands(31, COMMANDS)[:COMMANDS]
    commands: list[Command] = [c for c, _ in stream]

    async def run(service: ExchangeService, part: list[Command]) -> None:
        await service.start()
        for command in part:
            await service.submit(command)
        await service.stop()

    data.mkdir(parents=True)
    store = _store(data)
    times = [ts for _, ts in stream]
    first = ExchangeService(_config(data), store, ReplayClock(times[:SNAPSHOT_AT]))
    first.open()
    asyncio.run(run(first, commands[:SNAPSHOT_AT]))
    if snapshot:
        again = ExchangeService(_config(data), store)
        again.open()
        again.snapshot_now()
        again.close()
    rest = ExchangeService(_config(data), store, ReplayClock(times[SNAPSHOT_AT:]))
    rest.open()
    asyncio.run(run(rest, commands[SNAPSHOT_AT:]))
    assert store.last_seq() == COMMANDS
    store.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    root = tmp_path_factory.mktemp("witnesses")
    dirs = {True: root / "with-snapshot", False: root / "without-snapshot"}
    for snapshot, data in dirs.items():
        _build(data, snapshot)
    return dirs


def _copy(built: dict[bool, Path], snapshot: bool, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(built[snapshot], data)
    return data


def _record_offsets(segment: Path) -> list[int]:
    """The byte offset of each record of a segment, in order."""
    data, offset, offsets = segment.read_bytes(), 0, []
    while offset < len(data):
        offsets.append(offset)
        length, _ = HEADER.unpack_from(data, offset)
        offset += HEADER.size + length
    return offsets


def _open(data: Path) -> None:
    store = Store(_url(data))
    try:
        ExchangeService(_config(data), store).open()
    finally:
        store.close()


def _assert_refused_untouched(data: Path, error: type[Exception], *say: str) -> str:
    """Opening refuses with `error`, its message says each of `say`, and nothing was written."""
    segment = segment_paths(data / "journal")[-1]
    before = (segment.read_bytes(), (data / "journal" / "COMMITTED").read_bytes())
    with pytest.raises(error) as refused:
        _open(data)
    message = str(refused.value)
    for part in say:
        assert part in message, message
    assert (segment.read_bytes(), (data / "journal" / "COMMITTED").read_bytes()) == before
    with pytest.raises(error):
        verify_replay(_config(data), existing_store_seq(_url(data)))
    return message


@pytest.mark.parametrize("snapshot", [True, False], ids=["after-the-snapshot", "no-snapshot"])
def test_a_truncated_journal_refuses_at_every_offset(built: dict[bool, Path], tmp_path: Path, snapshot: bool) -> None:
    segment = segment_paths(built[snapshot] / "journal")[-1]
    offsets = _record_offsets(segment)
    low = offsets[SNAPSHOT_AT] if snapshot else 1    # past the snapshot's last record (or anywhere)
    rng = random.Random(7 if snapshot else 8)
    cuts = [*sorted(rng.sample(range(low, segment.stat().st_size), 20)), offsets[-1]]   # and a record boundary
    for n, cut in enumerate(cuts):
        data = _copy(built, snapshot, tmp_path / str(n))
        target = segment_paths(data / "journal")[-1]
        with open(target, "r+b") as file:
            file.truncate(cut)
        message = _assert_refused_untouched(data, JournalBehind, str(target), "commit marker",
                                            f"says seq {COMMANDS}", "SQL store")
        assert f"offset {cut}" in message or "offset" in message


def test_a_flipped_byte_in_the_last_committed_record_is_damage_not_a_torn_write(built: dict[bool, Path],
                                                                               tmp_path: Path) -> None:
    data = _copy(built, True, tmp_path)
    segment = segment_paths(data / "journal")[-1]
    last = _record_offsets(segment)[-1]
    raw = bytearray(segment.read_bytes())
    raw[last + HEADER.size + 3] ^= 0x01
    segment.write_bytes(bytes(raw))
    _assert_refused_untouched(data, JournalCorrupt, str(segment), f"offset {last}", f"expected seq {COMMANDS}",
                              "damage, not a torn write")


def test_a_marker_ahead_of_the_journal_refuses(built: dict[bool, Path], tmp_path: Path) -> None:
    data = _copy(built, True, tmp_path)
    marker = CommitMarker(data / "journal")
    marker.publish(COMMANDS + 5)
    marker.close()
    _assert_refused_untouched(data, JournalBehind, f"ends at seq {COMMANDS}", "commit marker", f"seq {COMMANDS + 5}")


def test_a_store_ahead_of_the_journal_refuses(built: dict[bool, Path], tmp_path: Path) -> None:
    """The journal cut at a record boundary, the marker rewritten to match and no snapshot: the store is
    the one witness left."""
    data = _copy(built, False, tmp_path)
    segment = segment_paths(data / "journal")[-1]
    with open(segment, "r+b") as file:
        file.truncate(_record_offsets(segment)[450])
    marker = CommitMarker(data / "journal")
    marker.publish(450)
    marker.close()
    _assert_refused_untouched(data, JournalBehind, "ends at seq 450", "SQL store", f"says seq {COMMANDS}")


def test_replay_verify_and_serve_say_why_without_a_traceback(built: dict[bool, Path], tmp_path: Path) -> None:
    data = _copy(built, True, tmp_path)
    segment = segment_paths(data / "journal")[-1]
    with open(segment, "r+b") as file:
        file.truncate(segment.stat().st_size - 7)
    for args in (["replay", "--verify"], ["serve", "--no-feeds", "--no-demo", "--port", "0"]):
        result = runner.invoke(app, [*args, "--data", str(data)], env={"EXCHANGE_MASTER_KEY": "ab" * 32})
        output = " ".join(result.output.split())
        assert result.exit_code == 1, output
        assert "committed records are missing" in output and str(segment) in " ".join(output.split())
        assert "Traceback" not in output
    assert CommitMarkerReader(data / "journal").read() == COMMANDS   # untouched


def test_accepting_the_loss_never_issues_a_seq_or_order_id_twice(built: dict[bool, Path], tmp_path: Path) -> None:
    data = _copy(built, True, tmp_path)
    segment = segment_paths(data / "journal")[-1]
    with open(segment, "r+b") as file:
        file.truncate(_record_offsets(segment)[460] + 5)   # seq 461 cut in the middle: 460 remain
    store = Store(_url(data))
    report = accept_loss(data, store, 1_800_000_000 * 10**9)
    store.close()
    assert (report.journal_seq, report.lost_from_seq, report.store_reset) == (460, 461, True)
    assert report.record is not None and '"lost_from_seq": 461' in report.record.read_text()
    assert (data / "recovery").is_dir() and any((data / "recovery").rglob(segment.name))   # moved, not deleted

    store = Store(_url(data))
    service = ExchangeService(_config(data), store)
    report_open = service.open()
    assert report_open.journal_seq == 460 and store.last_seq() == 460   # the store was rebuilt to match
    engine = service.engine
    assert engine is not None
    known_ids = {row.order_id for account in engine.accounts for row in store.orders(account, limit=1_000)}
    next_id = engine.next_order_id
    account = min(a for a in engine.accounts if a > 0)
    symbol = sorted(engine.series)[0]
    reference = engine.series[symbol].reference_price_ticks

    async def place() -> list[object]:
        await service.start()
        try:
            result = await service.submit_sequenced(PlaceOrder(account, symbol, Side.BUY, 1, reference))
            assert result.seq == 461   # the next seq after the journal's end, once
            return list(result.events)
        finally:
            await service.stop()
    events = asyncio.run(place())
    accepted = [e for e in events if isinstance(e, OrderAccepted)]
    if accepted:
        assert accepted[0].order_id == next_id and next_id not in known_ids
        assert [row.order_id for row in store.orders(account, limit=1_000)].count(next_id) == 1
    service.close()
    store.close()


def test_a_damaged_marker_is_reported_not_ignored(built: dict[bool, Path], tmp_path: Path) -> None:
    data = _copy(built, True, tmp_path)
    (data / "journal" / "COMMITTED").write_bytes(b"\x01" * 16)
    with pytest.raises(ValueError, match=r"commit marker .* is damaged"):
        _open(data)


def test_a_marker_never_published_is_no_witness(built: dict[bool, Path], tmp_path: Path) -> None:
    data = _copy(built, True, tmp_path)
    (data / "journal" / "COMMITTED").write_bytes(b"\0" * 16)
    _open(data)   # the journal reaches the other witnesses: it starts
