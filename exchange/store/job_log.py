"""The scheduler's record of job runs (table `job_runs`): what ran, when, how far it got, how it ended.
Read by `GET /v1/admin/jobs` and `exchange jobs`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update

from exchange.store.models import JobRunRecord
from exchange.store.store import Store

ERROR_CHARS_MAX = 3_900
PAGE_MAX = 500


@dataclass(frozen=True, slots=True)
class JobRun:
    run_id: int
    kind: str
    job_key: str
    trigger: str
    attempt: int
    state: str
    started_ts_ns: int
    finished_ts_ns: int | None
    progress_done: int
    progress_total: int | None
    counts: dict[str, Any]
    error: str | None

    def as_json(self) -> dict[str, Any]:
        duration = None if self.finished_ts_ns is None else self.finished_ts_ns - self.started_ts_ns
        return {"run_id": self.run_id, "kind": self.kind, "key": self.job_key, "trigger": self.trigger,
                "attempt": self.attempt, "state": self.state, "started_ts_ns": self.started_ts_ns,
                "finished_ts_ns": self.finished_ts_ns, "duration_ms": None if duration is None else duration // 10**6,
                "progress": {"done": self.progress_done, "total": self.progress_total},
                "counts": self.counts, "error": self.error}


def _run(row: Any) -> JobRun:
    return JobRun(row.run_id, row.kind, row.job_key, row.trigger, row.attempt, row.state, row.started_ts_ns,
                  row.finished_ts_ns, row.progress_done, row.progress_total, json.loads(row.counts), row.error)


class JobLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def start(self, kind: str, job_key: str, trigger: str, attempt: int, now_ns: int) -> int:
        with self.store.transaction(write=True) as conn:
            run_id = int(conn.execute(select(func.coalesce(func.max(JobRunRecord.run_id), 0))).scalar_one()) + 1
            conn.execute(insert(JobRunRecord).values(
                run_id=run_id, kind=kind, job_key=job_key, trigger=trigger, attempt=attempt, state="running",
                started_ts_ns=now_ns, finished_ts_ns=None, progress_done=0, progress_total=None, counts="{}",
                error=None))
        return run_id

    def progress(self, run_id: int, done: int, total: int | None) -> None:
        with self.store.transaction(write=True) as conn:
            conn.execute(update(JobRunRecord).where(JobRunRecord.run_id == run_id).values(
                progress_done=done, progress_total=total))

    def finish(self, run_id: int, state: str, now_ns: int, counts: dict[str, Any] | None = None,
               error: str | None = None) -> None:
        assert state in ("succeeded", "failed", "interrupted"), state
        with self.store.transaction(write=True) as conn:
            conn.execute(update(JobRunRecord).where(JobRunRecord.run_id == run_id).values(
                state=state, finished_ts_ns=now_ns, counts=json.dumps(counts or {})[:ERROR_CHARS_MAX],
                error=None if error is None else error[-ERROR_CHARS_MAX:]))

    def interrupt_running(self, now_ns: int) -> int:
        """At start: runs left `running` by a process that died are `interrupted` (they run again)."""
        with self.store.transaction(write=True) as conn:
            result = conn.execute(update(JobRunRecord).where(JobRunRecord.state == "running").values(
                state="interrupted", finished_ts_ns=now_ns, error="the exchange stopped during the run"))
            return int(result.rowcount)

    def succeeded_keys(self) -> set[str]:
        with self.store.transaction() as conn:
            return set(conn.execute(select(JobRunRecord.job_key).where(JobRunRecord.state == "succeeded")).scalars())

    def failures_since_success(self, job_key: str) -> int:
        """Failed or interrupted attempts of `job_key` (the retry backoff's exponent)."""
        with self.store.transaction() as conn:
            return int(conn.execute(select(func.count()).where(
                JobRunRecord.job_key == job_key, JobRunRecord.state.in_(("failed", "interrupted")))).scalar_one())

    def last(self, job_key: str) -> JobRun | None:
        with self.store.transaction() as conn:
            row = conn.execute(select(JobRunRecord.__table__).where(JobRunRecord.job_key == job_key)
                               .order_by(JobRunRecord.run_id.desc()).limit(1)).first()
        return None if row is None else _run(row)

    def page(self, limit: int, before_run_id: int | None = None, state: str | None = None,
             kind: str | None = None) -> list[JobRun]:
        """Runs newest first."""
        assert 0 < limit <= PAGE_MAX + 1   # a route asks one more than a page to know if another follows
        query = select(JobRunRecord.__table__)
        if before_run_id is not None:
            query = query.where(JobRunRecord.run_id < before_run_id)
        if state is not None:
            query = query.where(JobRunRecord.state == state)
        if kind is not None:
            query = query.where(JobRunRecord.kind == kind)
        with self.store.transaction() as conn:
            return [_run(row) for row in conn.execute(query.order_by(JobRunRecord.run_id.desc()).limit(limit))]
