"""Streaming, validating reader of probe telemetry (rulebook §8 "Input hygiene").

    for item in read_telemetry(paths, deliveries, probe_key):
        AcceptedRecord | RejectedRecord | DuplicateRecord

Every line of every file comes out as exactly one item (blank lines excepted), in file and line
order; nothing is silently dropped. Files are read in binary, line by line (files.physical_lines),
never whole; memory is a chunk, the current line, and about 16 bytes per accepted (delivery, node,
hour) for duplicate detection (see _Validator).

File-level errors raise TelemetryFileError when `read_telemetry` is called, before any item is
produced: an unknown extension, an unreadable file, a CSV file without a header row, or a CSV header
that is not exactly the seven field names (in any order): missing columns and extra or repeated
columns are both errors, because the field names are fixed by the rulebook and a column the
signature does not cover is a schema mistake, not data.

Per-record checks, in this order; the first failing one is the reason:
1. line_too_long (> 4096 bytes), bad_encoding (not UTF-8), malformed_record (CSV: bad quoting or more
   cells than the header; JSONL: not JSON, not an object, repeated or unknown keys);
2. malformed_field: a JSON value that is not a string;
3. missing_field: a field absent or empty (a short CSV row is missing its last fields);
4. bad_signature: the signature does not verify over the six values as written;
5. malformed_field: a value that breaks the grammar (see record.py); hour_not_on_the_hour;
6. unknown_delivery; 7. hour_outside_period;
8. out_of_range: gpus not in 1..72 (one node; it may exceed the delivery's G, whose cap applies to the
   hour's sum), available or probe_mfu not in 0..1;
8b. late: the file arrived at or after the delivery's telemetry deadline (`DeliveryWindow.deadline_ns`
    against the file's arrival: an inbox file's time in the inbox, else the run's time), or the window
    says so (`DeliveryWindow.late`);
9. same (delivery, node, hour) as an accepted record: the same six values as written -> a
    DuplicateRecord (ignored, counted); other values -> rejected as conflict (the first one stands).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, TypeVar

from exchange.domain.units import NS_PER_HOUR
from exchange.telemetry.files import (
    MAX_LINE_BYTES,
    Format,
    TelemetryFileError,
    file_format,
    open_binary,
    physical_lines,
    split_csv_line,
)
from exchange.telemetry.record import (
    FIELDS,
    GPUS_PER_NODE_MAX,
    AcceptedRecord,
    DeliveryWindow,
    DuplicateRecord,
    Reason,
    RecordError,
    RejectedRecord,
    TelemetryItem,
    check_identifier,
    parse_decimal,
    parse_gpus,
    parse_hour_start,
)
from exchange.telemetry.signing import Signer

_EMPTY_SLOT: Final = bytes(16)
_MEMO_SIZE: Final = 1 << 16
_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Source:
    path: Path
    format: Format
    columns: tuple[int, ...] = ()  # CSV: the cell index of each of FIELDS
    width: int = 0  # CSV: number of header cells
    arrived_ns: int | None = None   # when the file reached the exchange (the telemetry deadline's reference)


def read_telemetry(paths: Iterable[Path | str], deliveries: Mapping[str, DeliveryWindow], probe_key: bytes,
                   *, max_line_bytes: int = MAX_LINE_BYTES,
                   arrivals: Mapping[Path, int] | None = None) -> Iterator[TelemetryItem]:
    """Check every file's type and header now (TelemetryFileError), then stream the items of all
    files; duplicates and conflicts are detected across the files of one call. `arrivals`: when each
    file reached the exchange (ns), judged against each delivery's `deadline_ns`."""
    sources = [_inspect(Path(path), max_line_bytes) for path in paths]
    if arrivals is not None:
        sources = [_Source(s.path, s.format, s.columns, s.width, arrivals.get(s.path)) for s in sources]
    return _stream(sources, _Validator(deliveries, probe_key), max_line_bytes)


def _inspect(path: Path, max_line_bytes: int) -> _Source:
    fmt = file_format(path)
    with open_binary(path) as stream:
        if fmt is Format.JSONL:
            return _Source(path, fmt)
        first = next(physical_lines(stream, max_line_bytes), None)
    return _Source(path, fmt, *_csv_header(path, first))


def _csv_header(path: Path, first: tuple[int, bytes, int] | None) -> tuple[tuple[int, ...], int]:
    if first is None or (not first[1] and not first[2]):
        raise TelemetryFileError(f"{path}: empty CSV file: no header row ({', '.join(FIELDS)})")
    _, data, too_long = first
    if too_long:
        raise TelemetryFileError(f"{path}: the CSV header line is {too_long} bytes long")
    try:
        names = split_csv_line(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise TelemetryFileError(f"{path}: the CSV header is not readable: {exc}") from None
    missing = [name for name in FIELDS if name not in names]
    extra = [name for name in names if name not in FIELDS]
    repeated = sorted({name for name in names if names.count(name) > 1})
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if extra:
        problems.append(f"unexpected column(s) {', '.join(repr(name) for name in extra)}")
    if repeated:
        problems.append(f"repeated column(s) {', '.join(repeated)}")
    if problems:
        raise TelemetryFileError(f"{path}: bad CSV header: {'; '.join(problems)} "
                                 f"(expected exactly {','.join(FIELDS)})")
    return tuple(names.index(name) for name in FIELDS), len(names)


def _stream(sources: list[_Source], validator: _Validator, max_line_bytes: int) -> Iterator[TelemetryItem]:
    for source in sources:
        name = str(source.path)
        csv_file = source.format is Format.CSV
        with open_binary(source.path) as stream:
            for line_no, data, too_long in physical_lines(stream, max_line_bytes):
                if too_long:
                    yield RejectedRecord(name, line_no, data.decode("utf-8", "backslashreplace"),
                                         Reason.LINE_TOO_LONG,
                                         f"line of {too_long} bytes is longer than {max_line_bytes}")
                    continue
                if not data or (csv_file and line_no == 1):
                    continue  # a blank line, or the header (checked when the read began)
                try:
                    raw = data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield RejectedRecord(name, line_no, data.decode("utf-8", "backslashreplace"),
                                         Reason.BAD_ENCODING, f"not UTF-8: {exc.reason} at byte {exc.start}")
                    continue
                values: list[str] | None = None
                try:
                    values = _csv_values(raw, source) if csv_file else _json_values(raw)
                    yield validator.check(name, line_no, raw, values, source.arrived_ns)
                except RecordError as error:
                    # The delivery it names, read through the header (columns come in any order), so the
                    # rejection counts against its delivery; "" when the line was not a record at all.
                    delivery_id = values[0][:200] if values is not None and isinstance(values[0], str) else ""
                    yield RejectedRecord(name, line_no, raw, error.reason, error.message, delivery_id)


def _csv_values(raw: str, source: _Source) -> list[str]:
    try:
        cells = split_csv_line(raw)
    except ValueError as exc:  # csv.Error
        raise RecordError(Reason.MALFORMED_RECORD, f"not a CSV row: {exc}") from None
    if len(cells) > source.width:
        raise RecordError(Reason.MALFORMED_RECORD, f"{len(cells)} cells, the header has {source.width}")
    if len(cells) < source.width:
        cells.extend([""] * (source.width - len(cells)))
    return [cells[i] for i in source.columns]


_FIELD_SET: Final = frozenset(FIELDS)
_NOTHING: Final = ("",) * len(FIELDS)  # an absent key reads as an empty value: missing_field
_STR_ONLY: Final = {str}
_PAIRS: Final = json.JSONDecoder(object_pairs_hook=list)  # objects as pair lists: repeated keys stay visible
_JSON_KINDS: Final = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
                      type(None): "null"}


def _json_values(raw: str) -> list[str]:
    try:
        parsed = _PAIRS.decode(raw)
    except (ValueError, RecursionError) as exc:
        raise RecordError(Reason.MALFORMED_RECORD, f"not a JSON object: {exc}") from None
    if not raw.lstrip(" \t\r\n").startswith("{"):
        raise RecordError(Reason.MALFORMED_RECORD, f"{_JSON_KINDS.get(type(parsed), 'a value')}, not a JSON object")
    obj: dict[str, Any] = dict(parsed)
    if len(obj) != len(parsed):
        repeated = sorted({key for key, _ in parsed if sum(1 for other, _ in parsed if other == key) > 1})
        raise RecordError(Reason.MALFORMED_RECORD, f"repeated key(s) {', '.join(map(repr, repeated))}")
    if not obj.keys() <= _FIELD_SET:
        unknown = [key for key in obj if key not in _FIELD_SET]
        raise RecordError(Reason.MALFORMED_RECORD, f"unexpected key(s) {', '.join(map(repr, unknown))}")
    values = list(map(obj.get, FIELDS, _NOTHING))
    if set(map(type, values)) != _STR_ONLY:
        wrong = [name for name, value in zip(FIELDS, values, strict=True) if not isinstance(value, str)]
        raise RecordError(Reason.MALFORMED_FIELD, f"value(s) of {', '.join(wrong)} must be JSON strings")
    return values


class _Validator:
    """Field checks, signature, window, and the duplicate/conflict memory: a 16-byte digest of the
    values per accepted (delivery, node, hour), kept per (delivery, node) in a dict while the node has
    few hours, then (from a sixteenth of the window's hours on) as one 16-byte slot per hour of the
    window, so a month of a node costs 16 bytes per hour and a stray node id costs only its records.

    Parsed values repeat across records (the same hour for every node, the same few thousand
    decimals), so successful parses are memoised in small bounded dicts."""

    def __init__(self, deliveries: Mapping[str, DeliveryWindow], probe_key: bytes) -> None:
        self.deliveries = deliveries
        self.signer = Signer(probe_key)
        self.seen: dict[tuple[str, str], dict[int, bytes] | bytearray] = {}
        self._ids: dict[str, str] = {}
        self._hours: dict[str, int] = {}
        self._gpus: dict[str, int] = {}
        self._decimals: dict[str, Decimal] = {}

    def check(self, source: str, line_no: int, raw: str, values: list[str],
              arrived_ns: int | None = None) -> TelemetryItem:
        delivery_id, node_id, hour_text, gpus_text, available_text, mfu_text, signature = values
        if not (delivery_id and node_id and hour_text and gpus_text and available_text and mfu_text and signature):
            missing = [name for name, value in zip(FIELDS, values, strict=True) if not value]
            raise RecordError(Reason.MISSING_FIELD, f"missing {', '.join(missing)}")
        try:
            message = "|".join(values[:6]).encode("utf-8")
        except UnicodeEncodeError:
            raise RecordError(Reason.MALFORMED_FIELD, "a value holds a lone surrogate (\\ud800-style escape)") from None
        if not (len(signature) == 64 and signature.isascii()
                and hmac.compare_digest(self.signer.hexdigest(message), signature.lower())):
            raise RecordError(Reason.BAD_SIGNATURE, "signature does not verify with the probe key")
        ids = self._ids
        if delivery_id not in ids:
            ids[delivery_id] = _memo(ids, delivery_id, check_identifier(delivery_id, "delivery_id"))
        if node_id not in ids:
            ids[node_id] = _memo(ids, node_id, check_identifier(node_id, "node_id"))
        gpus = self._gpus.get(gpus_text)
        if gpus is None:
            gpus = _memo(self._gpus, gpus_text, parse_gpus(gpus_text))
        decimals = self._decimals
        available = decimals.get(available_text)
        if available is None:
            available = _memo(decimals, available_text, parse_decimal(available_text, "available"))
        probe_mfu = decimals.get(mfu_text)
        if probe_mfu is None:
            probe_mfu = _memo(decimals, mfu_text, parse_decimal(mfu_text, "probe_mfu"))
        hour_ns = self._hours.get(hour_text)
        if hour_ns is None:
            hour_ns = _memo(self._hours, hour_text, parse_hour_start(hour_text))
        window = self.deliveries.get(delivery_id)
        if window is None:
            raise RecordError(Reason.UNKNOWN_DELIVERY, f"no delivery {delivery_id!r}")
        if not window.start_ns <= hour_ns < window.end_ns:
            raise RecordError(Reason.HOUR_OUTSIDE_PERIOD, f"hour_start {hour_text} is outside the delivery period")
        if not 1 <= gpus <= GPUS_PER_NODE_MAX:
            raise RecordError(Reason.OUT_OF_RANGE, f"gpus {gpus} is outside 1..{GPUS_PER_NODE_MAX} (one node)")
        if not (_ZERO <= available <= _ONE):
            raise RecordError(Reason.OUT_OF_RANGE, f"available {available_text[:80]} is outside 0..1")
        if not (_ZERO <= probe_mfu <= _ONE):
            raise RecordError(Reason.OUT_OF_RANGE, f"probe_mfu {mfu_text[:80]} is outside 0..1")
        if window.late or (window.deadline_ns is not None and arrived_ns is not None
                           and arrived_ns >= window.deadline_ns):
            raise RecordError(Reason.LATE, f"the file arrived after the telemetry deadline of {delivery_id}: only an "
                              "amendment run takes it now")

        digest = hashlib.blake2b(message, digest_size=15).digest() + b"\x01"  # never the empty slot
        index = (hour_ns - window.start_ns) // NS_PER_HOUR
        key = (delivery_id, node_id)
        slots = self.seen.get(key)
        held: bytes | bytearray | None
        if isinstance(slots, bytearray):
            held = slots[16 * index:16 * index + 16]
            if held == _EMPTY_SLOT:
                slots[16 * index:16 * index + 16] = digest
                held = None
        else:
            sparse = {} if slots is None else slots
            held = sparse.get(index)
            if held is None:
                sparse[index] = digest
                # from a sixteenth of the hours on, 16 bytes per hour cost less than the dict
                self.seen[key] = _dense(sparse, window.hours) if 16 * len(sparse) >= window.hours else sparse
        if held is None:
            return AcceptedRecord(source, line_no, delivery_id, node_id, hour_ns, gpus, available, probe_mfu, raw)
        if held == digest:
            return DuplicateRecord(source, line_no, raw, delivery_id, node_id, hour_ns)
        raise RecordError(Reason.CONFLICT, f"another record for {delivery_id} {node_id} {hour_text} was accepted "
                                           "with other values")


def _dense(sparse: dict[int, bytes], hours: int) -> bytearray:
    slots = bytearray(16 * hours)
    for index, digest in sparse.items():
        slots[16 * index:16 * index + 16] = digest
    return slots


def _memo(cache: dict[str, _T], text: str, value: _T) -> _T:
    if len(cache) >= _MEMO_SIZE:
        cache.clear()
    cache[text] = value
    return value
