"""The probe's telemetry record (rulebook §8): field names, value grammar, and what a reader yields.

One record per node per hour, every value a string *as written* (the signature covers the text, not
the numbers):

    delivery_id, node_id, hour_start, gpus, available, probe_mfu, signature

Value grammar (anything else is `malformed_field`):
- `delivery_id`, `node_id`: 1..256 characters, no `|` (the signature's separator), no control
  characters, no leading or trailing white space.
- `gpus`: a decimal integer without sign or leading zeros (`8`); range 1..72 (one node, rulebook §8 v2:
  it may exceed the delivery's G; the hour's sum is what is capped at G).
- `available`, `probe_mfu`: a plain decimal, `0`, `0.9875`, `1.0000`: ASCII digits, an optional `-`,
  no `+`, no exponent, no leading zeros, no NaN/Infinity, no negative zero; range 0..1 inclusive
  (a well-formed negative value is `out_of_range`).
- `hour_start`: `YYYY-MM-DDTHH:MM:SS[.fraction]` followed by `Z` or `+00:00` (UTC only); minutes,
  seconds and fraction zero, else `hour_not_on_the_hour`.
- `signature`: 64 hex digits (either case) = HMAC-SHA256 of the other six values joined by `|`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Final

from exchange.domain.units import NS_PER_HOUR, NS_PER_SECOND

FIELDS: Final = ("delivery_id", "node_id", "hour_start", "gpus", "available", "probe_mfu", "signature")
SIGNED_FIELDS: Final = FIELDS[:-1]  # the signature's message, in this order
MAX_ID_CHARS: Final = 256

_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_NS_PER_DAY: Final = 24 * NS_PER_HOUR
_DECIMAL = re.compile(r"(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?")
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_HOUR = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?(Z|[+-][0-9]{2}:[0-9]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f|]")


class Reason(StrEnum):
    """Why a record was rejected; the values are stable strings written to reject files and statements."""

    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_DELIVERY = "unknown_delivery"
    HOUR_OUTSIDE_PERIOD = "hour_outside_period"
    HOUR_NOT_ON_THE_HOUR = "hour_not_on_the_hour"
    OUT_OF_RANGE = "out_of_range"
    MALFORMED_FIELD = "malformed_field"
    MISSING_FIELD = "missing_field"
    MALFORMED_RECORD = "malformed_record"  # not a record at all: bad CSV quoting, extra cells, not a JSON object
    BAD_ENCODING = "bad_encoding"
    LINE_TOO_LONG = "line_too_long"
    CONFLICT = "conflict"
    LATE = "late"                          # arrived after the delivery's telemetry deadline (not an amendment)


GPUS_PER_NODE_MAX: Final = 72   # a record is one node: up to 72 GPUs (an NVL72 rack), whatever the delivery's G


class RecordError(ValueError):
    """One field (or the record) is not acceptable, with the reason code."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class DeliveryWindow:
    """What a record is checked against: the delivery period [start_ns, end_ns) and contracted GPUs G."""

    start_ns: int
    end_ns: int
    contracted_gpus: int
    late: bool = False   # the telemetry deadline has passed: valid records are rejected as `late`
    deadline_ns: int | None = None   # records of a file that arrived at or after this are `late` too

    def __post_init__(self) -> None:
        if self.start_ns % NS_PER_HOUR or self.end_ns % NS_PER_HOUR or self.end_ns <= self.start_ns:
            raise ValueError(f"a delivery window is whole hours with start < end, not [{self.start_ns}, {self.end_ns})")
        if self.contracted_gpus < 1:
            raise ValueError(f"contracted GPUs must be positive, not {self.contracted_gpus}")

    @property
    def hours(self) -> int:
        return (self.end_ns - self.start_ns) // NS_PER_HOUR


@dataclass(frozen=True, slots=True)
class AcceptedRecord:
    """A validated record: typed values (decimals keep the digits as written) and the line it came from."""

    source: str
    line_no: int
    delivery_id: str
    node_id: str
    hour_start_ns: int
    gpus: int
    available: Decimal
    probe_mfu: Decimal
    raw: str


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A line that is not an acceptable record, kept with its reason; `raw` is the line as given
    (undecodable bytes as \\x escapes; a too-long line shortened to its start)."""

    source: str
    line_no: int
    raw: str
    reason: Reason
    message: str
    delivery_id: str = ""   # the delivery the line names, when it could be read as a record


@dataclass(frozen=True, slots=True)
class DuplicateRecord:
    """An exact duplicate (same six values as written) of a record accepted earlier: ignored, counted."""

    source: str
    line_no: int
    raw: str
    delivery_id: str
    node_id: str
    hour_start_ns: int


TelemetryItem = AcceptedRecord | RejectedRecord | DuplicateRecord


# -- value grammar -------------------------------------------------------------------------------


def check_identifier(text: str, name: str) -> str:
    if not text or len(text) > MAX_ID_CHARS or _CONTROL.search(text) or text != text.strip():
        raise RecordError(Reason.MALFORMED_FIELD,
                          f"{name} {text[:80]!r} must be 1..{MAX_ID_CHARS} characters without '|', control "
                          "characters or surrounding spaces")
    return text


def parse_gpus(text: str) -> int:
    """`gpus` as written -> int (range is the caller's check)."""
    if len(text) > 18 or not _INTEGER.fullmatch(text) or text == "-0":
        raise RecordError(Reason.MALFORMED_FIELD, f"gpus {text[:80]!r} is not an integer such as 8")
    return int(text)


def parse_decimal(text: str, name: str) -> Decimal:
    """A plain decimal as written -> Decimal with exactly those digits (range is the caller's check)."""
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise RecordError(Reason.MALFORMED_FIELD, f"{name} {text[:80]!r} is not a plain decimal such as 0.9875")
    sign, whole, fraction = match.groups()
    if sign and whole == "0" and (fraction is None or not fraction.strip("0")):
        raise RecordError(Reason.MALFORMED_FIELD, f"{name} {text!r} is a negative zero")
    return Decimal(text)


def parse_hour_start(text: str) -> int:
    """ISO 8601 UTC `2026-12-03T05:00:00Z` (or `+00:00`) -> ns since the epoch, on the hour."""
    match = _HOUR.fullmatch(text)
    if match is None:
        raise RecordError(Reason.MALFORMED_FIELD,
                          f"hour_start {text[:80]!r} is not ISO 8601 UTC such as 2026-12-03T05:00:00Z")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if zone not in ("Z", "+00:00"):
        raise RecordError(Reason.MALFORMED_FIELD, f"hour_start {text!r} is not UTC (Z or +00:00)")
    hh, mm, ss = int(hour), int(minute), int(second)
    try:
        days = date(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        raise RecordError(Reason.MALFORMED_FIELD, f"hour_start {text!r} is not a calendar date") from None
    if hh > 23 or mm > 59 or ss > 59:
        raise RecordError(Reason.MALFORMED_FIELD, f"hour_start {text!r} is not a time of day")
    if mm or ss or (fraction is not None and fraction.strip("0")):
        raise RecordError(Reason.HOUR_NOT_ON_THE_HOUR, f"hour_start {text} is not on the hour")
    return days * _NS_PER_DAY + hh * NS_PER_HOUR


def format_hour_start(hour_start_ns: int) -> str:
    """ns since the epoch (on the hour) -> `2026-12-03T05:00:00Z`."""
    days, rest = divmod(hour_start_ns, _NS_PER_DAY)
    day = date.fromordinal(days + _EPOCH_ORDINAL)
    seconds = rest // NS_PER_SECOND
    return f"{day.isoformat()}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z"
