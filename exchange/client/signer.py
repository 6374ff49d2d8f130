"""The signing headers of a private request, from `exchange.signing` (shared with the server)."""

from __future__ import annotations

import time
from collections.abc import Callable

from exchange.signing import HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, sign


def system_clock_s() -> int:
    """Seconds since the Unix epoch, the default clock of a signer."""
    return int(time.time())


class Signer:
    """Signs requests with one API key. `clock_s` gives the timestamp (injectable for tests; the
    server accepts ±5 s of skew), read afresh for every request, so every retry is signed anew."""

    def __init__(self, key_id: str, secret: str, clock_s: Callable[[], int] = system_clock_s) -> None:
        if not key_id or not secret:
            raise ValueError("key_id and secret must be non-empty")
        self.key_id = key_id
        self._secret = secret
        self._clock_s = clock_s

    def __repr__(self) -> str:  # never shows the secret
        return f"Signer(key_id={self.key_id!r})"

    def timestamp(self) -> int:
        return int(self._clock_s())

    def signature(self, timestamp_s: int, method: str, path_with_query: str, body: bytes = b"") -> str:
        return sign(self._secret, timestamp_s, method, path_with_query, body)

    def headers(self, method: str, path_with_query: str, body: bytes = b"") -> dict[str, str]:
        """The three auth headers for a request with this method, target (path and query exactly as
        sent) and body (exactly the bytes sent)."""
        timestamp_s = self.timestamp()
        return {
            HEADER_KEY: self.key_id,
            HEADER_TIMESTAMP: str(timestamp_s),
            HEADER_SIGNATURE: self.signature(timestamp_s, method, path_with_query, body),
        }
