"""The journal: exact round trips, segment rolling, and each kind of damage gives its documented outcome."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.domain.commands import AdvanceTime, CancelAllAfter, Command, PlaceOrder
from exchange.domain.order import Side
from exchange.journal import CodecError, Journal, JournalCorrupt, decode_command, encode_command, read_entries, scan
from exchange.journal.codec import TAGS
from exchange.journal.record import HEADER_BYTES, encode_record
from exchange.testing.flow import random_commands


def _write(directory: Path, commands: list[tuple[Command, int]], segment_bytes_max: int = 1 << 20) -> None:
    with Journal.open(directory, segment_bytes_max) as journal:
        for seq, (command, ts) in enumerate(commands, start=1):
            journal.append(seq, ts, command)
            if seq % 7 == 0:
                journal.commit()


def test_every_command_kind_round_trips_exactly() -> None:
    commands = [c for c, _ in random_commands(1, 2_000)]
    assert {type(c).__name__ for c in commands} >= {"PlaceOrder", "CancelOrder", "AmendOrder", "ListSeries",
                                                    "Deposit", "Withdraw", "MassCancel", "HaltSeries",
                                                    "CancelAllAfter"}
    for command in commands:
        decoded = decode_command(encode_command(command))
        assert decoded == command and repr(decoded) == repr(command)


def test_cancel_all_after_has_a_stable_tag_and_round_trips() -> None:
    assert TAGS[CancelAllAfter] == 13  # journals on disk depend on it
    for command in (CancelAllAfter(7, 5_000), CancelAllAfter(1, 0), CancelAllAfter(2, -1)):
        encoded = encode_command(command)
        assert encoded == [13, command.account_id, command.timeout_ms]
        decoded = decode_command(encoded)
        assert decoded == command and type(decoded) is CancelAllAfter and repr(decoded) == repr(command)
    # Range is the core's business (it rejects with invalid_timeout); types are the codec's.
    for bad in (CancelAllAfter(1, "5"), CancelAllAfter(1, 1.5), CancelAllAfter(1, True),  # type: ignore[arg-type]
                CancelAllAfter("1", 5)):  # type: ignore[arg-type]
        with pytest.raises(CodecError, match="bad CancelAllAfter fields"):
            encode_command(bad)
    with pytest.raises(CodecError, match="CancelAllAfter takes 2 fields, got 1"):
        decode_command([13, 1])


def test_journal_round_trip_across_segments(tmp_path: Path) -> None:
    stream = random_commands(2, 1_500)
    _write(tmp_path, stream, segment_bytes_max=4_096)
    assert len(list(tmp_path.glob("*.journal"))) > 5
    entries = list(read_entries(tmp_path))
    assert [(e.command, e.ts_ns) for e in entries] == stream
    assert [e.seq for e in entries] == list(range(1, len(stream) + 1))
    assert [e.seq for e in read_entries(tmp_path, after_seq=1_000)][:2] == [1_001, 1_002]
    # Reopening continues after the last record.
    with Journal.open(tmp_path, 4_096) as journal:
        assert journal.last_seq == len(stream)
        journal.append(len(stream) + 1, 1, AdvanceTime())
    assert scan(tmp_path).last_seq == len(stream) + 1


def _last_segment(directory: Path) -> Path:
    return sorted(directory.glob("*.journal"))[-1]


@pytest.mark.parametrize("cut", [1, HEADER_BYTES - 1, HEADER_BYTES + 3])
def test_a_torn_last_record_is_dropped_and_truncated(tmp_path: Path, cut: int) -> None:
    _write(tmp_path, random_commands(3, 50))
    segment = _last_segment(tmp_path)
    record = encode_record(99, 5, PlaceOrder(1, "H100-M40-261203", Side.BUY, 1, 480))
    segment.write_bytes(segment.read_bytes() + record[:cut])
    size_with_tail = segment.stat().st_size
    result = scan(tmp_path)
    assert result.torn_path == segment and result.torn_offset == size_with_tail - cut
    total = result.last_seq
    with Journal.open(tmp_path) as journal:
        assert journal.last_seq == total
    assert segment.stat().st_size == size_with_tail - cut
    assert len(list(read_entries(tmp_path))) == total


def test_a_flipped_byte_in_the_middle_stops_recovery_naming_file_offset_and_seq(tmp_path: Path) -> None:
    _write(tmp_path, random_commands(4, 200), segment_bytes_max=8_192)
    first = sorted(tmp_path.glob("*.journal"))[0]
    data = bytearray(first.read_bytes())
    data[200] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt) as caught:
        list(read_entries(tmp_path))
    error = caught.value
    assert error.path == first and error.offset <= 200 and error.expected_seq > 1
    assert str(first) in str(error) and f"offset {error.offset}" in str(error)
    with pytest.raises(JournalCorrupt):
        Journal.open(tmp_path)  # never opens for writing past damage


def test_an_unknown_record_version_stops_recovery(tmp_path: Path) -> None:
    _write(tmp_path, random_commands(5, 10))
    import zlib

    import msgpack

    from exchange.journal.record import HEADER
    payload = msgpack.packb([2, 11 + 10, 0, [12]])  # a version-2 record
    segment = _last_segment(tmp_path)
    segment.write_bytes(segment.read_bytes() + HEADER.pack(len(payload), zlib.crc32(payload)) + payload
                        + encode_record(999, 0, AdvanceTime()))
    with pytest.raises(JournalCorrupt, match="unknown record version 2"):
        list(read_entries(tmp_path))


def test_a_gap_in_sequence_numbers_stops_recovery(tmp_path: Path) -> None:
    _write(tmp_path, random_commands(6, 10))
    segment = _last_segment(tmp_path)
    last = scan(tmp_path).last_seq
    segment.write_bytes(segment.read_bytes() + encode_record(last + 2, 0, AdvanceTime()))
    with pytest.raises(JournalCorrupt, match=f"expected seq {last + 1}: found seq {last + 2}"):
        list(read_entries(tmp_path))


def test_append_refuses_a_gap(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as journal, pytest.raises(ValueError, match="expects seq 1"):
        journal.append(2, 0, AdvanceTime())


@pytest.mark.parametrize("payload", [[], [99], [8, 1], "x", [1, "not-an-int"]])
def test_malformed_commands_are_codec_errors(payload: object) -> None:
    with pytest.raises(CodecError):
        decode_command(payload)  # type: ignore[arg-type]


def test_a_command_that_could_not_be_read_back_is_never_written(tmp_path: Path) -> None:
    from exchange.domain.commands import Deposit

    with Journal.open(tmp_path) as journal:
        with pytest.raises(CodecError, match="expected an integer"):
            journal.append(1, 0, Deposit(1, "100"))  # type: ignore[arg-type]
        journal.append(1, 0, Deposit(1, 100))
    assert [e.command for e in read_entries(tmp_path)] == [Deposit(1, 100)]


def test_settlement_commands_have_stable_tags_and_round_trip_with_tuples() -> None:
    import msgpack

    from exchange.domain.commands import AssignDeliveries, SettleDaily, SettleDelivery
    from tests.domain.settlement import digest

    assert (TAGS[SettleDaily], TAGS[AssignDeliveries], TAGS[SettleDelivery]) == (14, 15, 16)
    commands: list[Command] = [
        SettleDaily("H100-M40-261203", 0, 482, ((1, -960_000), (2, 960_000)), digest("a")),
        SettleDaily("H100-M40-261203", 86_400 * 10**9, 1, (), digest("b"), amend=True),
        AssignDeliveries("H100-M40-261203"),
        SettleDelivery("H100-M40-261203/1", digest("c"), 180_500_000, 436_810_000, 4_634_300, False),
        SettleDelivery("H100-M40-261203/2", digest("d"), 0, 0, 0, True, amend=True),
    ]
    for command in commands:
        encoded = encode_command(command)
        assert encoded[0] == TAGS[type(command)]
        decoded = decode_command(msgpack.unpackb(msgpack.packb(encoded)))  # tuples come back as lists
        assert decoded == command and type(decoded) is type(command) and repr(decoded) == repr(command)
    # Postings sent as lists (a JSON caller) decode as tuples of tuples.
    as_lists = SettleDaily("X", 0, 1, [[1, 2], [3, -2]], digest("e"))  # type: ignore[arg-type]
    decoded = decode_command(encode_command(as_lists))
    assert isinstance(decoded, SettleDaily) and decoded.postings == ((1, 2), (3, -2))
    for bad in (SettleDaily("X", 0, 1, ((1, "2"),), "d"), SettleDaily("X", 0, 1, ((1, 2, 3),), "d"),  # type: ignore[arg-type]
                SettleDaily("X", 0, 1, ((True, 2),), "d"), SettleDaily("X", 0, 1, 5, "d"),  # type: ignore[arg-type]
                SettleDaily("X", 0, 1, (), "d", 1),  # type: ignore[arg-type]
                SettleDelivery("X/1", "d", 1, 2, 3, 0)):  # type: ignore[arg-type]
        with pytest.raises(CodecError, match=f"bad {type(bad).__name__} fields"):
            encode_command(bad)
    with pytest.raises(CodecError, match="SettleDelivery takes 7 fields, got 6"):
        decode_command([16, "X/1", "d", 1, 2, 3, False])


def test_a_settlement_stream_replays_from_the_journal_exactly(tmp_path: Path) -> None:
    from exchange.domain.engine import Engine
    from exchange.domain.statehash import state_hash
    from tests.domain.settlement import settlement_stream

    stream = settlement_stream()
    _write(tmp_path, stream)
    original = Engine()
    expected = [original.apply(command, ts) for command, ts in stream]
    replayed = Engine()
    entries = list(read_entries(tmp_path))
    assert [(e.command, e.ts_ns) for e in entries] == stream
    events = [replayed.apply(e.command, e.ts_ns) for e in entries]
    assert repr(events) == repr(expected)
    assert state_hash(replayed) == state_hash(original)
