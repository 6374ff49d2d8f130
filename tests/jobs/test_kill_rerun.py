"""Kill-and-rerun of the settlement jobs (issue 6): each job runs in a process that is SIGKILLed at a
seeded random point, then runs again to completion; the outcome must equal a clean run's, on SQLite
and on PostgreSQL: every ledger balance, margins, settlements and deliveries, the store's balances and
its settlement postings (none duplicated), the statements, the store as a projection of the journal,
and the core's invariants.

Kill points, by seed: `timed` (a delay drawn from the clean run's duration, so anywhere in the run:
recovery, replaying the cuts, posting, statements), `submit` (between the job's commands: between
series, dates and deliveries), `journaled` (a command durable in the journal and applied, not yet in
the SQL store), `projected` (in the store too, its result not yet seen by the job) and `statements`
(a write of statements of record to the store). Seeds 5-9 kill the first rerun too, at another point.
The scenario (exchange.testing.settlement_scenario) is built once per worker and copied per test; a
PostgreSQL store is rebuilt from the copied journal in a schema of its own.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exchange.catalog import load_catalog
from exchange.jobs.daily import run_daily
from exchange.jobs.delivery import run_delivery
from exchange.settings import Settings
from exchange.testing.settlement_scenario import (
    DAILY_CLOCK_NS,
    DAILY_DATE_NS,
    DELIVERY_CLOCK_NS,
    EXPIRING,
    JOBS,
    RUNNING,
    JobRun,
    Observed,
    build_trading,
    catch_up,
    copy_statements,
    fixed_clock,
    job_args,
    observe,
    recovered,
    run_job,
    settings_for,
    write_delivery_telemetry,
)
from tests.store.conftest import BACKENDS, PgSchemas, require_backend
from tests.store.helpers import assert_matches_engine

SCENARIO_SEED = 1     # three deliveries; VWAP and last-trade settlements in both series
SEEDS = range(10)
FIRST_KILLS = ("timed", "submit", "journaled", "projected", "statements")   # seed % 5
CLOCKS = {"daily": DAILY_CLOCK_NS, "delivery": DELIVERY_CLOCK_NS}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return require_backend(request.param)


@pytest.fixture(scope="session")
def session_schemas() -> Iterator[PgSchemas]:
    schemas = PgSchemas("kill")
    yield schemas
    schemas.drop()


@pytest.fixture
def schemas() -> Iterator[PgSchemas]:
    schemas = PgSchemas("kill")
    yield schemas
    schemas.drop()


@dataclass(frozen=True)
class Base:
    """The data directories before each job (SQLite store inside) and the delivery job's telemetry."""

    before: dict[str, Path]
    telemetry: list[Path]


@pytest.fixture(scope="session")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    root = tmp_path_factory.mktemp("kill-rerun-base")
    before_daily = settings_for(root / "before-daily")
    build_trading(before_daily, SCENARIO_SEED)
    before_delivery = settings_for(root / "before-delivery")
    shutil.copytree(before_daily.data_dir, before_delivery.data_dir)
    report = asyncio.run(run_daily(before_delivery, load_catalog(), DAILY_DATE_NS, fixed_clock(DAILY_CLOCK_NS)))
    # The scenario is what the tests claim: two dates of two series by both methods, an expiry.
    dates = ("2026-12-01", "2026-12-02")
    assert sorted(report.posted) == sorted(f"{s}@{d}" for s in (EXPIRING, RUNNING) for d in dates), report.posted
    assert {str(p.method) for p in report.plans} == {"vwap", "last_trade"}, report.plans
    assert [symbol for symbol, _ in report.expired] == [EXPIRING] and report.expired[0][1] >= 3, report.expired
    with recovered(before_delivery, fixed_clock(DAILY_CLOCK_NS)) as (engine, _, _):
        deliveries = list(engine.deliveries.values())
    telemetry = write_delivery_telemetry(deliveries, root / "telemetry", SCENARIO_SEED)
    return Base({"daily": before_daily.data_dir, "delivery": before_delivery.data_dir}, telemetry)


def prepare(base: Base, job: str, backend: str, data_dir: Path, schemas: PgSchemas,
            snapshot_every: int = 0) -> Settings:
    """A copy of the data directory before `job`; on PostgreSQL its store rebuilt from the journal."""
    if backend == "sqlite":
        shutil.copytree(base.before[job], data_dir)
        return settings_for(data_dir, None, snapshot_every)
    shutil.copytree(base.before[job], data_dir, ignore=shutil.ignore_patterns("exchange.db*"))
    settings = settings_for(data_dir, schemas.url(), snapshot_every)
    catch_up(settings)
    copy_statements(f"sqlite:///{(base.before[job] / 'exchange.db').resolve()}", settings.store_url())
    return settings


@dataclass(frozen=True)
class Reference:
    """A clean run of a job: how long it took (from `ready`), how often it passed each kill point, and
    what it left behind."""

    seconds: float
    passes: dict[str, int]
    observed: Observed


@pytest.fixture(scope="session")
def clean_runs(base: Base, tmp_path_factory: pytest.TempPathFactory,
               session_schemas: PgSchemas) -> Callable[[str, str], Reference]:
    cache: dict[tuple[str, str], Reference] = {}

    def clean(job: str, backend: str) -> Reference:
        if (job, backend) not in cache:
            root = tmp_path_factory.mktemp(f"clean-{job}-{backend}")
            settings = prepare(base, job, backend, root / "data", session_schemas)
            run = run_job(job_args(job, settings, base.telemetry), root)
            assert run.returncode == 0 and run.done is not None, run.stderr
            report = run.done["report"]
            if job == "daily":
                assert len(report["posted"]) == 4 and not report["refused"] and report["expired"], report
            else:
                assert report["statuses"] == ["posted"] * len(base.telemetry), report
            observed = observe(settings, fixed_clock(CLOCKS[job]))
            assert max(observed.postings.values()) == 1, observed.postings
            kinds = {posting[0] for posting in observed.postings}
            assert kinds == ({"variation_margin"} if job == "daily" else
                             {"variation_margin", "delivery_invoice", "delivery_damages"}), kinds
            if backend != "sqlite":   # the store's backend changes nothing of the outcome
                assert observed == clean(job, "sqlite").observed
            cache[job, backend] = Reference(run.seconds, run.done["passes"], observed)
        return cache[job, backend]

    return clean


def _rerun(job: str, settings: Settings, base: Base) -> list[str]:
    """Run the job in-process to completion; returns what it did per command (for the messages)."""
    catalog, clock = load_catalog(), fixed_clock(CLOCKS[job])
    if job == "daily":
        report = asyncio.run(run_daily(settings, catalog, DAILY_DATE_NS, clock))
        assert not report.refused, report.refused
        return [f"posted {name}" for name in report.posted] + [f"unchanged {name}" for name in report.unchanged] + \
            [f"expired {symbol}" for symbol, _ in report.expired]
    outcome = asyncio.run(run_delivery(settings, catalog, base.telemetry, clock_ns=clock))
    statuses = [o.status for o in outcome.outcomes]
    assert set(statuses) <= {"posted", "unchanged"}, statuses
    return statuses


def _describe(run: JobRun, how: str) -> str:
    outcome = "killed" if run.killed else f"exit {run.returncode}"
    return f"{how}: {outcome} after {run.seconds:.3f}s, passes {run.done['passes'] if run.done else '?'}"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("job", JOBS)
def test_killed_job_reruns_to_the_clean_outcome(job: str, seed: int, backend: str, base: Base,
                                                clean_runs: Callable[[str, str], Reference], schemas: PgSchemas,
                                                tmp_path: Path) -> None:
    reference = clean_runs(job, backend)
    rng = random.Random(f"{job}/{seed}")
    settings = prepare(base, job, backend, tmp_path / "data", schemas, snapshot_every=(0, 1, 2)[seed % 3])
    args = job_args(job, settings, base.telemetry)
    kills = [FIRST_KILLS[seed % len(FIRST_KILLS)]]
    if seed >= len(FIRST_KILLS):
        kills.append(rng.choice(FIRST_KILLS))
    history: list[str] = []
    for n, point in enumerate(kills):
        if point == "timed":
            delay = rng.uniform(0, reference.seconds)
            run = run_job(args, tmp_path, kill_after_s=delay)
            history.append(_describe(run, f"kill after {delay:.3f}s"))
        else:
            k = rng.randint(1, reference.passes[point])
            run = run_job([*args, "--die-at", f"{point}:{k}"], tmp_path)
            history.append(_describe(run, f"kill at {point} #{k} of {reference.passes[point]}"))
            if n == 0:   # the first run passes every point as often as the clean run: it must die there
                assert run.killed, (history, run.stderr)
        assert run.killed or (run.returncode == 0 and run.done is not None), (history, run.stderr)

    history.append(f"rerun: {_rerun(job, settings, base)}")
    observed = observe(settings, fixed_clock(CLOCKS[job]), check=assert_matches_engine)
    expected = reference.observed
    assert sum(observed.balances.values()) == 0, history
    assert observed.balances == expected.balances, history
    assert observed.store_balances == observed.balances, history
    assert observed.postings == expected.postings, history        # each settlement posting once, none lost
    assert observed.margins == expected.margins, history
    assert observed.settlements == expected.settlements, history
    assert observed.deliveries == expected.deliveries, history
    assert observed.statements.keys() == expected.statements.keys(), history
    for path, statement in expected.statements.items():
        assert observed.statements[path] == statement, (path, history)

    # And a further run finds nothing left to do.
    again = _rerun(job, settings, base)
    assert all(line.startswith("unchanged") for line in again), (again, history)
