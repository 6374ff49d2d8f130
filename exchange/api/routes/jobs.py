"""Operator endpoints of the settlement jobs (`operator` scope): submit a settlement command (what a job
running as a client does), list the scheduler's job runs, upload a telemetry file into the inbox.

The two endpoints that take large bodies (a SettleDaily carries every account's variation margin; a
telemetry file may be gigabytes) check the key and its scope from the headers before reading a byte
of the body, so a stranger cannot make the server buffer it."""

from __future__ import annotations

import hashlib
import os
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from exchange.api.auth import OPERATOR, Principal, check_rate, client_ip, path_with_query, verify_signed
from exchange.api.errors import ApiCode, ApiError
from exchange.api.job_schemas import CommandBody, CommandOut, JobRunsOut, to_command
from exchange.api.runtime import Runtime, get_runtime
from exchange.jobs.inbox import INBOX_NAME_RE, inbox_dir
from exchange.signing import (
    HEADER_IDEMPOTENCY_KEY,
    HEADER_KEY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    TIMESTAMP_RE,
    body_mac,
    mac_signature,
)
from exchange.store.job_log import PAGE_MAX, JobLog

router = APIRouter(prefix="/v1/admin", tags=["operator"])

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
Operator = Annotated[Principal, Depends(OPERATOR)]
UPLOAD_CHUNK_BYTES = 1 << 20


async def _operator_before_body(request: Request, runtime: RuntimeDep) -> None:
    """The key named in the headers exists, is live and holds `operator`, checked before the body is read
    (the signature, which covers the body, is checked after, by the route's OPERATOR dependency)."""
    key_id = request.headers.get(HEADER_KEY)
    row = runtime.api_key(key_id) if key_id else None
    if row is None or row.revoked_ts_ns is not None:
        # Missing, unknown or revoked: the full check says which (it stops before the signature).
        verify_signed(runtime, key_id, request.headers.get(HEADER_TIMESTAMP), request.headers.get(HEADER_SIGNATURE),
                      request.method, path_with_query(request), b"", ip=client_ip(request),
                      idempotency_key=request.headers.get(HEADER_IDEMPOTENCY_KEY))
        raise AssertionError("verify_signed accepted a key the store does not hold")
    if "operator" not in row.scopes:
        raise ApiError(403, ApiCode.FORBIDDEN_SCOPE, "this API key lacks the 'operator' scope",
                       {"required": "operator", "granted": list(row.scopes)})


# For the OpenAPI document (exchange.api.openapi.required_scope): this dependency stands for OPERATOR.
_operator_before_body.required_scope = "operator"  # type: ignore[attr-defined]


@router.post("/commands", response_model=CommandOut, dependencies=[Depends(_operator_before_body)])
async def submit_command(body: CommandBody, principal: Operator, runtime: RuntimeDep) -> dict[str, Any]:
    """Submit one settlement command (settle_daily, assign_deliveries, settle_delivery, or advance_time as
    a barrier); answered once durable with its journal seq. Its outcome is in the journal: a job follows
    it (a read-only replica) and reads the command's events there (their kinds are in the answer too).
    Each settlement command is idempotent by its digest, so a retry posts nothing twice."""
    result = await runtime.submit_sequenced(to_command(body.command))
    return {"seq": result.seq, "ts_ns": result.ts_ns, "events": [type(e).__name__ for e in result.events]}


@router.get("/jobs", response_model=JobRunsOut)
async def job_runs(principal: Operator, runtime: RuntimeDep,
                   limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 50,
                   cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
                   state: Annotated[str | None, Query(pattern=r"^(running|succeeded|failed|interrupted)$")] = None,
                   kind: Annotated[str | None, Query(pattern=r"^(daily|delivery|retention)$")] = None,
                   ) -> dict[str, Any]:
    """The scheduler's job runs, newest first: kind, what it settles (`key`), trigger, attempt, state,
    progress, duration, counts, error. `next_cursor` pages on to older runs."""
    runs = await run_in_threadpool(JobLog(runtime.store).page, limit + 1,
                                   None if cursor is None else int(cursor), state, kind)
    more = len(runs) > limit
    runs = runs[:limit]
    return {"items": [run.as_json() for run in runs],
            "next_cursor": str(runs[-1].run_id) if more and runs else None,
            "scheduler": runtime.settings.scheduler}


class UploadOut(BaseModel):
    """A telemetry file in the inbox."""

    name: str = Field(description="the file's name in the inbox", examples=["probe-2026-12-03.csv"])
    bytes: int = Field(description="its size in bytes", examples=[1_048_576])
    sha256: str = Field(description="the SHA-256 of its content, hex",
                        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"])
    created: bool = Field(description="false when the inbox already had this very file (a retry)", examples=[True])


@router.put("/telemetry/{name}", response_model=UploadOut, dependencies=[Depends(_operator_before_body)])
async def upload_telemetry(name: Annotated[str, Path(pattern=INBOX_NAME_RE.pattern, max_length=105)],
                           request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    """Put a probe telemetry file (.csv or .jsonl) into the inbox that the scheduled delivery settlement
    reads. Signed like every request (the body is the file), but the body is streamed to disk and the
    signature checked as it streams, never held in memory; the file enters the inbox only once the
    signature matched. Idempotent: the same name with the same content again is answered `created:
    false`; other content under an existing name is refused (`upload_exists`)."""
    started_ns = runtime.clock_ns()
    headers = request.headers
    key_id, timestamp = headers.get(HEADER_KEY) or "", headers.get(HEADER_TIMESTAMP) or ""
    idempotency_key = headers.get(HEADER_IDEMPOTENCY_KEY)
    if not TIMESTAMP_RE.match(timestamp):   # the full check below says so, before a byte is read
        verify_signed(runtime, key_id, timestamp, headers.get(HEADER_SIGNATURE), request.method,
                      path_with_query(request), b"", ip=client_ip(request), idempotency_key=idempotency_key)
    mac = body_mac(runtime.secret(key_id), timestamp, request.method, path_with_query(request), idempotency_key)
    folder = inbox_dir(runtime.settings.data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    partial = folder / f".{name}.{os.getpid()}.{id(request)}.part"
    digest = hashlib.sha256()
    size = 0
    try:
        with open(partial, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                digest.update(chunk)
                mac.update(chunk)
                await run_in_threadpool(out.write, chunk)
            await run_in_threadpool(os.fsync, out.fileno())
        ip = client_ip(request)
        principal = verify_signed(runtime, key_id, timestamp, headers.get(HEADER_SIGNATURE), request.method,
                                  path_with_query(request), b"", ip=ip, idempotency_key=idempotency_key,
                                  expected_signature=mac_signature(mac), at_ns=started_ns)
        check_rate(runtime, principal.key_id, ip)
        sha256 = digest.hexdigest()
        if target.exists():
            existing = await run_in_threadpool(_sha256_of, target)
            if existing != sha256:
                raise ApiError(409, ApiCode.UPLOAD_EXISTS, f"the inbox already has another file named {name}",
                               {"sha256": existing})
            return {"name": name, "bytes": size, "sha256": sha256, "created": False}
        arrived_ns = runtime.exchange_clock_ns()   # the telemetry deadline is judged against this
        os.utime(partial, ns=(arrived_ns, arrived_ns))
        os.replace(partial, target)
        return {"name": name, "bytes": size, "sha256": sha256, "created": True}
    finally:
        partial.unlink(missing_ok=True)


def _sha256_of(path: os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(UPLOAD_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()



