"""Telemetry files: formats by extension, bounded line splitting in binary, and a streaming record writer.

Lines are split on `\\n` (a trailing `\\r` is dropped, so CRLF files read the same) from fixed-size
binary chunks: a line longer than the limit is reported by its number, length and first bytes and
skipped to the next newline without ever being held whole. A UTF-8 byte-order mark at the start of
a file is ignored.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import IO, BinaryIO, Final, Self

from exchange.telemetry.record import FIELDS

MAX_LINE_BYTES: Final = 4096
CHUNK_BYTES: Final = 1 << 18
PREVIEW_BYTES: Final = 256
_BOM: Final = b"\xef\xbb\xbf"


class TelemetryFileError(ValueError):
    """A whole file cannot be read as telemetry (unknown extension, bad CSV header, unreadable)."""


class Format(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


_EXTENSIONS: Final = {".csv": Format.CSV, ".jsonl": Format.JSONL, ".ndjson": Format.JSONL}


def file_format(path: Path | str) -> Format:
    """CSV for `.csv`, JSON Lines for `.jsonl` / `.ndjson` (case-insensitive); anything else is an error."""
    suffix = Path(path).suffix.lower()
    try:
        return _EXTENSIONS[suffix]
    except KeyError:
        raise TelemetryFileError(
            f"{path}: unknown telemetry file type {suffix or '(no extension)'!r}; "
            "expected .csv, .jsonl or .ndjson") from None


def open_binary(path: Path | str) -> BinaryIO:
    try:
        return open(path, "rb")  # the caller closes it
    except OSError as exc:
        raise TelemetryFileError(f"{path}: cannot read: {exc.strerror or exc}") from None


def open_text_for_writing(path: Path) -> IO[str]:
    try:
        return open(path, "w", encoding="utf-8", newline="")  # the caller closes it
    except OSError as exc:
        raise TelemetryFileError(f"{path}: cannot write: {exc.strerror or exc}") from None


def physical_lines(stream: BinaryIO, max_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes, int]]:
    """(line number from 1, content, too_long) for every line, empty ones included.

    `too_long` is 0 for a line within `max_bytes` (content without its `\\n` or `\\r\\n`); for a longer
    line it is the line's length in bytes and content is only its first PREVIEW_BYTES bytes. Memory is
    bounded by the chunk size whatever the lines are.
    """
    limit = max_bytes + 1  # room for the \r of a CRLF line
    head = b""  # the current line so far: whole while it fits, else just its preview
    length = 0  # the current line's length so far
    line_no = 0
    for chunk in _chunks(stream):
        *complete, tail = chunk.split(b"\n")
        for part in complete:
            line_no += 1
            if length:
                total = length + len(part)
                line = head + part if total <= limit else _preview(head, part)
                head, length = b"", 0
            else:
                line, total = part, len(part)
            if total <= limit:
                if line.endswith(b"\r"):
                    line = line[:-1]
                if len(line) <= max_bytes:
                    yield line_no, line, 0
                    continue
            yield line_no, line[:PREVIEW_BYTES], total
        if tail:
            head = head + tail if length + len(tail) <= limit else _preview(head, tail)
            length += len(tail)
    if length:
        line_no += 1
        if length <= limit:
            line = head[:-1] if head.endswith(b"\r") else head
            if len(line) <= max_bytes:
                yield line_no, line, 0
                return
        yield line_no, head[:PREVIEW_BYTES], length


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    """The file's bytes in CHUNK_BYTES pieces, without a leading UTF-8 byte-order mark."""
    start = stream.read(len(_BOM))
    if start != _BOM:
        yield start
    while chunk := stream.read(CHUNK_BYTES):
        yield chunk


def _preview(head: bytes, more: bytes) -> bytes:
    """The first PREVIEW_BYTES of a too-long line, from its start so far and the next piece."""
    return head[:PREVIEW_BYTES] if len(head) >= PREVIEW_BYTES else (head + more[:PREVIEW_BYTES])[:PREVIEW_BYTES]


def split_csv_line(line: str) -> list[str]:
    """One CSV line -> its cells (RFC 4180 quoting; ValueError for bad quoting).

    A line without a quote is split on commas, which is what the csv module does with it, only faster.
    """
    if '"' not in line:
        return line.split(",")
    try:
        return next(csv.reader((line,), strict=True), [])
    except csv.Error as exc:
        raise ValueError(str(exc)) from None


class RecordWriter:
    """Writes telemetry rows (the seven FIELDS, in order) as CSV with a header, or as JSON Lines,
    streaming, to `path` (the format from its extension unless given). Written to a temporary file
    renamed into place on a clean close, so a failure never leaves half a file under the name."""

    def __init__(self, path: Path | str, fmt: Format | None = None) -> None:
        self.path = Path(path)
        named = _EXTENSIONS.get(self.path.suffix.lower())
        if fmt is not None and named is not None and named is not fmt:
            raise TelemetryFileError(f"{self.path}: the name says {named}, the format asked for is {fmt}")
        self.format = fmt or file_format(self.path)
        self.count = 0
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._out = open_text_for_writing(self._tmp)
        self._csv = csv.writer(self._out, lineterminator="\n")
        if self.format is Format.CSV:
            self._csv.writerow(FIELDS)

    def write(self, row: Sequence[str]) -> None:
        if self.format is Format.CSV:
            self._csv.writerow(row)
        else:
            self._out.write(json.dumps(dict(zip(FIELDS, row, strict=True)), ensure_ascii=False,
                                       separators=(",", ":")) + "\n")
        self.count += 1

    def close(self, commit: bool = True) -> None:
        if self._out.closed:
            return
        self._out.close()
        if commit:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(commit=kind is None)
