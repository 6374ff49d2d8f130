"""The signing headers of a private request, from `exchange.signing` (shared with the server)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from exchange.signing import (
    HEADER_IDEMPOTENCY_KEY,
    HEADER_KEY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    body_mac,
    mac_signature,
    sign,
)


def system_clock_s() -> int:
    """Seconds since the Unix epoch, the default clock of a signer."""
    return int(time.time())


class Signer:
    """Signs requests with one API key. The timestamp has microseconds and strictly increases from one
    request to the next, so no two requests of a signer share a signature: the server accepts an acting
    signature once (a captured request cannot be replayed), and every retry is signed anew.

    `clock_s` (injectable for tests; the server accepts ±5 s of skew) gives whole seconds; by default
    the system clock is read to the microsecond."""

    def __init__(self, key_id: str, secret: str, clock_s: Callable[[], int] | None = None) -> None:
        if not key_id or not secret:
            raise ValueError("key_id and secret must be non-empty")
        self.key_id = key_id
        self._secret = secret
        self._clock_s = clock_s
        self._last_us = 0

    def __repr__(self) -> str:  # never shows the secret
        return f"Signer(key_id={self.key_id!r})"

    def timestamp(self) -> str:
        now_us = time.time_ns() // 1_000 if self._clock_s is None else int(self._clock_s()) * 1_000_000
        now_us = max(now_us, self._last_us + 1)
        self._last_us = now_us
        return f"{now_us // 1_000_000}.{now_us % 1_000_000:06d}"

    def signature(self, timestamp_s: int | str, method: str, path_with_query: str, body: bytes = b"",
                  idempotency_key: str | None = None) -> str:
        return sign(self._secret, timestamp_s, method, path_with_query, body, idempotency_key)

    def headers(self, method: str, path_with_query: str, body: bytes = b"",
                idempotency_key: str | None = None) -> dict[str, str]:
        """The auth headers for a request with this method, target (path and query exactly as sent),
        body (exactly the bytes sent) and Idempotency-Key (sent and signed when given)."""
        timestamp_s = self.timestamp()
        headers = {
            HEADER_KEY: self.key_id,
            HEADER_TIMESTAMP: timestamp_s,
            HEADER_SIGNATURE: self.signature(timestamp_s, method, path_with_query, body, idempotency_key),
        }
        if idempotency_key is not None:
            headers[HEADER_IDEMPOTENCY_KEY] = idempotency_key
        return headers

    def stream_headers(self, method: str, path_with_query: str, chunks: Iterable[bytes]) -> dict[str, str]:
        """The auth headers for a body read from `chunks` (a file, read once here to sign it; send the
        same bytes after): signed exactly as `headers` would sign them, without holding the body."""
        timestamp_s = self.timestamp()
        mac = body_mac(self._secret, timestamp_s, method, path_with_query)
        for chunk in chunks:
            mac.update(chunk)
        return {HEADER_KEY: self.key_id, HEADER_TIMESTAMP: timestamp_s, HEADER_SIGNATURE: mac_signature(mac)}
