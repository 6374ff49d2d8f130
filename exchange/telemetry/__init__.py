"""Delivery telemetry of the exchange's reference probe (rulebook §8): the record model, HMAC
signatures with the probe key, a streaming validating reader of CSV / JSON Lines files, a seeded
generator, and the `exchange probe ...` commands."""

from exchange.telemetry.files import MAX_LINE_BYTES, Format, RecordWriter, TelemetryFileError, file_format
from exchange.telemetry.generator import GeneratorConfig, failing_nodes, generate_rows, write_telemetry
from exchange.telemetry.reader import read_telemetry
from exchange.telemetry.record import (
    FIELDS,
    SIGNED_FIELDS,
    AcceptedRecord,
    DeliveryWindow,
    DuplicateRecord,
    Reason,
    RejectedRecord,
    TelemetryItem,
    format_hour_start,
    parse_hour_start,
)
from exchange.telemetry.report import RejectsWriter, TelemetrySummary
from exchange.telemetry.signing import canonical_message, load_probe_key, sign, sign_file, verify

__all__ = [
    "FIELDS",
    "MAX_LINE_BYTES",
    "SIGNED_FIELDS",
    "AcceptedRecord",
    "DeliveryWindow",
    "DuplicateRecord",
    "Format",
    "GeneratorConfig",
    "Reason",
    "RecordWriter",
    "RejectedRecord",
    "RejectsWriter",
    "TelemetryFileError",
    "TelemetryItem",
    "TelemetrySummary",
    "canonical_message",
    "failing_nodes",
    "file_format",
    "format_hour_start",
    "generate_rows",
    "load_probe_key",
    "parse_hour_start",
    "read_telemetry",
    "sign",
    "sign_file",
    "verify",
    "write_telemetry",
]
