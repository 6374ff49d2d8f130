"""The exchange's own settlement calendar: `exchange serve` runs its settlement jobs on time.

- **Daily settlement** after each 16:00 UTC cut (plus `job_grace_s`), for that date: `exchange settle
  daily --date D`, which settles every cut up to D not yet settled, oldest first, and assigns the
  deliveries of series whose trading terminated at that cut (expiry happens at trading termination,
  which is a cut). A cut missed while the exchange was down is caught up at start: the run for the
  newest cut settles the older ones first, in order.
- **Delivery settlement** at each telemetry deadline (rulebook §8 v2: `telemetry_deadline_hours` after
  a delivery period ends): `exchange settle delivery --inbox --delivery ID...` for every assigned
  delivery past its deadline and not settled, with the telemetry inbox's files.

Each run is a child process running the job as a client of this server (`exchange.jobs.session`), so
the job's work (replaying the journal, planning, statements) never runs on the server's event loop
and never slows order entry beyond the cores it shares. Runs are recorded in the store (`job_runs`:
state, progress, counts, error), counted in Prometheus metrics, and a failed run is retried after
10 s, 20 s, 40 s ... up to `job_retry_s_max`, with an ERROR log line each time (the alert). A run
left `running` by a server that died is marked `interrupted` at start and runs again; every
settlement command is idempotent by its digest, so a rerun posts only what is missing.

`due_jobs` is pure (engine state, time, what succeeded): the calendar is tested without processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exchange.catalog.catalog import ExchangeRules as Rules
from exchange.domain.engine import Engine
from exchange.domain.units import NS_PER_HOUR
from exchange.jobs.session import yield_cpu
from exchange.service.retention import archive_segments
from exchange.settings import Settings
from exchange.store import Store
from exchange.store.job_log import JobLog

log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S
RETRY_FIRST_S = 10
PROGRESS_WRITE_EVERY_S = 1.0     # progress lines are many; the store row is updated at most this often
STDERR_KEPT_CHARS = 3_000
RETENTION_EVERY_S = 3_600        # journal retention looks for segments to archive this often


@dataclass(frozen=True, slots=True)
class DueJob:
    kind: str                  # daily | delivery
    key: str                   # what it settles: the same key is never run again once it succeeded
    args: tuple[str, ...]      # after `exchange settle`
    trigger: str               # schedule | catch-up (its time passed before this server started)


def _date(ns: int) -> str:
    return datetime.fromtimestamp(ns // NS_PER_S, UTC).strftime("%Y-%m-%d")


def latest_cut_ns(now_ns: int, cut_hour_utc: int) -> int:
    """The last daily cut at or before `now_ns`."""
    offset = cut_hour_utc * NS_PER_HOUR
    return (now_ns - offset) // NS_PER_DAY * NS_PER_DAY + offset


def due_jobs(engine: Engine, rules: Rules, now_ns: int, grace_ns: int, succeeded: set[str],
             started_ns: int) -> list[DueJob]:
    """The settlement jobs due at `now_ns` that have not succeeded, in the order they should run
    (daily first: a delivery's final settlement price comes from it)."""
    jobs: list[DueJob] = []
    settlement = rules.settlement
    cut_ns = latest_cut_ns(now_ns - grace_ns, settlement.daily_settlement_hour_utc)
    date = _date(cut_ns)
    key = f"daily:{date}"
    if engine.series and key not in succeeded:
        jobs.append(DueJob("daily", key, ("daily", "--date", date),
                           "catch-up" if cut_ns + grace_ns < started_ns else "schedule"))
    deadline_ns = settlement.telemetry_deadline_hours * NS_PER_HOUR
    due: list[str] = []
    oldest_deadline_ns = now_ns
    for delivery in engine.deliveries.values():
        if delivery.settlement is not None:
            continue
        deadline = engine.series[delivery.symbol].spec.delivery_end_ns + deadline_ns
        if deadline + grace_ns <= now_ns:
            due.append(delivery.delivery_id)
            oldest_deadline_ns = min(oldest_deadline_ns, deadline)
    if due:
        due.sort()
        digest = hashlib.sha256(",".join(due).encode()).hexdigest()[:16]
        args: list[str] = ["delivery", "--inbox"]
        for delivery_id in due:
            args += ["--delivery", delivery_id]
        jobs.append(DueJob("delivery", f"delivery:{len(due)}:{digest}", tuple(args),
                           "catch-up" if oldest_deadline_ns + grace_ns < started_ns else "schedule"))
    return jobs


def retry_delay_s(failures: int, delay_s_max: int) -> int:
    """After the n-th failure in a row: 10 s, 20 s, 40 s ... at most `delay_s_max`."""
    if failures <= 0:
        return 0
    return int(min(delay_s_max, RETRY_FIRST_S * 2 ** min(failures - 1, 30)))


def _child_setup(nice: int) -> Callable[[], None]:
    """What the job's child process does before it runs the job: SIGTERM when the server dies (Linux),
    so a killed exchange never leaves a job running against nothing; and idle CPU priority from its
    first instruction (start-up included), so order entry keeps the cores (`yield_cpu`)."""
    def setup() -> None:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
        yield_cpu(nice)
    return setup


class Scheduler:
    def __init__(self, settings: Settings, store: Store, engine: Callable[[], Engine], rules: Rules,
                 clock_ns: Callable[[], int], api_url: str, metrics: Any | None = None) -> None:
        self.settings = settings
        self.log = JobLog(store)
        self.store = store
        self._retention_due = 0.0
        self.engine = engine
        self.rules = rules
        self.clock_ns = clock_ns
        self.api_url = api_url
        self.metrics = metrics
        self.started_ns = clock_ns()
        self._retry_at_ns: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.running: DueJob | None = None

    def start(self) -> None:
        interrupted = self.log.interrupt_running(self.clock_ns())
        if interrupted:
            log.warning("scheduler: %d job run(s) were interrupted by the last stop; they run again", interrupted)
        self._task = asyncio.create_task(self._loop(), name="scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:   # the calendar must outlive any one failure; the run itself is recorded
                log.exception("scheduler: tick failed")
            await asyncio.sleep(self.settings.scheduler_poll_s)

    async def tick(self) -> list[str]:
        """Run every due job whose retry time has come, one at a time; their final states."""
        succeeded = await asyncio.to_thread(self.log.succeeded_keys)
        now = self.clock_ns()
        jobs = due_jobs(self.engine(), self.rules, now, self.settings.job_grace_s * NS_PER_S, succeeded,
                        self.started_ns)
        if self.metrics is not None:
            self.metrics.jobs_due.set(len(jobs))
        states = []
        for job in jobs:
            if self._retry_at_ns.get(job.key, 0) > self.clock_ns():
                continue
            states.append(await self.run(job))
        if self.settings.journal_retention_days and time.monotonic() >= self._retention_due:
            self._retention_due = time.monotonic() + RETENTION_EVERY_S
            states.append(await self.retention())
        return states

    async def retention(self) -> str:
        """Archive the journal segments the policy lets go (exchange/service/retention.py), as a job run."""
        now = self.clock_ns()
        run_id = await asyncio.to_thread(self.log.start, "retention", f"retention:{now // NS_PER_S}", "schedule", 1,
                                         now)
        try:
            report = await asyncio.to_thread(archive_segments, self.settings.data_dir,
                                             self.settings.journal_retention_days, self.store.last_seq())
        except Exception as error:   # reported like any job; the next pass tries again
            log.exception("journal retention failed")
            await asyncio.to_thread(self.log.finish, run_id, "failed", self.clock_ns(), {}, repr(error))
            return "failed"
        counts = {"archived": len(report.archived), "kept": report.kept, "floor_seq": report.floor_seq}
        await asyncio.to_thread(self.log.finish, run_id, "succeeded", self.clock_ns(), counts)
        return "succeeded"

    async def run(self, job: DueJob) -> str:
        failures = await asyncio.to_thread(self.log.failures_since_success, job.key)
        trigger = "retry" if failures else job.trigger
        run_id = await asyncio.to_thread(self.log.start, job.kind, job.key, trigger, failures + 1, self.clock_ns())
        log.info("scheduler: run %d %s (%s, attempt %d)", run_id, job.key, trigger, failures + 1)
        self.running = job
        started = self.clock_ns()
        try:
            state, counts, error = await self._child(run_id, job)
        finally:
            self.running = None
        finished = self.clock_ns()
        await asyncio.to_thread(self.log.finish, run_id, state, finished, counts, error)
        if self.metrics is not None:
            self.metrics.job_runs.labels(job.kind, state).inc()
            self.metrics.job_seconds.labels(job.kind).observe(max(0, finished - started) / NS_PER_S)
        if state == "succeeded":
            self._retry_at_ns.pop(job.key, None)
            if self.metrics is not None:
                self.metrics.job_last_success_seconds.labels(job.kind).set(finished / NS_PER_S)
            log.info("scheduler: run %d %s succeeded in %.1f s: %s", run_id, job.key, (finished - started) / NS_PER_S,
                     counts)
        else:
            delay_s = retry_delay_s(failures + 1, self.settings.job_retry_s_max)
            self._retry_at_ns[job.key] = finished + delay_s * NS_PER_S
            log.error("scheduler: ALERT run %d %s failed (attempt %d), retrying in %d s: %s", run_id, job.key,
                      failures + 1, delay_s, error)
        return state

    async def _child(self, run_id: int, job: DueJob) -> tuple[str, dict[str, Any], str | None]:
        env = {**os.environ, **self.settings.to_env()}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exchange.cli", "settle", *job.args, "--data", str(self.settings.data_dir),
            "--url", self.api_url, "--progress-json", env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, preexec_fn=_child_setup(self.settings.job_nice))
        assert process.stdout is not None and process.stderr is not None
        counts: dict[str, Any] = {}
        refused: list[str] = []
        stderr_task = asyncio.create_task(process.stderr.read())
        last_write = 0.0
        loop = asyncio.get_running_loop()

        async def read_stdout() -> None:
            nonlocal counts, refused, last_write
            assert process.stdout is not None
            async for raw in process.stdout:
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(record, dict):
                    continue
                if "summary" in record:
                    counts = dict(record["summary"])
                    refused = [str(r) for r in record.get("refused", [])]
                elif "progress" in record and loop.time() - last_write >= PROGRESS_WRITE_EVERY_S:
                    last_write = loop.time()
                    await asyncio.to_thread(self.log.progress, run_id, int(record["progress"]),
                                            None if record.get("total") is None else int(record["total"]))
        try:
            await asyncio.wait_for(read_stdout(), self.settings.job_timeout_s)
            returncode = await asyncio.wait_for(process.wait(), 30)
        except (TimeoutError, asyncio.CancelledError) as stop:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            stderr_task.cancel()
            if isinstance(stop, asyncio.CancelledError):
                raise
            return "failed", counts, f"killed after job_timeout_s={self.settings.job_timeout_s}"
        stderr = (await stderr_task).decode(errors="replace")
        if returncode == 0:
            if counts.get("plans") is not None:
                await asyncio.to_thread(self.log.progress, run_id, int(counts["plans"]), int(counts["plans"]))
            return "succeeded", counts, None
        error = "; ".join(refused) or stderr.strip()[-STDERR_KEPT_CHARS:] or f"exit code {returncode}"
        return "failed", counts, error
