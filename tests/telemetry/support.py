"""Shared fixtures of the telemetry tests: one delivery, a probe key, and record/file builders."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from exchange.domain.units import NS_PER_HOUR
from exchange.telemetry import (
    FIELDS,
    AcceptedRecord,
    DeliveryWindow,
    DuplicateRecord,
    RejectedRecord,
    TelemetryItem,
    parse_hour_start,
    read_telemetry,
    sign,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
DELIVERY = "H100-M40-Z26/1"
START_NS = parse_hour_start("2026-12-01T00:00:00Z")
HOURS = 24
GPUS = 16
WINDOW = DeliveryWindow(START_NS, START_NS + HOURS * NS_PER_HOUR, GPUS)
DELIVERIES = {DELIVERY: WINDOW}


def row(node: str = "node-1", hour: str = "2026-12-01T05:00:00Z", gpus: str = "8", available: str = "1.0000",
        mfu: str = "0.4100", delivery: str = DELIVERY, key: bytes = KEY, signature: str | None = None) -> list[str]:
    """Seven values, signed over the six as written unless a signature is given."""
    values = [delivery, node, hour, gpus, available, mfu]
    return [*values, sign(key, values) if signature is None else signature]


def good(index: int) -> list[str]:
    return row(node=f"good-{index}", hour=f"2026-12-01T{index % HOURS:02d}:00:00Z")


def csv_line(values: Sequence[str]) -> str:
    return ",".join(f'"{v}"' if any(c in v for c in ',"\n') else v for v in values)


def csv_text(rows: Sequence[Sequence[str]], header: Sequence[str] = FIELDS) -> str:
    return "".join(csv_line(values) + "\n" for values in [header, *rows])


def jsonl_text(rows: Sequence[Sequence[str]]) -> str:
    return "".join(json.dumps(dict(zip(FIELDS, values, strict=True))) + "\n" for values in rows)


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def read(*paths: Path, key: bytes = KEY) -> list[TelemetryItem]:
    return list(read_telemetry(paths, DELIVERIES, key))


def accepted(items: Sequence[TelemetryItem]) -> list[AcceptedRecord]:
    return [item for item in items if isinstance(item, AcceptedRecord)]


def rejected(items: Sequence[TelemetryItem]) -> list[RejectedRecord]:
    return [item for item in items if isinstance(item, RejectedRecord)]


def duplicates(items: Sequence[TelemetryItem]) -> list[DuplicateRecord]:
    return [item for item in items if isinstance(item, DuplicateRecord)]
