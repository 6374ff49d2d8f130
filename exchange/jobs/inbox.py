"""The telemetry inbox: `<data>/telemetry/inbox/`, where probe files wait for the scheduled delivery
settlement. Files arrive by copy (an operator, a probe's uploader: write elsewhere and rename in, so a
half-written file is never read) or by `PUT /v1/admin/telemetry/{name}` (streamed, checked, renamed in).
The delivery job reads every file here each time it runs (records are deduplicated, so a file read
twice counts once); nothing is deleted: the inbox is the record of what the exchange received."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

INBOX_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}\.(csv|jsonl)$")


def inbox_dir(data_dir: Path) -> Path:
    return data_dir / "telemetry" / "inbox"


def inbox_files(data_dir: Path) -> list[Path]:
    """The inbox's telemetry files by name (hidden and partial files left out)."""
    folder = inbox_dir(data_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and INBOX_NAME_RE.match(p.name))
