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
from exchange.api.runtime import Runtime, get_runtime
from exchange.domain.commands import AdvanceTime, AssignDeliveries, SettleDaily, SettleDelivery
from exchange.jobs.inbox import INBOX_NAME_RE, inbox_dir
from exchange.journal.codec import CodecError, decode_command
from exchange.signing import HEADER_IDEMPOTENCY_KEY, HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP
from exchange.store.job_log import PAGE_MAX, JobLog

router = APIRouter(prefix="/v1/admin", tags=["operator"])

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
Operator = Annotated[Principal, Depends(OPERATOR)]
# The commands a job may submit: settlement, and AdvanceTime (a no-op with the sequencer's time, which a
# job sends first as a barrier: once it is durable, everything sequenced before the job began is too).
JOB_COMMANDS = (SettleDaily, AssignDeliveries, SettleDelivery, AdvanceTime)
UPLOAD_CHUNK_BYTES = 1 << 20


async def _operator_before_body(request: Request, runtime: RuntimeDep) -> None:
    """The key named in the headers exists, is live and holds `operator` (the signature, which covers
    the body, is checked after)."""
    key_id = request.headers.get(HEADER_KEY)
    row = runtime.api_key(key_id) if key_id else None
    if row is None or row.revoked_ts_ns is not None or "operator" not in row.scopes:
        # The full check says exactly what is wrong, on an empty body (nothing was read yet).
        principal = verify_signed(runtime, key_id, request.headers.get(HEADER_TIMESTAMP),
                                  request.headers.get(HEADER_SIGNATURE), request.method, path_with_query(request),
                                  b"", ip=client_ip(request),
                                  idempotency_key=request.headers.get(HEADER_IDEMPOTENCY_KEY))
        raise ApiError(403, ApiCode.FORBIDDEN_SCOPE, "this API key lacks the 'operator' scope",
                       {"required": "operator", "granted": list(principal.scopes)})


class CommandBody(BaseModel):
    command: list[Any] = Field(min_length=1, max_length=16, description="[tag, field, ...] as the journal encodes "
                               "it (exchange.journal.codec)")


class CommandOut(BaseModel):
    seq: int
    ts_ns: int
    events: list[str]


@router.post("/commands", response_model=CommandOut, dependencies=[Depends(_operator_before_body)])
async def submit_command(body: CommandBody, principal: Operator, runtime: RuntimeDep) -> dict[str, Any]:
    """Submit one settlement command (SettleDaily, AssignDeliveries, SettleDelivery, or AdvanceTime as a
    barrier); answered once durable with its journal seq. The outcome is in the journal: a job follows
    it (a read-only replica) and reads the command's events there. Each settlement command is idempotent
    by its digest, so a retry posts nothing twice."""
    try:
        command = decode_command(body.command)
    except CodecError as error:
        raise ApiError(422, ApiCode.VALIDATION_ERROR, f"not a command: {error}") from None
    if not isinstance(command, JOB_COMMANDS):
        raise ApiError(422, ApiCode.COMMAND_NOT_ALLOWED,
                       f"{type(command).__name__} is not a settlement command (allowed: "
                       f"{', '.join(kind.__name__ for kind in JOB_COMMANDS)})")
    result = await runtime.submit_sequenced(command)
    return {"seq": result.seq, "ts_ns": result.ts_ns, "events": [type(e).__name__ for e in result.events]}


@router.get("/jobs")
async def job_runs(principal: Operator, runtime: RuntimeDep,
                   limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 50,
                   cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
                   state: Annotated[str | None, Query(pattern=r"^(running|succeeded|failed|interrupted)$")] = None,
                   kind: Annotated[str | None, Query(pattern=r"^(daily|delivery)$")] = None) -> dict[str, Any]:
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
    name: str
    bytes: int
    sha256: str
    created: bool


@router.put("/telemetry/{name}", response_model=UploadOut, dependencies=[Depends(_operator_before_body)])
async def upload_telemetry(name: Annotated[str, Path(pattern=INBOX_NAME_RE.pattern, max_length=128)],
                           sha256: Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")],
                           request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    """Put a probe telemetry file (.csv or .jsonl) into the inbox that the scheduled delivery
    settlement reads. The body is streamed to disk, never held in memory. Signed without the body: the
    signature covers the path and `sha256`, the body's SHA-256, which the server checks before the file
    enters the inbox. Idempotent: the same name with the same content again is answered `created:
    false`; other content under an existing name is refused (`upload_exists`)."""
    headers = request.headers
    ip = client_ip(request)
    principal = verify_signed(runtime, headers.get(HEADER_KEY), headers.get(HEADER_TIMESTAMP),
                              headers.get(HEADER_SIGNATURE), request.method, path_with_query(request), b"", ip=ip,
                              idempotency_key=headers.get(HEADER_IDEMPOTENCY_KEY))
    check_rate(runtime, principal.key_id, ip)
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
                await run_in_threadpool(out.write, chunk)
            await run_in_threadpool(os.fsync, out.fileno())
        if digest.hexdigest() != sha256:
            raise ApiError(422, ApiCode.UPLOAD_DIGEST_MISMATCH, "the body's SHA-256 is not the signed `sha256`",
                           {"received": digest.hexdigest(), "expected": sha256, "bytes": size})
        if target.exists():
            existing = await run_in_threadpool(_sha256_of, target)
            if existing != sha256:
                raise ApiError(409, ApiCode.UPLOAD_EXISTS, f"the inbox already has another file named {name}",
                               {"sha256": existing})
            return {"name": name, "bytes": size, "sha256": sha256, "created": False}
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



