"""Refusal of replayed signatures: a captured signed request cannot act twice.

A signature covers the timestamp, method, target, Idempotency-Key and body, so a request that acts
(every method but GET and HEAD, and the authentication of a WebSocket session) is accepted once per
signature: the same signature again inside the timestamp window is refused (`replayed_request`).
After the window the timestamp check refuses it anyway, so a signature only needs remembering until
its own timestamp + window; that keeps the memory bounded by the request rate × the window, and
`max_entries` bounds it outright. When full of live entries, new acting requests are refused
(503, retry shortly) rather than forgetting a signature that could then be replayed.

Pure: every call is given `now_ns`; nothing reads a clock.
"""

from __future__ import annotations

import heapq

_NS_PER_S = 1_000_000_000


class ReplayGuardFull(Exception):
    """Every remembered signature is still inside its window: refuse rather than forget one."""


class ReplayGuard:
    __slots__ = ("_expiries", "_seen", "max_entries")

    def __init__(self, max_entries: int = 200_000) -> None:
        assert max_entries > 0
        self.max_entries = max_entries
        self._seen: dict[str, int] = {}             # key id + signature -> forget at (ns)
        self._expiries: list[tuple[int, str]] = []  # heap of (forget at, entry): the oldest first

    def __len__(self) -> int:
        return len(self._seen)

    def first_use(self, key_id: str, signature: str, timestamp_s: int, window_s: int, now_ns: int) -> bool:
        """True (and remembered) the first time this key's signature is seen; False for a replay.
        Raises `ReplayGuardFull` when `max_entries` live signatures are held."""
        expiries, seen = self._expiries, self._seen
        while expiries and expiries[0][0] <= now_ns:
            _, entry = heapq.heappop(expiries)
            del seen[entry]
        entry = f"{key_id} {signature}"
        if entry in seen:
            return False
        if len(seen) >= self.max_entries:
            raise ReplayGuardFull
        # The timestamp check accepts the signature while now <= timestamp + window (whole seconds, the
        # fraction dropped), so it must be remembered until one second past that.
        forget_at_ns = (timestamp_s + window_s + 1) * _NS_PER_S
        seen[entry] = forget_at_ns
        heapq.heappush(expiries, (forget_at_ns, entry))
        return True
