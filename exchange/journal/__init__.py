"""The command journal: append-only, segmented, checksummed, group-committed (issue 3, first part).

The sequencer, snapshots and the SQL projection build on it.
"""

from exchange.journal.codec import CodecError, decode_command, encode_command
from exchange.journal.journal import Journal, JournalCorrupt, ScanResult, read_entries, scan
from exchange.journal.record import Entry

__all__ = [
    "CodecError", "Entry", "Journal", "JournalCorrupt", "ScanResult", "decode_command", "encode_command",
    "read_entries", "scan",
]
