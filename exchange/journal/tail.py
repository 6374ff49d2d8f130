"""Following the journal from another process: committed records, read incrementally.

`JournalTail(directory, after_seq)` positions itself just after record `after_seq`, then
`read_until(seq_max, records_max)` returns the records after that, up to `seq_max` (a seq the commit
marker published, so every byte of them is on disk), moving from segment to segment as the writer
rolls them. Every record's frame, checksum and seq are checked as in recovery; anything wrong raises
`JournalCorrupt` (a follower must never skip or invent history). Reads use `pread` on the file, in
chunks of `CHUNK_BYTES`, so a follower catching up reads large blocks and one keeping up reads only
what is new.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Final

from exchange.journal.codec import CodecError
from exchange.journal.journal import JournalCorrupt, archive_dir, readable_segment_paths, segment_path
from exchange.journal.record import HEADER, HEADER_BYTES, RECORD_BYTES_MAX, Entry, decode_payload, payload_seq

CHUNK_BYTES: Final = 1 << 20


class JournalTail:
    def __init__(self, directory: Path, after_seq: int = 0) -> None:
        self.directory = directory
        self.seq = after_seq              # the last record returned (or skipped to)
        self._fd = -1
        self._path = directory
        self._offset = 0                  # file offset of the next record
        self._buffer = b""
        self._buffer_offset = 0           # file offset of _buffer[0]
        paths = [p for p in readable_segment_paths(directory) if int(p.stem) <= after_seq + 1]
        if not paths:
            if after_seq:
                raise JournalCorrupt(directory, 0, after_seq + 1, f"no segment holds seq {after_seq + 1}")
            return                        # an empty journal: the first segment appears later
        self._open(paths[-1])
        next_seq = int(paths[-1].stem)
        while next_seq <= after_seq:      # skip what the caller already has (a snapshot covers it)
            if self._frame(next_seq, decode=False) is None:
                raise JournalCorrupt(self._path, self._offset, next_seq, f"the journal ends before seq {after_seq}")
            next_seq += 1

    def _open(self, path: Path) -> None:
        self.close()
        self._fd = os.open(path, os.O_RDONLY)
        self._path = path
        self._offset = 0
        self._buffer, self._buffer_offset = b"", 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def read_until(self, seq_max: int, records_max: int = 1 << 30) -> list[Entry]:
        """The records after `self.seq`, up to `seq_max` and at most `records_max` of them."""
        # Bytes past the last record read may have been a torn write that a restarted writer has
        # since replaced: never reuse them from an earlier call.
        self._buffer, self._buffer_offset = b"", 0
        out: list[Entry] = []
        while self.seq < seq_max and len(out) < records_max:
            expected = self.seq + 1
            entry = self._frame(expected, decode=True) if self._fd >= 0 else None
            if entry is None:
                following = segment_path(self.directory, expected)
                if not following.exists():   # archived since (retention): read it there
                    following = segment_path(archive_dir(self.directory), expected)
                if not following.exists():
                    raise JournalCorrupt(self._path, self._offset, expected,
                                         f"committed up to seq {seq_max}, but the journal ends at seq {self.seq}")
                self._open(following)
                continue
            assert isinstance(entry, Entry)
            out.append(entry)
            self.seq = expected
        return out

    def _read(self, offset: int, size: int) -> bytes:
        """`size` bytes at `offset`, or fewer at the end of the file."""
        start = offset - self._buffer_offset
        if start < 0 or start + size > len(self._buffer):
            self._buffer = os.pread(self._fd, max(size, CHUNK_BYTES), offset)
            self._buffer_offset, start = offset, 0
        return self._buffer[start:start + size]

    def _frame(self, expected: int, *, decode: bool) -> Entry | int | None:
        """The next record (an Entry, or its seq when not decoding); None at the end of the segment."""
        header = self._read(self._offset, HEADER_BYTES)
        if not header:
            return None
        if len(header) < HEADER_BYTES:
            raise JournalCorrupt(self._path, self._offset, expected, "a committed record's header is cut short")
        length, crc = HEADER.unpack(header)
        if not 0 < length <= RECORD_BYTES_MAX:
            raise JournalCorrupt(self._path, self._offset, expected, f"impossible record length {length}")
        payload = self._read(self._offset + HEADER_BYTES, length)
        if len(payload) < length:
            raise JournalCorrupt(self._path, self._offset, expected, "a committed record is cut short")
        if zlib.crc32(payload) != crc:
            raise JournalCorrupt(self._path, self._offset, expected, "checksum mismatch")
        try:
            result: Entry | int = decode_payload(payload) if decode else payload_seq(payload)
        except CodecError as error:
            raise JournalCorrupt(self._path, self._offset, expected, str(error)) from None
        seq = result.seq if isinstance(result, Entry) else result
        if seq != expected:
            raise JournalCorrupt(self._path, self._offset, expected, f"found seq {seq}: a gap or repeat")
        self._offset += HEADER_BYTES + length
        return result
