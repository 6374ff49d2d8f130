"""The journal's record frame: length-prefixed, checksummed, versioned.

    offset 0   u32 little-endian   payload length in bytes (1 .. RECORD_BYTES_MAX)
    offset 4   u32 little-endian   CRC-32 of the payload (zlib.crc32)
    offset 8   payload             msgpack array [version, seq, ts_ns, [command tag, fields...]]

A reader can always tell a record that was cut short by a crash (the frame runs past the end of the
file) from one that was damaged in place (complete frame, wrong checksum).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, Final, NamedTuple

import msgpack

from exchange.domain.commands import Command
from exchange.journal.codec import CodecError, decode_command, encode_command

RECORD_VERSION: Final = 1
HEADER: Final = struct.Struct("<II")
HEADER_BYTES: Final = HEADER.size
RECORD_BYTES_MAX: Final = 1 << 20  # a command is small; a larger length is damage, not data


class Entry(NamedTuple):
    """One journaled command with the sequence number and time the sequencer gave it."""

    seq: int
    ts_ns: int
    command: Command


def encode_record(seq: int, ts_ns: int, command: Command) -> bytes:
    payload: bytes = msgpack.packb([RECORD_VERSION, seq, ts_ns, encode_command(command)], use_bin_type=True)
    if len(payload) > RECORD_BYTES_MAX:
        raise CodecError(f"a record of {len(payload)} bytes is larger than the {RECORD_BYTES_MAX} allowed")
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def decode_payload(payload: bytes) -> Entry:
    """Raises `CodecError` for anything that is not a version-1 record."""
    seq, ts_ns, command = _fields(payload)
    return Entry(seq, ts_ns, decode_command(command))


def payload_seq(payload: bytes) -> int:
    """The record's seq, checking the frame and version but not decoding the command: for records a
    snapshot already covers, whose checksum has been verified."""
    return _fields(payload)[0]


def _fields(payload: bytes) -> tuple[int, int, Any]:
    try:
        fields: Any = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as error:
        raise CodecError(f"not a msgpack record: {error}") from None
    if not isinstance(fields, list) or len(fields) != 4:
        raise CodecError("a record is [version, seq, ts_ns, command]")
    version, seq, ts_ns, command = fields
    if version != RECORD_VERSION:
        raise CodecError(f"unknown record version {version!r} (this build reads version {RECORD_VERSION})")
    if type(seq) is not int or type(ts_ns) is not int or seq <= 0:
        raise CodecError(f"bad sequence number or time: {seq!r}, {ts_ns!r}")
    return seq, ts_ns, command
