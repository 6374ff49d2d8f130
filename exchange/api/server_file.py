"""`<data>/server.json`: the URLs a running `exchange serve` announces, so that tools pointed at its data
directory (`exchange watch --data DIR`) follow the server wherever its ports are. Written when the server
is ready, removed when it stops; a stale file only points at a server that is gone (the tool then says
it cannot connect)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Final

SERVER_FILE: Final = "server.json"


def announce(data_dir: Path, api_url: str, feeds_url: str | None) -> None:
    path = data_dir / SERVER_FILE
    temporary = path.with_suffix(".json.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"api": api_url, "feeds": feeds_url or "", "pid": os.getpid()}, out)
    os.replace(temporary, path)


def withdraw(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (data_dir / SERVER_FILE).unlink()


def announced(data_dir: Path) -> dict[str, str] | None:
    """The URLs the server of `data_dir` announced ({"api", "feeds"}), or None if none did."""
    try:
        urls = json.loads((data_dir / SERVER_FILE).read_text())
    except (OSError, ValueError):
        return None
    if isinstance(urls, dict) and isinstance(urls.get("api"), str) and isinstance(urls.get("feeds"), str):
        return {"api": urls["api"], "feeds": urls["feeds"]}
    return None
