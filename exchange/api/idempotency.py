"""Idempotency keys for mutations other than order entry (which is idempotent on client order ids).

A request carrying `Idempotency-Key: K` is answered once; a retry with the same key and the same
request (method, path, body) gets the stored answer, and one with the same key but a different
request is refused (409 `idempotency_key_conflict`). While the first request is still running, a
concurrent retry gets 409 `idempotency_key_in_use`. Keys are per API key and kept for
`idempotency_retention_s`. Only answers below 500 are stored: a 503 (outcome unknown) may be retried.

Answers are stored in the SQL store after the command is durable; a crash between the two loses the
stored answer, not the command, so a retry after such a crash acts again (see the README's
"Retries" section: deposits and withdrawals in that window are the known gap).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from exchange.api.auth import Principal, path_with_query
from exchange.api.errors import ApiCode, ApiError
from exchange.api.runtime import Runtime
from exchange.signing import HEADER_IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_RE


async def idempotent(request: Request, runtime: Runtime, principal: Principal,
                     action: Callable[[], Awaitable[tuple[int, Any]]]) -> Response:
    """Run `action` (returning status and JSON body) at most once per Idempotency-Key."""
    key = request.headers.get(HEADER_IDEMPOTENCY_KEY)
    if key is None:
        status, body = await action()
        return JSONResponse(body, status_code=status)
    if not IDEMPOTENCY_KEY_RE.match(key):
        raise ApiError(400, ApiCode.IDEMPOTENCY_KEY_INVALID,
                       "Idempotency-Key must be 1 to 64 characters of A-Z a-z 0-9 . _ : -")
    digest = hashlib.sha256(request.method.encode() + b" " + path_with_query(request).encode() + b"\n"
                            + await request.body()).hexdigest()
    slot = (principal.key_id, key)
    # Check and reserve with no `await` in between: the event loop runs one coroutine at a time, so two
    # concurrent requests with one key cannot both pass here. (Reserving only after the store lookup
    # below let every request that arrived during that lookup through: one deposit moved cash 1 to 4
    # times.) The reservation holds until the answer is stored, so a later retry finds it stored.
    if slot in runtime.in_flight_idempotency:
        raise ApiError(409, ApiCode.IDEMPOTENCY_KEY_IN_USE, "a request with this Idempotency-Key is in progress",
                       retry_after_s=1)
    runtime.in_flight_idempotency.add(slot)
    try:
        stored = await run_in_threadpool(runtime.store.idempotent_response, principal.key_id, key)
        if stored is not None:
            return _replay(stored, digest)
        try:
            status, body = await action()
            response: Response = JSONResponse(body, status_code=status)
        except ApiError as error:
            if error.status >= 500:
                raise
            status, response = error.status, error.response()
        await run_in_threadpool(runtime.store.save_idempotent_response, principal.key_id, key, digest, status,
                                bytes(response.body), runtime.clock_ns(),
                                runtime.settings.idempotency_retention_s * 1_000_000_000)
        return response
    finally:
        runtime.in_flight_idempotency.discard(slot)


def _replay(stored: tuple[str, int, bytes], digest: str) -> Response:
    stored_digest, status, body = stored
    if stored_digest != digest:
        raise ApiError(409, ApiCode.IDEMPOTENCY_KEY_CONFLICT,
                       "this Idempotency-Key was used for a different request")
    return Response(body, status_code=status, media_type="application/json",
                    headers={"Idempotent-Replayed": "true"})
