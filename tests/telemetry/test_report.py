"""The summary of a read, and the rejects file: every rejected record with its reason, source and line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from exchange.telemetry import Reason, RejectedRecord, RejectsWriter, TelemetrySummary
from tests.telemetry.support import OTHER_KEY, csv_text, good, read, row, write


def test_summary_counts_by_outcome_and_reason(tmp_path: Path) -> None:
    rows = [good(0), good(1), good(0), row(key=OTHER_KEY), row(node="good-0", hour="2026-12-01T00:00:00Z",
                                                                 mfu="0.1"), row(gpus="99")]
    summary = TelemetrySummary()
    for item in read(write(tmp_path / "t.csv", csv_text(rows))):
        summary.add(item)
    assert (summary.records, summary.accepted, summary.duplicate, summary.rejected, summary.conflicting) == (
        6, 2, 1, 3, 1)
    assert summary.as_dict()["rejected_by_reason"] == {"bad_signature": 1, "out_of_range": 1, "conflict": 1}


@pytest.mark.parametrize("ext", ["csv", "jsonl"])
def test_rejects_file_keeps_the_raw_record_reason_and_place(tmp_path: Path, ext: str) -> None:
    source = write(tmp_path / "t.csv", csv_text([good(0), row(key=OTHER_KEY)]).encode() + b"a,\xff\n")
    items = read(source)
    with RejectsWriter(tmp_path / f"rejects.{ext}") as writer:
        for item in items:
            if isinstance(item, RejectedRecord):
                writer.write(item)
    assert writer.count == 2
    text = (tmp_path / f"rejects.{ext}").read_text(encoding="utf-8")
    if ext == "csv":
        written = list(csv.DictReader(text.splitlines()))
    else:
        written = [json.loads(line) for line in text.splitlines()]
    assert [(r["source"], str(r["line_no"]), r["reason"]) for r in written] == [
        (str(source), "3", Reason.BAD_SIGNATURE.value), (str(source), "4", Reason.BAD_ENCODING.value)]
    assert written[0]["raw"] == ",".join(row(key=OTHER_KEY)) and written[1]["raw"] == "a,\\xff"
    assert all(r["message"] for r in written)
