"""The commit marker: how far the journal is durable, published to followers in other processes.

`<journal dir>/COMMITTED` is a 16-byte file that the service maps into memory and updates after every
group commit: a little-endian u64 seq, then the same seq XOR `CHECK`. Followers (the feed gateways)
map it read-only and poll it. Why a mapped file rather than a socket: publishing costs the sequencer
one 16-byte memory store per batch, whatever the number of followers or how slow they are; there is
no connection, buffer or back-pressure for a follower to stall the engine with, and any number of
followers can start and stop on their own.

A reader could catch the writer between its two words (the store is one `memcpy`, not guaranteed
atomic): the check word then does not match and the reader reads again. The marker is a hint, never
the truth: it only says that records up to its seq are complete and fsynced, so a follower may read
them. It is rewritten when the service opens the journal, and never goes backwards for a given
journal (committed records survive any crash).
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path
from typing import Final

FILENAME: Final = "COMMITTED"
CHECK: Final = 0x5EC0_C0DE_5EC0_C0DE
_LAYOUT: Final = struct.Struct("<QQ")
READ_ATTEMPTS_MAX: Final = 100


class CommitMarker:
    """The writer (the service that owns the journal)."""

    def __init__(self, journal_dir: Path) -> None:
        self.path = journal_dir / FILENAME
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _LAYOUT.size:
                os.ftruncate(fd, _LAYOUT.size)
            self._map = mmap.mmap(fd, _LAYOUT.size, access=mmap.ACCESS_WRITE)
        finally:
            os.close(fd)   # the mapping keeps the file; replacing it would orphan the followers' maps
        self.seq = -1

    def publish(self, seq: int) -> None:
        assert seq >= 0, seq
        self._map[:] = _LAYOUT.pack(seq, seq ^ CHECK)
        self.seq = seq

    def close(self) -> None:
        self._map.close()


class CommitMarkerReader:
    """A follower's view: `read()` is the last durable seq, or None while there is no marker yet (the
    service has never opened this journal)."""

    def __init__(self, journal_dir: Path) -> None:
        self.path = journal_dir / FILENAME
        self._map: mmap.mmap | None = None

    def read(self) -> int | None:
        if self._map is None:
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return None
            try:
                if os.fstat(fd).st_size < _LAYOUT.size:
                    return None   # the writer is creating it
                self._map = mmap.mmap(fd, _LAYOUT.size, access=mmap.ACCESS_READ)
            finally:
                os.close(fd)
        for _ in range(READ_ATTEMPTS_MAX):
            seq, check = _LAYOUT.unpack(self._map[:_LAYOUT.size])
            if seq ^ check == CHECK:
                return int(seq)
        raise RuntimeError(f"{self.path}: no consistent value in {READ_ATTEMPTS_MAX} reads: not a commit marker")

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
