"""API keys as the servers see them: the store's rows, cached briefly, and their derived secrets.

Shared by the API server and the feed gateways (separate processes, one store). A key's row is cached
for `KEY_CACHE_TTL_NS`, so a revocation made through one process stops the key on every other within
that long (open sessions too, see `standing.py`); its secret is HMAC(master key, key id), recomputed on
demand and cached. Both caches are bounded: unknown ids must not grow them forever.
"""

from __future__ import annotations

import time
from typing import Final

from exchange.signing import derive_secret
from exchange.store import Store
from exchange.store.store import ApiKeyRow

KEY_CACHE_TTL_NS: Final = 500_000_000   # a revocation reaches every process (and open session) within 1 s
CACHE_ENTRIES_MAX: Final = 100_000


class KeyRing:
    def __init__(self, store: Store, master_key: bytes) -> None:
        self.store = store
        self.master_key = master_key
        self._rows: dict[str, tuple[int, ApiKeyRow | None]] = {}
        self._secrets: dict[str, str] = {}

    def api_key(self, key_id: str) -> ApiKeyRow | None:
        now = time.monotonic_ns()   # cache ageing only: never part of a decision the core sees
        cached = self._rows.get(key_id)
        if cached is not None and now - cached[0] < KEY_CACHE_TTL_NS:
            return cached[1]
        row = self.store.api_key(key_id)
        if len(self._rows) >= CACHE_ENTRIES_MAX:
            self._rows.clear()
        self._rows[key_id] = (now, row)
        return row

    def forget(self, key_id: str) -> None:
        self._rows.pop(key_id, None)

    def secret(self, key_id: str) -> str:
        secret = self._secrets.get(key_id)
        if secret is None:
            if len(self._secrets) >= CACHE_ENTRIES_MAX:
                self._secrets.clear()
            secret = self._secrets[key_id] = derive_secret(self.master_key, key_id)
        return secret
