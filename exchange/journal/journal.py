"""An append-only, segmented, checksummed command journal with group commit.

Files: `<dir>/<first seq, 20 digits>.journal`, each a run of records (see `record.py`). A segment is
closed and a new one started once it passes `segment_bytes_max`, so old segments can be archived
whole after a snapshot covers them.

Group commit: `append()` only writes to the OS; `commit()` makes everything appended so far durable
with one `fsync`. The sequencer appends a batch of commands, commits once, and only then releases
the batch's results: many commands share one fsync, and nothing is acknowledged before it is on disk.

Recovery (`scan`) reads every segment in order and checks each record:
- a record cut short at the very end of the last segment is a torn write from a crash: it was never
  committed, so it is dropped (and `Journal.open` truncates it away);
- anything else wrong stops recovery with `JournalCorrupt`, naming the file, the byte offset and the
  sequence number expected there: a bad checksum or undecodable record in the middle, an unknown
  record version, a gap or repeat in sequence numbers. Nothing is ever skipped silently.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from exchange.domain.commands import Command
from exchange.journal.codec import CodecError
from exchange.journal.record import (
    HEADER,
    HEADER_BYTES,
    RECORD_BYTES_MAX,
    Entry,
    decode_payload,
    encode_record,
    payload_seq,
)

SUFFIX = ".journal"
SEGMENT_BYTES_MAX_DEFAULT = 64 << 20


class JournalCorrupt(Exception):
    """The journal cannot be trusted past a point; recovery must stop there."""

    def __init__(self, path: Path, offset: int, expected_seq: int, why: str, short: bool = False) -> None:
        super().__init__(f"{path}: offset {offset}, expected seq {expected_seq}: {why}")
        self.path = path
        self.offset = offset
        self.expected_seq = expected_seq
        self.why = why
        self.short = short   # the data simply ends there (a cut journal), rather than holding wrong bytes


@dataclass(frozen=True, slots=True)
class ScanResult:
    last_seq: int            # 0 for an empty journal
    torn_path: Path | None   # the last segment, when it ends in a torn record
    torn_offset: int         # where the valid data of that segment ends


def segment_paths(directory: Path) -> list[Path]:
    paths = sorted(directory.glob(f"*{SUFFIX}"))
    for path in paths:
        if not path.stem.isdigit() or len(path.stem) != 20:
            raise JournalCorrupt(path, 0, 0, "not a journal segment name (20 digits + .journal)")
    return paths


ARCHIVE_DIR_NAME = "journal-archive"


def archive_dir(directory: Path) -> Path:
    """Where the retention policy moves old segments (exchange/service/retention.py): beside the journal."""
    return directory.parent / ARCHIVE_DIR_NAME


def readable_segment_paths(directory: Path) -> list[Path]:
    """Every segment in seq order: the archived ones (complete, never written again) and the journal's
    own. Readers of history (recovery, replays, followers) use this; the writer only the journal's."""
    archived = segment_paths(archive_dir(directory)) if archive_dir(directory).is_dir() else []
    active = segment_paths(directory)
    names = {p.name for p in active}
    return [*(p for p in archived if p.name not in names), *active]   # a segment in both: the journal's


def segment_path(directory: Path, first_seq: int) -> Path:
    """The file of the segment whose first record is `first_seq`."""
    return directory / f"{first_seq:020d}{SUFFIX}"


def read_entries(directory: Path, after_seq: int = 0, scan: list[ScanResult] | None = None,
                 committed_seq: int = 0, last_segment_only: bool = False) -> Iterator[Entry]:
    """Every committed entry with seq > `after_seq`, in order, checking the whole journal as it goes.

    If `scan` is given, a `ScanResult` is appended to it once the iteration completes. `committed_seq`
    is what an independent witness says was committed (`exchange.service.witness`): a record at or below
    it that is cut short or fails its checksum is damage (`JournalCorrupt`), never a torn tail.
    `last_segment_only` checks just the newest segment (a quick look at where the journal ends).
    """
    paths = readable_segment_paths(directory)
    expected = 1
    if last_segment_only and paths:
        paths = paths[-1:]
        expected = int(paths[0].stem)
    torn_path: Path | None = None
    torn_offset = 0
    for index, path in enumerate(paths):
        last_segment = index == len(paths) - 1
        first = int(path.stem)
        if first != expected:
            raise JournalCorrupt(path, 0, expected, f"segment starts at seq {first}: a gap or overlap")
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            # A torn tail: only in the last segment, and only past what a witness says was committed.
            tearable = last_segment and expected > committed_seq
            if offset + HEADER_BYTES > len(data):
                if tearable:
                    torn_path, torn_offset = path, offset
                    break
                raise JournalCorrupt(path, offset, expected, _damage("the segment ends inside a record header",
                                                                     expected, committed_seq), short=last_segment)
            length, crc = HEADER.unpack_from(data, offset)
            end = offset + HEADER_BYTES + length
            if not 0 < length <= RECORD_BYTES_MAX:
                zeros = _only_zeros(data, offset)
                if tearable and zeros:
                    torn_path, torn_offset = path, offset  # preallocated or zero-filled tail
                    break
                raise JournalCorrupt(path, offset, expected, _damage(f"impossible record length {length}",
                                                                     expected, committed_seq),
                                     short=last_segment and zeros)
            if end > len(data):
                if tearable:
                    torn_path, torn_offset = path, offset
                    break
                raise JournalCorrupt(path, offset, expected, _damage("the segment ends inside a record",
                                                                     expected, committed_seq), short=last_segment)
            payload = data[offset + HEADER_BYTES:end]
            if zlib.crc32(payload) != crc:
                if tearable and end == len(data):
                    torn_path, torn_offset = path, offset  # the final write landed partly
                    break
                raise JournalCorrupt(path, offset, expected, _damage("checksum mismatch", expected, committed_seq))
            try:
                if expected > after_seq:
                    entry = decode_payload(payload)
                    seq = entry.seq
                else:  # covered by a snapshot: check the frame and seq, skip decoding the command
                    seq = payload_seq(payload)
            except CodecError as error:
                raise JournalCorrupt(path, offset, expected, str(error)) from None
            if seq != expected:
                raise JournalCorrupt(path, offset, expected, f"found seq {seq}: a gap or repeat")
            if seq > after_seq:
                yield entry
            expected += 1
            offset = end
    if scan is not None:
        scan.append(ScanResult(expected - 1, torn_path, torn_offset))


def _damage(why: str, expected: int, committed_seq: int) -> str:
    if expected <= committed_seq:
        return (f"{why} in a committed record (a witness says seq {committed_seq} was committed): damage, "
                "not a torn write")
    return why


def _only_zeros(data: bytes, offset: int) -> bool:
    return not data[offset:].strip(b"\0")


def scan(directory: Path, committed_seq: int = 0, last_segment_only: bool = False) -> ScanResult:
    result: list[ScanResult] = []
    for _ in read_entries(directory, after_seq=2**62, scan=result, committed_seq=committed_seq,
                          last_segment_only=last_segment_only):
        pass
    return result[0]


class Journal:
    """The writer. `open()` recovers (truncating a torn tail) and continues after the last seq."""

    def __init__(self, directory: Path, last_seq: int, segment_bytes_max: int) -> None:
        self.directory = directory
        self.last_seq = last_seq              # last appended
        self.committed_seq = last_seq         # last made durable
        self.segment_bytes_max = segment_bytes_max
        self._file: BinaryIO | None = None
        self._file_bytes = 0
        paths = segment_paths(directory)
        if paths:
            self._file = open(paths[-1], "ab")  # noqa: SIM115  (closed in close())
            self._file_bytes = self._file.tell()

    @classmethod
    def open(cls, directory: Path, segment_bytes_max: int = SEGMENT_BYTES_MAX_DEFAULT) -> Journal:
        directory.mkdir(parents=True, exist_ok=True)
        return cls.open_scanned(directory, scan(directory), segment_bytes_max)

    @classmethod
    def open_scanned(cls, directory: Path, result: ScanResult,
                     segment_bytes_max: int = SEGMENT_BYTES_MAX_DEFAULT) -> Journal:
        """Open for appending after a scan the caller already made (recovery reads the journal once)."""
        if result.torn_path is not None:
            with open(result.torn_path, "r+b") as torn:
                torn.truncate(result.torn_offset)
                os.fsync(torn.fileno())
        return cls(directory, result.last_seq, segment_bytes_max)

    def append(self, seq: int, ts_ns: int, command: Command) -> None:
        """Write one record (not yet durable). Sequence numbers must be consecutive."""
        if seq != self.last_seq + 1:
            raise ValueError(f"journal expects seq {self.last_seq + 1}, got {seq}")
        record = encode_record(seq, ts_ns, command)
        if self._file is None or (self._file_bytes + len(record) > self.segment_bytes_max and self._file_bytes):
            self._roll(seq)
        assert self._file is not None
        self._file.write(record)
        self._file_bytes += len(record)
        self.last_seq = seq

    def commit(self) -> int:
        """Make every appended record durable (one fsync); returns the last durable seq."""
        target = self.last_seq  # what this fsync covers, even if another append lands meanwhile
        if self._file is not None and self.committed_seq != target:
            self._file.flush()
            os.fsync(self._file.fileno())
            self.committed_seq = target
        return self.committed_seq

    def _roll(self, first_seq: int) -> None:
        if self._file is not None:
            self.commit()
            self._file.close()
        # Private (0600): the journal holds every account's orders and cash movements.
        fd = os.open(segment_path(self.directory, first_seq), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "wb")
        self._file_bytes = 0
        # The new file's directory entry must be durable too, or a crash could lose the segment.
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._file is not None:
            self.commit()
            self._file.close()
            self._file = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
