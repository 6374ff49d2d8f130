"""HMAC-SHA256 signatures of telemetry records with the exchange's probe key (rulebook §8).

The message is the six values *as written* joined by `|` in the rulebook's order
(`delivery_id|node_id|hour_start|gpus|available|probe_mfu`), UTF-8 encoded; the signature is its
HMAC-SHA256 in hex. `0.95` and `0.9500` therefore sign differently: nothing is normalised.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from pathlib import Path

from exchange.settings import Settings
from exchange.telemetry.files import (
    MAX_LINE_BYTES,
    Format,
    RecordWriter,
    TelemetryFileError,
    file_format,
    open_binary,
    physical_lines,
    split_csv_line,
)
from exchange.telemetry.record import SIGNED_FIELDS

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class Signer:
    """HMAC-SHA256 with one key, fast: the key's inner and outer SHA-256 states are computed once
    (RFC 2104), so a record costs two hash copies instead of a fresh HMAC set-up."""

    _BLOCK = 64  # SHA-256 block size

    def __init__(self, key: bytes) -> None:
        if len(key) > self._BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(self._BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))

    def hexdigest(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def canonical_message(values: Sequence[str]) -> bytes:
    """The signed bytes: the six values (delivery_id, node_id, hour_start, gpus, available, probe_mfu)."""
    if len(values) != len(SIGNED_FIELDS):
        raise ValueError(f"a record is signed over {len(SIGNED_FIELDS)} values, not {len(values)}")
    return "|".join(values).encode("utf-8")


def sign(key: bytes, values: Sequence[str]) -> str:
    """Hex HMAC-SHA256 of the canonical message."""
    return hmac.digest(key, canonical_message(values), hashlib.sha256).hex()


def verify(key: bytes, values: Sequence[str], signature: str) -> bool:
    """Whether `signature` (64 hex digits, either case) signs `values`; constant-time comparison."""
    if not _HEX64.fullmatch(signature):
        return False
    return hmac.compare_digest(sign(key, values), signature.lower())


def load_probe_key(data_dir: Path | None = None) -> bytes:
    """The probe key from the settings: EXCHANGE_PROBE_KEY, else <data>/probe.key; never created here
    (a missing key is an error that says where it is expected)."""
    settings = Settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    return settings.load_probe_key()


def sign_file(source: Path | str, target: Path | str, key: bytes) -> int:
    """Sign every record of `source` into `target` (CSV or JSON Lines each by extension, so this also
    converts): the six values are copied as written and the signature added or replaced. A source
    row that cannot be signed (too long, not UTF-8, a missing or non-string value, an unexpected
    field) is an error naming its line, and `target` is not written. Streams; returns the row count."""
    source, target = Path(source), Path(target)
    source_format = file_format(source)
    file_format(target)
    if source.resolve() == target.resolve():
        raise TelemetryFileError(f"{source}: write the signed records to another file")
    columns: list[int] = []
    width = 0
    signer = Signer(key)
    with open_binary(source) as stream, RecordWriter(target) as out:
        for line_no, data, too_long in physical_lines(stream, MAX_LINE_BYTES):
            where = f"{source}:{line_no}"
            if too_long:
                raise TelemetryFileError(f"{where}: line of {too_long} bytes is longer than {MAX_LINE_BYTES}")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise TelemetryFileError(f"{where}: not UTF-8") from None
            if source_format is Format.CSV and line_no == 1:
                names = split_csv_line(text)
                missing = [name for name in SIGNED_FIELDS if name not in names]
                extra = [name for name in names if name not in (*SIGNED_FIELDS, "signature")]
                if missing or extra or len(set(names)) != len(names):
                    raise TelemetryFileError(f"{where}: the header must name {', '.join(SIGNED_FIELDS)} "
                                             "(and optionally signature), each once")
                columns, width = [names.index(name) for name in SIGNED_FIELDS], len(names)
                continue
            if not text:
                continue
            values = _row_values(text, source_format is Format.CSV, columns, width, where)
            out.write((*values, signer.hexdigest(canonical_message(values))))
        if source_format is Format.CSV and not columns:
            raise TelemetryFileError(f"{source}: empty CSV file: no header row")
    return out.count


def _row_values(text: str, csv_row: bool, columns: list[int], width: int, where: str) -> list[str]:
    if csv_row:
        try:
            cells = split_csv_line(text)
        except ValueError as exc:
            raise TelemetryFileError(f"{where}: not a CSV row: {exc}") from None
        if len(cells) != width:
            raise TelemetryFileError(f"{where}: {len(cells)} cells, the header has {width}")
        values: list[object] = [cells[i] for i in columns]
    else:
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            raise TelemetryFileError(f"{where}: not JSON") from None
        if not isinstance(obj, dict) or any(name not in (*SIGNED_FIELDS, "signature") for name in obj):
            raise TelemetryFileError(f"{where}: not an object with the fields {', '.join(SIGNED_FIELDS)}")
        values = [obj.get(name) for name in SIGNED_FIELDS]
    if not all(isinstance(value, str) and value for value in values):
        raise TelemetryFileError(f"{where}: every one of {', '.join(SIGNED_FIELDS)} must be a non-empty string")
    return [str(value) for value in values]
