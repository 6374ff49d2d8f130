"""A small, seeded settlement scenario, and a process that runs one settlement job on it and can be
killed at a chosen point: the kill-and-rerun tests (tests/jobs/test_kill_rerun.py) use both.

The scenario: two daily test series, `EXPIRING` (trading ends at the Dec 2 16:00 cut, delivers Dec 3)
and `RUNNING` (one day later); four accounts trade them over Dec 1 and Dec 2, some trades in the VWAP
window before each cut, and a fifth keeps a bid and an ask resting outside the trades' prices. The
daily job on Dec 2 (at 17:00) then settles two dates for both series and expires `EXPIRING` into
deliveries; the probe telemetry of those deliveries (24 hours, a node per lot, some failing) feeds
the delivery job.

    python -m exchange.testing.settlement_scenario daily --data D --clock-ns C --date-ns X [--die-at MODE:K]
    python -m exchange.testing.settlement_scenario delivery --data D --clock-ns C --telemetry F ... [--die-at ...]

The job runs through the library with a fixed clock (the CLI's is the real one). It prints `ready`
once everything is imported and the kill hooks are installed, then runs the job and prints
`done <json>` (its outcome and how often each kill point was passed). `--die-at MODE:K` makes the
process SIGKILL itself at the K-th pass of a point: `submit` (before the job hands the core its K-th
command), `journaled` (the K-th batch is durable in the journal and applied to the core, not yet
projected into the SQL store), `projected` (projected too, the job has not seen the result),
`replace` (before the K-th atomic file rename: a statement or a snapshot being put in place),
`statements` (before the K-th write of statements of record to the store).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from pydantic import SecretStr
from sqlalchemy import select

from exchange.catalog import load_catalog
from exchange.domain.commands import Command, PlaceOrder
from exchange.domain.engine import Delivery, Engine
from exchange.domain.events import Event, Rejected
from exchange.domain.order import Side, TimeInForce
from exchange.domain.spec import SeriesSpec
from exchange.jobs.session import running_service
from exchange.journal.journal import read_entries
from exchange.service.exchange_service import ExchangeService, ServiceConfig
from exchange.service.sequencer import Sequenced
from exchange.settings import Settings
from exchange.store import Store
from exchange.store.models import LedgerPostingRecord
from exchange.telemetry.generator import GeneratorConfig, write_telemetry
from exchange.testing.api_harness import bootstrap
from exchange.testing.specs import DELIVERY_START_NS, T0_NS, make_spec

S = 10**9
H = 3_600 * S
DAY = 24 * H
EXPIRING = "H100-M40-261203"
RUNNING = "H200-M40-261204"
TRADERS = (1, 2, 3, 4)
MAKER = 5                                  # keeps a bid and an ask resting away from the trades
CASH_MICROS = 10**6 * 10**6                # $1M each
MASTER_KEY_HEX = "ab" * 32
PROBE_KEY_HEX = "cd" * 32
DAILY_DATE_NS = T0_NS + 2 * DAY - 16 * H   # Dec 2 00:00 UTC: settles the Dec 1 and Dec 2 cuts
DAILY_CLOCK_NS = T0_NS + 2 * DAY + H       # Dec 2 17:00 UTC
DELIVERY_CLOCK_NS = DELIVERY_START_NS + DAY + H   # Dec 4 01:00 UTC: the deliveries' day is over
SETTLEMENT_KINDS = ("variation_margin", "delivery_invoice", "delivery_damages")
JOBS = ("daily", "delivery")
KILL_POINTS = ("submit", "journaled", "projected", "replace", "statements")
REPO = Path(__file__).resolve().parents[2]


def fixed_clock(now_ns: int) -> Callable[[], int]:
    return lambda: now_ns


def settings_for(data_dir: Path, database_url: str | None = None, snapshot_every: int = 0) -> Settings:
    return Settings(data_dir=data_dir, database_url=database_url, master_key=SecretStr(MASTER_KEY_HEX),
                    probe_key=SecretStr(PROBE_KEY_HEX), snapshot_every_commands=snapshot_every)


def series_specs() -> list[SeriesSpec]:
    expiring = make_spec(EXPIRING)
    running = replace(make_spec(RUNNING), trading_end_ns=expiring.trading_end_ns + DAY,
                      delivery_start_ns=expiring.delivery_start_ns + DAY,
                      delivery_end_ns=expiring.delivery_end_ns + DAY)
    return [expiring, running]


def trading_commands(seed: int) -> list[tuple[int, Command]]:
    """The seeded trading of Dec 1 and Dec 2, as (time, command), in time order. Every trade is a sell
    that rests and a buy at the same price and size one nanosecond later (each trade at a second of
    its own, so trades never mix); some are in the VWAP window before the cut (one at least, on Dec 1)."""
    rng = random.Random(seed)
    timed: list[tuple[int, Command]] = []
    first_cut = T0_NS + DAY
    for symbol in (EXPIRING, RUNNING):    # the maker's resting orders, before any trade
        timed.append((first_cut - 10 * H, PlaceOrder(MAKER, symbol, Side.BUY, 2, rng.randint(462, 470))))
        timed.append((first_cut - 10 * H + 1, PlaceOrder(MAKER, symbol, Side.SELL, 2, rng.randint(495, 500))))
    for day in (1, 2):
        cut = T0_NS + day * DAY
        for symbol in (EXPIRING, RUNNING):
            count = rng.randint(3, 5)
            forced = day == 1 and symbol == EXPIRING
            in_window = [(forced and i == 0) or rng.random() < 0.3 for i in range(count)]
            window_s = rng.sample(range(2, 119), sum(in_window))
            earlier_s = rng.sample(range(300, 8 * 3_600), count - sum(in_window))
            for at_s in window_s + earlier_s:
                seller, buyer = rng.sample(TRADERS, 2)
                lots, price = rng.randint(1, 4), rng.randint(472, 492)
                at = cut - at_s * S + (0 if symbol == EXPIRING else S // 2)
                timed.append((at, PlaceOrder(seller, symbol, Side.SELL, lots, price, tif=TimeInForce.GTC)))
                timed.append((at + 1, PlaceOrder(buyer, symbol, Side.BUY, lots, price, tif=TimeInForce.GTC)))
    timed.sort(key=lambda item: item[0])
    return timed


def build_trading(settings: Settings, seed: int) -> None:
    """A fresh data directory with the series listed, the accounts funded and the seeded trading done."""
    clock = [T0_NS + H]
    bootstrap(settings, lambda: clock[0], series=series_specs(),
              deposits_micros={a: CASH_MICROS for a in (*TRADERS, MAKER)})

    async def trade() -> None:
        async with running_service(settings, load_catalog(), lambda: clock[0]) as service:
            for at_ns, command in trading_commands(seed):
                clock[0] = at_ns
                events = await service.submit(command)
                refused = [e for e in events if isinstance(e, Rejected)]
                assert not refused, (command, refused)
    asyncio.run(trade())


def write_delivery_telemetry(deliveries: Sequence[Delivery], directory: Path, seed: int) -> list[Path]:
    """Signed probe records of every delivery of `EXPIRING`: 24 hours of a node of 8 GPUs per lot, a
    quarter of the nodes failing; one file per delivery, CSV and JSON lines alternately."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, delivery in enumerate(sorted(deliveries, key=lambda d: d.delivery_id)):
        path = directory / f"probe-{n}.{'csv' if n % 2 == 0 else 'jsonl'}"
        write_telemetry(path, GeneratorConfig(delivery_id=delivery.delivery_id, start_ns=DELIVERY_START_NS,
                                              hours=24, nodes=delivery.gpus // 8, seed=seed * 100 + n,
                                              failing=Decimal("0.25")), bytes.fromhex(PROBE_KEY_HEX))
        paths.append(path)
    return paths


# -- looking at a data directory -------------------------------------------------------------------
@contextmanager
def recovered(settings: Settings, clock_ns: Callable[[], int]) -> Iterator[tuple[Engine, Store, list[Sequenced]]]:
    """The recovered core, its (caught-up) store, and every journaled command's events, replayed into
    a second engine (what the store must be a projection of). Nothing is submitted."""
    store = Store(settings.store_url())
    store.migrate()
    service = ExchangeService(ServiceConfig(settings.data_dir, limits=load_catalog().rules.engine_limits(),
                                            snapshot_mode="inline", deadline_poll_ms=0), store, clock_ns)
    try:
        service.open()
        assert service.engine is not None
        replay = Engine(load_catalog().rules.engine_limits())
        items = [Sequenced(e.seq, e.ts_ns, replay.apply(e.command, e.ts_ns))
                 for e in read_entries(service.config.journal_dir)]
        yield service.engine, store, items
    finally:
        service.close()
        store.close()


def catch_up(settings: Settings) -> None:
    """Open and close the data directory: the store catches up with the journal (a fresh one is rebuilt)."""
    with recovered(settings, fixed_clock(0)):
        pass


@dataclass(frozen=True)
class Observed:
    """Everything a settlement job leaves behind that a kill and a rerun must not change."""

    balances: dict[int, int]                          # the core's ledger, system accounts included
    margins: dict[int, int]
    settlements: dict[tuple[str, int], tuple[Any, ...]]   # (symbol, date) -> (price, digest, postings)
    deliveries: dict[str, Delivery]
    store_balances: dict[int, int]
    postings: Counter[tuple[Any, ...]]                # the store's settlement postings, as a multiset
    statements: dict[str, str] = field(repr=False)   # path under statements/ -> text (job status removed)


def observe(settings: Settings, clock_ns: Callable[[], int],
            check: Callable[[Store, Engine, list[Sequenced]], None] | None = None) -> Observed:
    """What the data directory holds now; `check(store, engine, items)` may look at it too."""
    with recovered(settings, clock_ns) as (engine, store, items):
        engine.audit()
        if check is not None:
            check(store, engine, items)
        columns = (LedgerPostingRecord.kind, LedgerPostingRecord.from_account, LedgerPostingRecord.to_account,
                   LedgerPostingRecord.amount_micros, LedgerPostingRecord.symbol, LedgerPostingRecord.settlement_date,
                   LedgerPostingRecord.delivery_id)
        with store.engine.connect() as conn:
            rows = conn.execute(select(*columns).where(LedgerPostingRecord.kind.in_(SETTLEMENT_KINDS))).all()
        return Observed(
            balances=dict(engine.ledger.balances),
            margins={a: account.margin_micros for a, account in engine.accounts.items()},
            settlements={(symbol, date): tuple(s) for symbol, series in engine.series.items()
                         for date, s in series.settlements.items()},
            deliveries=dict(engine.deliveries),
            store_balances=store.balances(),
            postings=Counter(tuple(row) for row in rows),
            statements={**read_statements(settings.data_dir / "statements"), **archived_statements(store)})


def copy_statements(from_url: str, to_url: str) -> None:
    """The statements of record of one store into another (they are not a projection of the journal:
    a store rebuilt from a copied journal gets them this way)."""
    from sqlalchemy import insert

    from exchange.store.models import StatementRecord, StatementSetRecord

    source, target = Store(from_url), Store(to_url)
    try:
        target.migrate()
        with source.engine.connect() as conn:
            statements = [dict(row._mapping) for row in conn.execute(select(StatementRecord.__table__))]
            sets = [dict(row._mapping) for row in conn.execute(select(StatementSetRecord.__table__))]
        with target.transaction(write=True) as conn:
            if statements:
                conn.execute(insert(StatementRecord), statements)
            if sets:
                conn.execute(insert(StatementSetRecord), sets)
    finally:
        source.close()
        target.close()


def archived_statements(store: Store) -> dict[str, str]:
    """The statements of record in the store, by "store:<kind>/<ref>/<account>" (delivery status removed)."""
    from exchange.store.models import StatementRecord

    texts = {}
    with store.engine.connect() as conn:
        for row in conn.execute(select(StatementRecord.kind, StatementRecord.ref, StatementRecord.account_id,
                                       StatementRecord.body)):
            body = json.loads(row.body)
            body.pop("status", None)
            texts[f"store:{row.kind}/{row.ref}/{row.account_id}"] = json.dumps(body, indent=2, sort_keys=True)
    return texts


def read_statements(root: Path) -> dict[str, str]:
    """Every statement file by path, without the delivery job's status of the run that wrote it
    ("posted" the first time, "unchanged" on a rerun) and without temporary files."""
    texts = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix == ".tmp":
            continue
        text = path.read_text()
        if path.suffix == ".json":
            body = json.loads(text)
            body.pop("status", None)
            text = json.dumps(body, indent=2, sort_keys=True)
        elif path.suffix == ".html":
            text = re.sub(r"<tr><th>status</th><td>[^<]*</td></tr>", "", text)
        texts[str(path.relative_to(root))] = text
    return texts


# -- the job, in a process that can be killed -------------------------------------------------------
def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install_kill_points(die_at: tuple[str, int] | None, passes: Counter[str]) -> None:
    """Count the passes of every kill point, and SIGKILL this process at `die_at` (point, K)."""
    point, k = die_at if die_at is not None else ("", 0)

    def passing(name: str) -> None:
        passes[name] += 1
        if name == point and passes[name] == k:
            _die()

    submit, after_commit, os_replace = ExchangeService.submit, ExchangeService._after_commit, os.replace

    async def submit_then(self: ExchangeService, command: Command) -> list[Event]:
        passing("submit")
        return await submit(self, command)

    def after_commit_then(self: ExchangeService, batch: list[Sequenced]) -> None:
        passing("journaled")
        after_commit(self, batch)
        passing("projected")

    def replace_then(src: Any, dst: Any, **kwargs: Any) -> None:
        passing("replace")
        os_replace(src, dst, **kwargs)

    from exchange.store.statement_archive import StatementArchive
    write = StatementArchive.write

    def write_then(self: StatementArchive, *args: Any, **kwargs: Any) -> None:
        passing("statements")
        write(self, *args, **kwargs)

    setattr(StatementArchive, "write", write_then)  # noqa: B010
    setattr(ExchangeService, "submit", submit_then)  # noqa: B010  (a method: mypy refuses plain assignment)
    setattr(ExchangeService, "_after_commit", after_commit_then)  # noqa: B010
    setattr(os, "replace", replace_then)  # noqa: B010


def _summary(report: Any) -> dict[str, Any]:
    from exchange.jobs.daily import DailyReport
    if isinstance(report, DailyReport):
        return {"posted": report.posted, "unchanged": report.unchanged, "refused": report.refused,
                "expired": report.expired, "statements": report.statements_written}
    return {"statuses": [o.status for o in report.outcomes], "statements": len(report.statements)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", choices=JOBS)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--database-url")
    parser.add_argument("--clock-ns", type=int, required=True)
    parser.add_argument("--date-ns", type=int, help="daily: settle every cut up to this date's")
    parser.add_argument("--telemetry", type=Path, action="append", default=[], help="delivery: probe files")
    parser.add_argument("--snapshot-every", type=int, default=0)
    parser.add_argument("--die-at", help="POINT:K, POINT one of " + ", ".join(KILL_POINTS))
    args = parser.parse_args(argv)
    die_at = None
    if args.die_at:
        point, _, k = args.die_at.partition(":")
        if point not in KILL_POINTS or not k.isdigit():
            parser.error(f"--die-at {args.die_at!r}: expected POINT:K with POINT one of {', '.join(KILL_POINTS)}")
        die_at = (point, int(k))
    from exchange.jobs.daily import run_daily
    from exchange.jobs.delivery import run_delivery

    settings = settings_for(args.data, args.database_url, args.snapshot_every)
    catalog, clock = load_catalog(), fixed_clock(args.clock_ns)
    passes: Counter[str] = Counter()
    install_kill_points(die_at, passes)
    print("ready", flush=True)
    if args.job == "daily":
        report: Any = asyncio.run(run_daily(settings, catalog, args.date_ns, clock))
    else:
        report = asyncio.run(run_delivery(settings, catalog, args.telemetry, clock_ns=clock))
    print("done " + json.dumps({"report": _summary(report), "passes": dict(passes)}), flush=True)


# -- driving that process from a test ----------------------------------------------------------------
@dataclass(frozen=True)
class JobRun:
    returncode: int
    killed: bool                  # SIGKILLed (by itself at --die-at, or by the caller's timer)
    seconds: float                # from `ready` to `done` (the job's own time), or to the end if killed
    done: dict[str, Any] | None   # the `done` line, if it got there
    stderr: str


def _read_lines(stream: IO[str], lines: list[tuple[float, str]], ready: threading.Event) -> None:
    for line in stream:
        lines.append((time.perf_counter(), line.strip()))
        if line.startswith("ready"):
            ready.set()
    ready.set()


def run_job(args: Sequence[str], workdir: Path, kill_after_s: float | None = None,
            timeout_s: float = 120) -> JobRun:
    """Run `python -m exchange.testing.settlement_scenario ARGS`; with `kill_after_s`, SIGKILL it that
    long after it printed `ready` (unless it has finished by then)."""
    workdir.mkdir(parents=True, exist_ok=True)
    stderr_path = workdir / f"job-{time.monotonic_ns()}.stderr"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "exchange.testing.settlement_scenario", *args],
                                stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.stdout is not None
        lines: list[tuple[float, str]] = []
        ready = threading.Event()
        reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines, ready), daemon=True)
        reader.start()
        try:
            ready.wait(timeout=timeout_s)
            started = time.perf_counter()
            if kill_after_s is not None:
                try:
                    proc.wait(timeout=kill_after_s)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=timeout_s)
            ended = time.perf_counter()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=10)
    done = next(((at, json.loads(line[5:])) for at, line in lines if line.startswith("done ")), None)
    seconds = (done[0] if done is not None else ended) - started
    return JobRun(proc.returncode, proc.returncode == -signal.SIGKILL, seconds, done[1] if done else None,
                  stderr_path.read_text())


def job_args(job: str, settings: Settings, telemetry: Sequence[Path] = ()) -> list[str]:
    args = [job, "--data", str(settings.data_dir), "--snapshot-every", str(settings.snapshot_every_commands)]
    if settings.database_url is not None:
        args += ["--database-url", settings.database_url]
    if job == "daily":
        return [*args, "--clock-ns", str(DAILY_CLOCK_NS), "--date-ns", str(DAILY_DATE_NS)]
    return [*args, "--clock-ns", str(DELIVERY_CLOCK_NS), *(a for p in telemetry for a in ("--telemetry", str(p)))]


if __name__ == "__main__":
    main()
