"""Finding the exchange that is serving a data directory, from another process on the same machine:
whether a server holds the directory (its LOCK), the API it announced (server.json), and the operator
key it keeps (operator-key.json). Operator commands and settlement jobs use it to work through the
running server instead of opening the directory themselves."""

from __future__ import annotations

import contextlib
import fcntl
import json
from pathlib import Path

from exchange.api.server_file import SERVER_FILE, announced

OPERATOR_KEY_FILE = "operator-key.json"


def server_holds(data_dir: Path) -> bool:
    """True if a process holds the data directory's lock now (a server, or a job running offline)."""
    path = data_dir / "LOCK"
    if not path.exists():
        return False
    with open(path, "ab") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        with contextlib.suppress(OSError):
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        return False


def announced_api(data_dir: Path) -> str | None:
    """The API URL the server of `data_dir` announced, if it did."""
    urls = announced(data_dir)
    return None if urls is None else urls["api"]


def operator_credentials(data_dir: Path) -> tuple[str, str]:
    """The operator key (key id, secret) the exchange keeps in <data>/operator-key.json."""
    path = data_dir / OPERATOR_KEY_FILE
    try:
        key = json.loads(path.read_text())
        return str(key["key_id"]), str(key["secret"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"tried the running exchange's API, but found no operator key in {path} (the exchange "
                         "writes it at start; or create one with `exchange apikey create ACCOUNT --scope operator` "
                         "and save {\"key_id\", \"secret\"} there)") from None


def live_api(data_dir: Path) -> str | None:
    """The API of the server holding `data_dir`, None if none holds it; an error if one holds it but
    announced no API (a job running offline, or a server started without its banner)."""
    if not server_holds(data_dir):
        return None
    url = announced_api(data_dir)
    if url is None:
        raise ValueError(f"{data_dir} is in use by another exchange process that announced no API ({SERVER_FILE}): "
                         "wait for it to finish (an offline job), or pass --url of the running exchange")
    return url
