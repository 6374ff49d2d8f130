"""Whether an open session's key and account may still act: revocation and the kill switch reach every
live WebSocket session (order entry on the API, the private market-data channel on the feed gateways)
within a second.

A session checks its standing every `session_check_ms` (250 ms): the key's row through the key ring
(cached at most `KEY_CACHE_TTL_NS`, 500 ms, so a revocation made through any process is seen) and the
account's `enabled` flag in the process's own core (the API's engine, or a gateway's replica, which
follows the journal within milliseconds). A session that lost its standing gets an error message naming
why and is closed with 1008 (policy violation).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from exchange.api.errors import ApiCode
from exchange.api.keyring import KeyRing
from exchange.domain.codes import RejectCode
from exchange.domain.engine import Engine

CLOSE_POLICY_VIOLATION = 1008


def lost_standing(keyring: KeyRing, key_id: str, account_id: int, engine: Engine | None) -> tuple[str, str] | None:
    """(code, message) if the key was revoked (or is gone) or the account disabled; else None."""
    row = keyring.api_key(key_id)
    if row is None or row.revoked_ts_ns is not None:
        return ApiCode.AUTH_KEY_REVOKED, "this API key has been revoked: the session is closed"
    if engine is not None:
        account = engine.accounts.get(account_id)
        if account is not None and not account.enabled:
            return RejectCode.ACCOUNT_DISABLED, f"account {account_id} is disabled: the session is closed"
    return None


async def watch_standing(check: Callable[[], tuple[str, str] | None], interval_ms: int,
                         close: Callable[[str, str], Awaitable[None]]) -> None:
    """Poll `check` every `interval_ms`; on the first reason, `close(code, message)` and return."""
    while True:
        await asyncio.sleep(interval_ms / 1_000)
        reason = check()
        if reason is not None:
            await close(*reason)
            return
