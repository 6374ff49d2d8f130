"""Bounded line splitting: the same lines as a plain split whatever the chunking, long lines skipped."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.telemetry import files
from exchange.telemetry.files import (
    PREVIEW_BYTES,
    Format,
    RecordWriter,
    TelemetryFileError,
    physical_lines,
    split_csv_line,
)


def _reference(data: bytes, max_bytes: int) -> list[tuple[int, bytes, int]]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    result = []
    for number, line in enumerate(lines, 1):
        content = line[:-1] if line.endswith(b"\r") else line
        if len(content) <= max_bytes:
            result.append((number, content, 0))
        else:
            result.append((number, line[:PREVIEW_BYTES], len(line)))
    return result


@given(pieces=st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\r", b"\r\n", b"x" * 7, b"\xef\xbb\xbf"]),
                       max_size=60),
       chunk=st.integers(1, 9), max_bytes=st.integers(0, 12))
def test_lines_match_a_plain_split_for_any_chunking(pieces: list[bytes], chunk: int, max_bytes: int) -> None:
    data = b"".join(pieces)
    original = files.CHUNK_BYTES
    files.CHUNK_BYTES = chunk  # type: ignore[misc]
    try:
        got = list(physical_lines(io.BytesIO(data), max_bytes))
    finally:
        files.CHUNK_BYTES = original  # type: ignore[misc]
    assert got == _reference(data, max_bytes)


@pytest.mark.parametrize(("line", "too_long"), [(b"a" * 4096, 0), (b"a" * 4096 + b"\r", 0), (b"a" * 4097, 4097),
                                                (b"a" * 4096 + b"\r\r", 4098)])
def test_the_limit_is_4096_bytes_not_counting_the_line_end(line: bytes, too_long: int) -> None:
    ((_, content, length),) = physical_lines(io.BytesIO(line + b"\n"))
    assert length == too_long
    assert content == (line.rstrip(b"\r") if not too_long else line[:PREVIEW_BYTES])


def test_csv_split_matches_the_csv_module() -> None:
    assert split_csv_line("a,b,,c") == ["a", "b", "", "c"]
    assert split_csv_line('"a,b","c""d",e') == ["a,b", 'c"d', "e"]
    with pytest.raises(ValueError):
        split_csv_line('"open')


def test_the_writer_refuses_a_format_its_file_name_contradicts(tmp_path: Path) -> None:
    with pytest.raises(TelemetryFileError, match="the name says csv"):
        RecordWriter(tmp_path / "a.csv", Format.JSONL)
    with pytest.raises(TelemetryFileError, match="cannot write"):
        RecordWriter(tmp_path / "absent" / "a.csv")
    with RecordWriter(tmp_path / "a.out", Format.JSONL) as out:
        out.write(["d", "n", "h", "8", "1", "0.4", "s"])
    assert (tmp_path / "a.out").read_text() == (
        '{"delivery_id":"d","node_id":"n","hour_start":"h","gpus":"8","available":"1","probe_mfu":"0.4",'
        '"signature":"s"}\n')
