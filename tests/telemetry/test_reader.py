"""The reader: every kind of bad record of rulebook §8 is rejected with its reason while the good
records around it are still accepted, in CSV and in JSON Lines."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from exchange.telemetry import (
    FIELDS,
    AcceptedRecord,
    DuplicateRecord,
    Reason,
    RejectedRecord,
    TelemetryFileError,
    read_telemetry,
)
from tests.telemetry.support import (
    DELIVERIES,
    DELIVERY,
    KEY,
    OTHER_KEY,
    START_NS,
    accepted,
    csv_line,
    csv_text,
    duplicates,
    good,
    jsonl_text,
    read,
    rejected,
    row,
    write,
)

H = 3_600_000_000_000
FORMATS = ("csv", "jsonl")


def _file(tmp_path: Path, fmt: str, rows: list[list[str]]) -> Path:
    return write(tmp_path / f"t.{fmt}", csv_text(rows) if fmt == "csv" else jsonl_text(rows))


def _tampered() -> list[str]:
    values = row()
    values[4] = "0.9999"  # changed after signing
    return values


BAD_RECORDS: dict[str, tuple[list[str], Reason]] = {
    "other key": (row(key=OTHER_KEY), Reason.BAD_SIGNATURE),
    "tampered value": (_tampered(), Reason.BAD_SIGNATURE),
    "signature not hex": (row(signature="z" * 64), Reason.BAD_SIGNATURE),
    "signature short": (row(signature="ab" * 31), Reason.BAD_SIGNATURE),
    "signature non-ascii": (row(signature="é" * 64), Reason.BAD_SIGNATURE),
    "unknown delivery": (row(delivery="H100-M40-Z26/9"), Reason.UNKNOWN_DELIVERY),
    "hour before the period": (row(hour="2026-11-30T23:00:00Z"), Reason.HOUR_OUTSIDE_PERIOD),
    "hour at the period end": (row(hour="2026-12-02T00:00:00Z"), Reason.HOUR_OUTSIDE_PERIOD),
    "half past": (row(hour="2026-12-01T05:30:00Z"), Reason.HOUR_NOT_ON_THE_HOUR),
    "one second past": (row(hour="2026-12-01T05:00:01Z"), Reason.HOUR_NOT_ON_THE_HOUR),
    "fraction past": (row(hour="2026-12-01T05:00:00.5Z"), Reason.HOUR_NOT_ON_THE_HOUR),
    "gpus zero": (row(gpus="0"), Reason.OUT_OF_RANGE),
    "gpus above one node": (row(gpus="73"), Reason.OUT_OF_RANGE),
    "gpus negative": (row(gpus="-1"), Reason.OUT_OF_RANGE),
    "available above 1": (row(available="1.0001"), Reason.OUT_OF_RANGE),
    "available negative": (row(available="-0.5"), Reason.OUT_OF_RANGE),
    "probe_mfu above 1": (row(mfu="1.5"), Reason.OUT_OF_RANGE),
    "gpus decimal": (row(gpus="8.0"), Reason.MALFORMED_FIELD),
    "gpus leading zero": (row(gpus="08"), Reason.MALFORMED_FIELD),
    "gpus plus": (row(gpus="+8"), Reason.MALFORMED_FIELD),
    "gpus word": (row(gpus="eight"), Reason.MALFORMED_FIELD),
    "gpus huge": (row(gpus="9" * 40), Reason.MALFORMED_FIELD),
    "available NaN": (row(available="NaN"), Reason.MALFORMED_FIELD),
    "available Infinity": (row(available="Infinity"), Reason.MALFORMED_FIELD),
    "available exponent": (row(available="1e-1"), Reason.MALFORMED_FIELD),
    "available negative zero": (row(available="-0"), Reason.MALFORMED_FIELD),
    "available negative zero places": (row(available="-0.000"), Reason.MALFORMED_FIELD),
    "available no leading digit": (row(available=".5"), Reason.MALFORMED_FIELD),
    "available trailing dot": (row(available="1."), Reason.MALFORMED_FIELD),
    "available space": (row(available="0.5 "), Reason.MALFORMED_FIELD),
    "available plus": (row(available="+0.5"), Reason.MALFORMED_FIELD),
    "available decimal comma": (row(available="0,5"), Reason.MALFORMED_FIELD),
    "probe_mfu unicode digit": (row(mfu="0.\u0664"), Reason.MALFORMED_FIELD),
    "probe_mfu leading zeros": (row(mfu="00.4"), Reason.MALFORMED_FIELD),
    "hour with a space": (row(hour="2026-12-01 05:00:00Z"), Reason.MALFORMED_FIELD),
    "hour not UTC": (row(hour="2026-12-01T05:00:00+01:00"), Reason.MALFORMED_FIELD),
    "hour without zone": (row(hour="2026-12-01T05:00:00"), Reason.MALFORMED_FIELD),
    "hour lower z": (row(hour="2026-12-01T05:00:00z"), Reason.MALFORMED_FIELD),
    "hour month 13": (row(hour="2026-13-01T05:00:00Z"), Reason.MALFORMED_FIELD),
    "hour 24": (row(hour="2026-12-01T24:00:00Z"), Reason.MALFORMED_FIELD),
    "hour date only": (row(hour="2026-12-01"), Reason.MALFORMED_FIELD),
    "node with separator": (row(node="node|1"), Reason.MALFORMED_FIELD),
    "node with tab": (row(node="node\t1"), Reason.MALFORMED_FIELD),
    "node with space around": (row(node=" node-1"), Reason.MALFORMED_FIELD),
    "node too long": (row(node="n" * 257), Reason.MALFORMED_FIELD),
    "empty gpus": (row(gpus=""), Reason.MISSING_FIELD),
    "empty signature": (row(signature=""), Reason.MISSING_FIELD),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_a_bad_record_is_rejected_with_its_reason_and_the_good_ones_stay(tmp_path: Path, fmt: str,
                                                                        case: str) -> None:
    bad, reason = BAD_RECORDS[case]
    items = read(_file(tmp_path, fmt, [good(0), bad, good(1)]))
    first = 2 if fmt == "csv" else 1
    assert [type(item) for item in items] == [AcceptedRecord, RejectedRecord, AcceptedRecord]
    refused = items[1]
    assert isinstance(refused, RejectedRecord)
    assert (refused.reason, refused.line_no, refused.source) == (reason, first + 1, str(tmp_path / f"t.{fmt}"))
    assert refused.message
    assert [item.line_no for item in items] == [first, first + 1, first + 2]
    if fmt == "csv":
        assert refused.raw == csv_line(bad)
    else:
        assert json.loads(refused.raw) == dict(zip(FIELDS, bad, strict=True))


@pytest.mark.parametrize("fmt", FORMATS)
def test_accepted_values_are_typed_and_exact(tmp_path: Path, fmt: str) -> None:
    values = row(node="node,7", hour="2026-12-01T05:00:00+00:00", gpus="16", available="0.8750", mfu="0.41")
    (record,) = read(_file(tmp_path, fmt, [values]))
    assert isinstance(record, AcceptedRecord)
    assert (record.delivery_id, record.node_id, record.hour_start_ns, record.gpus) == (
        DELIVERY, "node,7", START_NS + 5 * H, 16)
    assert str(record.available) == "0.8750" and str(record.probe_mfu) == "0.41"
    assert record.available == Decimal("0.875")


@pytest.mark.parametrize("fmt", FORMATS)
def test_boundary_values_are_accepted(tmp_path: Path, fmt: str) -> None:
    rows = [row(node="a", gpus="1", available="0", mfu="0"), row(node="b", gpus="16", available="1", mfu="1"),
            row(node="c", available="1.000000000000", mfu="0.000000000000"),
            row(node="d", hour="2026-12-01T00:00:00Z"), row(node="e", hour="2026-12-01T23:00:00.000Z"),
            row(node="f", signature=row(node="f")[6].upper())]
    items = read(_file(tmp_path, fmt, rows))
    assert len(accepted(items)) == len(rows), rejected(items)


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicates_are_counted_and_conflicts_rejected(tmp_path: Path, fmt: str) -> None:
    original = row(available="0.5")
    rows = [original, good(1), original, row(available="0.6"), row(available="0.50"), original]
    items = read(_file(tmp_path, fmt, rows))
    kinds = [type(item).__name__ for item in items]
    assert kinds == ["AcceptedRecord", "AcceptedRecord", "DuplicateRecord", "RejectedRecord", "RejectedRecord",
                     "DuplicateRecord"]
    assert [item.reason for item in rejected(items)] == [Reason.CONFLICT, Reason.CONFLICT]  # "0.50" as written
    (dup, _) = duplicates(items)
    assert (dup.delivery_id, dup.node_id, dup.hour_start_ns) == (DELIVERY, "node-1", START_NS + 5 * H)


def test_duplicates_and_conflicts_are_found_across_files(tmp_path: Path) -> None:
    first = write(tmp_path / "a.csv", csv_text([row(), good(1)]))
    second = write(tmp_path / "b.jsonl", jsonl_text([row(), row(mfu="0.3900")]))
    items = read(first, second)
    assert [type(item) for item in items] == [AcceptedRecord, AcceptedRecord, DuplicateRecord, RejectedRecord]
    assert items[3].source == str(second) and items[3].line_no == 2


def test_a_rejected_record_does_not_block_a_later_good_one_for_the_same_hour(tmp_path: Path) -> None:
    items = read(_file(tmp_path, "csv", [row(key=OTHER_KEY), row()]))
    assert [type(item) for item in items] == [RejectedRecord, AcceptedRecord]


# -- malformed files ---------------------------------------------------------------------------


def test_bad_utf8_mid_file(tmp_path: Path) -> None:
    bad = csv_line(row(node="node-\udcff", signature="0" * 64)).encode("utf-8", "surrogateescape")
    content = csv_text([good(0)]).encode() + bad + b"\n" + csv_line(good(1)).encode() + b"\n"
    items = read(write(tmp_path / "t.csv", content))
    assert [type(item) for item in items] == [AcceptedRecord, RejectedRecord, AcceptedRecord]
    refused = rejected(items)[0]
    assert refused.reason is Reason.BAD_ENCODING and refused.line_no == 3 and "\\xff" in refused.raw


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_one_megabyte_line_is_skipped_without_losing_its_neighbours(tmp_path: Path, fmt: str) -> None:
    path = _file(tmp_path, fmt, [good(0)])
    with path.open("ab") as out:
        out.write(b"x" * 1_000_000 + b"\n" + (csv_line(good(1)) if fmt == "csv" else jsonl_text([good(1)])
                                              ).strip().encode() + b"\n")
        out.write(b"y" * 5000)  # a too-long last line without a newline
    items = read(path)
    first = 2 if fmt == "csv" else 1
    assert [type(item) for item in items] == [AcceptedRecord, RejectedRecord, AcceptedRecord, RejectedRecord]
    long_line, last = rejected(items)
    assert (long_line.reason, long_line.line_no) == (Reason.LINE_TOO_LONG, first + 1)
    assert long_line.raw == "x" * 256 and "1000000 bytes" in long_line.message
    assert (last.reason, last.line_no, last.raw) == (Reason.LINE_TOO_LONG, first + 3, "y" * 256)


def test_an_empty_csv_file_has_no_header(tmp_path: Path) -> None:
    with pytest.raises(TelemetryFileError, match="empty CSV file"):
        read(write(tmp_path / "t.csv", b""))


def test_an_empty_jsonl_file_has_no_records(tmp_path: Path) -> None:
    assert read(write(tmp_path / "t.jsonl", b"")) == []
    assert read(write(tmp_path / "h.csv", csv_text([]))) == []  # a header and nothing else


@pytest.mark.parametrize("fmt", FORMATS)
def test_crlf_line_endings_blank_lines_and_a_bom(tmp_path: Path, fmt: str) -> None:
    text = csv_text([good(0), good(1)]) if fmt == "csv" else jsonl_text([good(0), good(1)])
    content = b"\xef\xbb\xbf" + (text.replace("\n", "\r\n") + "\r\n\n").encode()
    items = read(write(tmp_path / f"t.{fmt}", content))
    assert len(accepted(items)) == 2 and len(items) == 2
    assert not any(item.raw.endswith("\r") for item in items)


def test_a_missing_final_newline_still_reads_the_last_record(tmp_path: Path) -> None:
    items = read(write(tmp_path / "t.csv", csv_text([good(0), good(1)]).rstrip("\n")))
    assert len(accepted(items)) == 2


@pytest.mark.parametrize(("header", "problem"), [
    (FIELDS[:3] + FIELDS[4:6], "missing column(s) gpus, signature"),
    ((*FIELDS, "site"), "unexpected column(s) 'site'"),
    ((*FIELDS, "gpus"), "repeated column(s) gpus"),
    (tuple(name.upper() for name in FIELDS), "missing column(s) delivery_id"),
])
def test_a_bad_csv_header_is_a_file_error_before_anything_is_read(tmp_path: Path, header: tuple[str, ...],
                                                                  problem: str) -> None:
    good_file = write(tmp_path / "a.csv", csv_text([good(0)]))
    bad_file = write(tmp_path / "b.csv", csv_text([], header=header))
    with pytest.raises(TelemetryFileError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        read_telemetry([good_file, bad_file], DELIVERIES, KEY)  # raised on the call, not while iterating


def test_csv_columns_in_any_order(tmp_path: Path) -> None:
    order = [6, 0, 5, 1, 4, 2, 3]
    header = [FIELDS[i] for i in order]
    rows = [[values[i] for i in order] for values in (good(0), good(1))]
    assert len(accepted(read(write(tmp_path / "t.csv", csv_text(rows, header=header))))) == 2


@pytest.mark.parametrize(("line", "reason"), [
    ('"unterminated,quote', Reason.MALFORMED_RECORD),
    (csv_line([*row(), "extra"]), Reason.MALFORMED_RECORD),
    (csv_line(row()[:5]), Reason.MISSING_FIELD),
    (",,,,,,", Reason.MISSING_FIELD),
])
def test_malformed_csv_rows(tmp_path: Path, line: str, reason: Reason) -> None:
    items = read(write(tmp_path / "t.csv", csv_text([good(0)]) + line + "\n" + csv_line(good(1)) + "\n"))
    assert [type(item) for item in items] == [AcceptedRecord, RejectedRecord, AcceptedRecord]
    assert rejected(items)[0].reason is reason and rejected(items)[0].raw == line


def _json(**changes: object) -> str:
    obj: dict[str, object] = dict(zip(FIELDS, row(), strict=True))
    obj.update(changes)
    return json.dumps({k: v for k, v in obj.items() if v is not ...})


@pytest.mark.parametrize(("line", "reason"), [
    ("not json", Reason.MALFORMED_RECORD),
    ("[1, 2, 3]", Reason.MALFORMED_RECORD),
    ('"a string"', Reason.MALFORMED_RECORD),
    ("null", Reason.MALFORMED_RECORD),
    ("[" * 2000 + "]" * 2000, Reason.MALFORMED_RECORD),  # nested deeper than the parser recurses
    (_json()[:-1] + ', "gpus": "8"}', Reason.MALFORMED_RECORD),  # a repeated key
    (_json(site="eu-1"), Reason.MALFORMED_RECORD),
    (_json(gpus=8), Reason.MALFORMED_FIELD),
    (_json(available=1.0), Reason.MALFORMED_FIELD),
    (_json(probe_mfu=None), Reason.MALFORMED_FIELD),
    (_json(node_id=["a"]), Reason.MALFORMED_FIELD),
    (_json(node_id="\ud800"), Reason.MALFORMED_FIELD),  # a lone surrogate escape
    (_json(gpus=...), Reason.MISSING_FIELD),
    (_json(signature=...), Reason.MISSING_FIELD),
    ("{}", Reason.MISSING_FIELD),
])
def test_malformed_jsonl_records(tmp_path: Path, line: str, reason: Reason) -> None:
    items = read(write(tmp_path / "t.jsonl", jsonl_text([good(0)]) + line + "\n" + jsonl_text([good(1)])))
    assert [type(item) for item in items] == [AcceptedRecord, RejectedRecord, AcceptedRecord]
    assert rejected(items)[0].reason is reason and rejected(items)[0].raw == line


def test_unknown_extension_and_missing_file_are_file_errors(tmp_path: Path) -> None:
    with pytest.raises(TelemetryFileError, match=r"unknown telemetry file type '\.txt'"):
        read_telemetry([write(tmp_path / "t.txt", b"")], DELIVERIES, KEY)
    with pytest.raises(TelemetryFileError, match="cannot read"):
        read_telemetry([tmp_path / "absent.jsonl"], DELIVERIES, KEY)
    assert read(write(tmp_path / "t.NDJSON", jsonl_text([good(0)])))[0].line_no == 1


def test_every_line_is_accounted_for(tmp_path: Path) -> None:
    """Nothing is silently dropped: each non-blank line after the header yields exactly one item."""
    rows = [good(i) for i in range(10)] + [row(key=OTHER_KEY), good(3), row(gpus="x")]
    items = read(_file(tmp_path, "csv", rows))
    assert [item.line_no for item in items] == list(range(2, 2 + len(rows)))
    assert (len(accepted(items)), len(duplicates(items)), len(rejected(items))) == (10, 1, 2)
    assert isinstance(items[11], DuplicateRecord)


def test_duplicates_and_conflicts_before_and_after_a_node_has_many_hours(tmp_path: Path) -> None:
    """The duplicate memory is a small dict per node at first and 16 bytes per hour once the node has
    records for a sixteenth of the hours (2 of 24 here): both find duplicates and conflicts."""

    def at(hour: int, mfu: str = "0.4100") -> list[str]:
        return row(hour=f"2026-12-01T{hour:02d}:00:00Z", mfu=mfu)

    rows = [at(0), at(0), at(0, "0.4"),  # one record: the node's memory is a dict
            at(1), at(0), at(0, "0.4"), at(1), at(1, "0.4"), at(23), at(23, "0.1")]  # two: one slot per hour
    kinds = [type(item).__name__[0] for item in read(_file(tmp_path, "csv", rows))]
    assert "".join(kinds) == "ADR" + "ADRDR" + "AR"
