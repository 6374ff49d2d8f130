"""What a telemetry read amounted to: counts by outcome and reason, and the file of rejected records."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from exchange.telemetry.files import Format, file_format, open_text_for_writing
from exchange.telemetry.record import AcceptedRecord, DuplicateRecord, Reason, RejectedRecord, TelemetryItem

REJECT_FIELDS: Final = ("source", "line_no", "reason", "message", "raw")


@dataclass
class TelemetrySummary:
    """Counts of a read: accepted, exact duplicates (ignored), and rejected by reason (conflicts included)."""

    accepted: int = 0
    duplicate: int = 0
    rejected_by_reason: dict[Reason, int] = field(default_factory=dict)

    def add(self, item: TelemetryItem) -> None:
        if isinstance(item, AcceptedRecord):
            self.accepted += 1
        elif isinstance(item, DuplicateRecord):
            self.duplicate += 1
        else:
            self.rejected_by_reason[item.reason] = self.rejected_by_reason.get(item.reason, 0) + 1

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())

    @property
    def conflicting(self) -> int:
        return self.rejected_by_reason.get(Reason.CONFLICT, 0)

    @property
    def records(self) -> int:
        return self.accepted + self.duplicate + self.rejected

    def reasons(self) -> list[tuple[Reason, int]]:
        """(reason, count) of the reasons that occurred, in the Reason order."""
        return [(reason, self.rejected_by_reason[reason]) for reason in Reason if reason in self.rejected_by_reason]

    def as_dict(self) -> dict[str, object]:
        """Plain values for a statement."""
        return {"records": self.records, "accepted": self.accepted, "duplicate": self.duplicate,
                "conflicting": self.conflicting, "rejected": self.rejected,
                "rejected_by_reason": {str(reason): count for reason, count in self.reasons()}}


class RejectsWriter:
    """Streams rejected records to CSV or JSON Lines (by extension): source, line_no, reason, message,
    and the raw record as given."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.format = file_format(self.path)
        self.count = 0
        self._out = open_text_for_writing(self.path)
        self._csv = csv.writer(self._out, lineterminator="\n")
        if self.format is Format.CSV:
            self._csv.writerow(REJECT_FIELDS)

    def write(self, record: RejectedRecord) -> None:
        row = (record.source, record.line_no, str(record.reason), record.message, record.raw)
        if self.format is Format.CSV:
            self._csv.writerow(row)
        else:
            self._out.write(json.dumps(dict(zip(REJECT_FIELDS, row, strict=True)), ensure_ascii=False) + "\n")
        self.count += 1

    def close(self) -> None:
        self._out.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
