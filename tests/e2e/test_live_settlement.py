"""Settlement while the exchange trades (issue 13): the jobs run against a live `exchange serve` with the
demo market trading at 200 commands/s, by the exchange's own scheduler and by hand, killed and rerun.

The server's clock is shifted (`clock_offset_s`, a drill setting) so that a 16:00 UTC cut comes a few
seconds after it starts. Every outcome is checked against an offline computation over the same
journal, once the server has stopped: the plans (prices and variation margin) and their digests, the
ledger's variation-margin postings (each exactly once), and the statements of record.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from exchange.catalog import load_catalog
from exchange.client import Client
from exchange.domain.engine import Engine
from exchange.domain.events import DailySettlement
from exchange.feeds.replica import Replica
from exchange.jobs.cuts import replay_cuts
from exchange.jobs.daily import DailyReport, daily_statements, plan_daily
from exchange.jobs.delivery import run_delivery
from exchange.jobs.inbox import inbox_files
from exchange.store import Store
from exchange.store.models import LedgerPostingRecord
from exchange.store.statement_archive import StatementArchive
from exchange.telemetry.generator import GeneratorConfig, write_telemetry
from exchange.testing.api_harness import Credentials, signed_headers
from exchange.testing.server_process import REPO, ServerProcess
from exchange.testing.settlement_scenario import recovered

NS = 1_000_000_000
DAY_S = 86_400
CUT_HOUR = 16
LEAD_S = 12          # the server starts this long before the cut
DEMO_RATE = 200


def _offset_to(target_s: float) -> int:
    """The clock offset that makes the exchange's time `target_s` now."""
    return int(target_s - time.time())


def _next_cut_s() -> int:
    now = time.time()
    return (int(now - CUT_HOUR * 3_600) // DAY_S + 1) * DAY_S + CUT_HOUR * 3_600


def _date(cut_s: int) -> str:
    return datetime.fromtimestamp(cut_s, UTC).strftime("%Y-%m-%d")


def _server(data: Path, offset_s: int, *, scheduler: bool, demo: bool = True) -> ServerProcess:
    return ServerProcess(data, demo=demo, settings={
        "clock_offset_s": offset_s, "scheduler": scheduler, "scheduler_poll_s": 0.5, "job_grace_s": 1,
        "demo_rate_per_s": DEMO_RATE, "job_retry_s_max": 2})


def _operator(server: ServerProcess) -> Client:
    key = json.loads((server.data_dir / "operator-key.json").read_text())
    return Client(server.base_url, key["key_id"], key["secret"])


def _wait_for(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _settle_cli(server: ServerProcess, date: str, *extra: str) -> subprocess.Popen[bytes]:
    """`exchange settle daily` by hand, on the server's data directory (it finds the server there)."""
    env = {**os.environ, **{k: str(v) for k, v in server.settings.to_env().items()},
           "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "exchange.cli", "settle", "daily", "--date", date, *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _check_against_offline(server: ServerProcess, cut_s: int, clock_s: float) -> int:
    """Once the server has stopped: the settlements of `cut_s`'s date equal an offline computation over
    the same journal; each variation margin posted exactly once; the statements of record match. The
    number of series settled that date."""
    settings = server.settings
    catalog = load_catalog()
    date_ns = (cut_s - CUT_HOUR * 3_600) * NS
    with recovered(settings, lambda: int(clock_s * NS)) as (engine, store, _):
        engine.audit()
        rules = catalog.rules.settlement
        history = replay_cuts(settings.data_dir / "journal", catalog.rules.engine_limits(), CUT_HOUR,
                              rules.vwap_window_seconds, cut_s * NS, int(clock_s * NS))
        earlier = {symbol: {d: s.price_ticks for d, s in series.settlements.items() if d < date_ns}
                   for symbol, series in engine.series.items()}
        plans = [p for p in plan_daily(history, engine, earlier, date_ns) if p.date_ns == date_ns]
        assert plans, "the cut settled nothing"
        for plan in plans:
            posted = engine.series[plan.symbol].settlements[date_ns]
            assert (posted.price_ticks, posted.digest) == (plan.price_ticks, plan.digest), plan.symbol
        day = datetime.fromtimestamp(date_ns // NS, UTC).date()
        with store.engine.connect() as conn:
            rows = conn.execute(select(LedgerPostingRecord.symbol, LedgerPostingRecord.from_account,
                                       LedgerPostingRecord.to_account, LedgerPostingRecord.amount_micros)
                                .where(LedgerPostingRecord.kind == "variation_margin",
                                       LedgerPostingRecord.settlement_date == day)).all()
        counted = Counter((r.symbol, r.to_account if r.from_account == -3 else r.from_account) for r in rows)
        assert counted and max(counted.values()) == 1, counted
        posted_vm = {(r.symbol, r.to_account if r.from_account == -3 else r.from_account):
                     r.amount_micros if r.from_account == -3 else -r.amount_micros for r in rows}
        expected_vm = {(p.symbol, account): vm for p in plans for account, vm in p.postings}
        assert posted_vm == expected_vm
        report = DailyReport(date_ns, plans)
        expected = {account: body for (d, account), body in daily_statements(report, engine).items()}
        archive = StatementArchive(store)
        for account, body in expected.items():
            row = archive.get(account, "daily", _date(cut_s))
            assert row is not None, account
            assert (row.body["lines"], row.body["total_variation_margin"]) == (body["lines"],
                                                                             body["total_variation_margin"])
        return len(plans)


def test_the_exchange_settles_its_own_cut_while_trading_and_owners_read_their_statements(tmp_path: Path) -> None:
    cut_s = _next_cut_s()
    server = _server(tmp_path / "data", _offset_to(cut_s - LEAD_S), scheduler=True)
    with server:
        operator = _operator(server)
        key = f"daily:{_date(cut_s)}"

        def scheduled() -> dict[str, Any] | None:
            runs = [r for r in operator.job_runs()["items"] if r["key"] == key]
            return runs[0] if runs and runs[0]["state"] in ("succeeded", "failed") else None
        run = _wait_for(scheduled, LEAD_S + 60, f"the scheduled run {key}")
        assert (run["state"], run["trigger"], run["kind"]) == ("succeeded", "schedule", "daily"), run
        assert run["counts"]["mode"] == "live" and run["counts"]["posted"] > 0 and run["duration_ms"] > 0, run
        assert run["progress"]["done"] == run["progress"]["total"] == run["counts"]["plans"], run
        metrics = httpx.get(server.base_url + "/metrics").text
        assert 'exchange_job_runs_total{kind="daily",outcome="succeeded"}' in metrics
        # A demo trader's statement of that date, over REST in all three forms.
        account = next(r.account_id for r in _statement_rows(server, _date(cut_s)))
        trader = operator.create_api_key(account, ["read"])
        reader = Client(server.base_url, trader["key_id"], trader["secret"])
        listed = reader.statements(kind="daily")["items"]
        assert [s["ref"] for s in listed][:1] == [_date(cut_s)], listed
        body = reader.statement("daily", _date(cut_s))
        assert body["account_id"] == account and body["lines"]
        reader_credentials = Credentials(account, trader["key_id"], trader["secret"], ("read",))
        for form, marker in (("csv", "symbol,settlement_price"), ("html", "<h1>Daily statement")):
            path = f"/v1/statements/daily/{_date(cut_s)}?format={form}"
            response = httpx.get(server.base_url + path,
                                 headers=signed_headers(reader_credentials, "GET", path, b"", int(time.time())))
            assert response.status_code == 200 and marker in response.text, response.text[:200]
        # Another account cannot read it.
        other = operator.create_api_key(operator.create_account()["account_id"], ["read"])
        stranger = Client(server.base_url, other["key_id"], other["secret"])
        assert stranger.statements()["items"] == []
        clock_s = time.time() + server.fields["clock_offset_s"]  # type: ignore[operator]
    _check_against_offline(server, cut_s, clock_s)


def _statement_rows(server: ServerProcess, ref: str) -> list[Any]:
    store = Store(server.settings.store_url())
    try:
        from exchange.store.models import StatementRecord
        with store.engine.connect() as conn:
            return list(conn.execute(select(StatementRecord.account_id).where(StatementRecord.ref == ref)))
    finally:
        store.close()


def test_a_job_by_hand_killed_ten_times_while_trading_completes_exactly_once(tmp_path: Path) -> None:
    cut_s = _next_cut_s()
    offset = _offset_to(cut_s - LEAD_S)
    server = _server(tmp_path / "data", offset, scheduler=False)
    with server:
        time.sleep(LEAD_S + 2)   # past the cut, the demo trading on
        rng = random.Random(13)
        for _ in range(10):
            job = _settle_cli(server, _date(cut_s))
            time.sleep(rng.uniform(0.2, 3.0))
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
        job = _settle_cli(server, _date(cut_s))
        out, err = job.communicate(timeout=120)
        assert job.returncode == 0, err.decode()[-2000:]
        assert "live:" in out.decode(), out.decode()
        again = _settle_cli(server, _date(cut_s))
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0 and "live: posted 0" in out.decode(), (out + err).decode()[-2000:]
        clock_s = time.time() + offset
    assert _check_against_offline(server, cut_s, clock_s) > 0


def test_a_scheduled_job_interrupted_by_a_killed_exchange_completes_once_after_restart(tmp_path: Path) -> None:
    cut_s = _next_cut_s()
    offset = _offset_to(cut_s - LEAD_S)
    server = _server(tmp_path / "data", offset, scheduler=True)
    key = f"daily:{_date(cut_s)}"
    with server:
        operator = _operator(server)

        def running() -> bool:
            return any(r["key"] == key and r["state"] == "running" for r in operator.job_runs()["items"])
        _wait_for(running, LEAD_S + 60, "the scheduled run to start")
        time.sleep(random.Random(5).uniform(0.3, 1.5))
        server.kill9()
        server.start()
        operator = _operator(server)

        def done() -> list[dict[str, Any]] | None:
            runs = [r for r in operator.job_runs()["items"] if r["key"] == key]
            return runs if runs and runs[0]["state"] == "succeeded" else None
        runs = _wait_for(done, 90, "the run after restart")
        assert runs[-1]["state"] == "interrupted" and runs[0]["trigger"] == "retry", runs
        clock_s = time.time() + offset
    _check_against_offline(server, cut_s, clock_s)


def test_cuts_missed_while_down_are_settled_at_start_in_order(tmp_path: Path) -> None:
    first_cut_s = _next_cut_s()
    server = _server(tmp_path / "data", _offset_to(first_cut_s - 8), scheduler=False)
    with server:
        time.sleep(6)                      # the demo trades up to just before the first cut
    # Down across two cuts: back 30 s after the second.
    second_cut_s = first_cut_s + DAY_S
    offset = _offset_to(second_cut_s + 30)
    restarted = ServerProcess(server.data_dir, demo=True, port=server.port, settings={
        "clock_offset_s": offset, "scheduler": True, "scheduler_poll_s": 0.5, "job_grace_s": 1,
        "demo_rate_per_s": DEMO_RATE})
    with restarted:
        operator = _operator(restarted)

        def done() -> dict[str, Any] | None:
            runs = operator.job_runs()["items"]
            return runs[0] if runs and runs[0]["state"] == "succeeded" else None
        run = _wait_for(done, 90, "the catch-up run")
        assert (run["key"], run["trigger"]) == (f"daily:{_date(second_cut_s)}", "catch-up"), run
        clock_s = time.time() + offset
    first_date_ns = (first_cut_s - CUT_HOUR * 3_600) * NS
    with recovered(restarted.settings, lambda: int(clock_s * NS)) as (engine, _, items):
        traded = [s for s in engine.series.values() if first_date_ns in s.settlements]
        assert traded, "nothing settled for the first cut"
        for series in traded:
            assert first_date_ns + DAY_S * NS in series.settlements or series.terminated, series.spec.symbol
        order = [(e.symbol, e.date_ns) for item in items for e in item.events if isinstance(e, DailySettlement)]
        for symbol in {s for s, _ in order}:
            dates = [d for s, d in order if s == symbol]
            assert dates == sorted(dates), (symbol, dates)   # oldest first


def test_deliveries_are_settled_at_their_telemetry_deadline_from_the_inbox(tmp_path: Path) -> None:
    """The whole life by the exchange's own calendar: the cut terminates the nearest daily series and the
    scheduled run assigns its deliveries; the probe's file for one of them is uploaded; the exchange is
    next up after the telemetry deadline and settles every delivery due (the silent ones with E = 0)."""
    cut_s = _next_cut_s()
    # Two hours before the cut the demo trades the series that terminates at it (later, it moves on to the
    # next day's: a series is no longer "nearest" in its last hour of trading).
    early = _server(tmp_path / "data", _offset_to(cut_s - 2 * 3_600), scheduler=False)
    with early:
        time.sleep(6)
    server = ServerProcess(early.data_dir, demo=True, port=early.port, settings={
        "clock_offset_s": _offset_to(cut_s - LEAD_S), "scheduler": True, "scheduler_poll_s": 0.5,
        "job_grace_s": 1, "demo_rate_per_s": DEMO_RATE})
    with server:
        operator = _operator(server)
        key = f"daily:{_date(cut_s)}"
        _wait_for(lambda: any(r["key"] == key and r["state"] == "succeeded" for r in operator.job_runs()["items"]),
                  LEAD_S + 60, "the scheduled daily run")
        with recovered_view(server) as engine:
            deliveries = sorted(engine.deliveries.values(), key=lambda d: d.delivery_id)
            assert deliveries, "the demo's expiring series left no positions to deliver"
            first = deliveries[0]
            spec = engine.series[first.symbol].spec
        probe_file = tmp_path / "probe.csv"
        write_telemetry(probe_file, GeneratorConfig(first.delivery_id, spec.delivery_start_ns, 24,
                                                    max(1, first.gpus // 8), 8, spec.mfu_grade, seed=3),
                        server.settings.load_probe_key())
        uploaded = operator.upload_telemetry(probe_file)
        assert uploaded["created"] is True and uploaded["bytes"] == probe_file.stat().st_size
        deadline_s = (spec.delivery_end_ns // NS) + load_catalog().rules.settlement.telemetry_deadline_hours * 3_600
    offset = _offset_to(deadline_s + 20)
    later = ServerProcess(server.data_dir, demo=True, port=server.port, settings={
        "clock_offset_s": offset, "scheduler": True, "scheduler_poll_s": 0.5, "job_grace_s": 1,
        "demo_rate_per_s": DEMO_RATE})
    with later:
        operator = _operator(later)

        def delivered() -> dict[str, Any] | None:
            runs = [r for r in operator.job_runs(kind="delivery")["items"] if r["state"] in ("succeeded", "failed")]
            return runs[0] if runs else None
        run = _wait_for(delivered, 120, "the scheduled delivery run")
        assert run["state"] == "succeeded", run
        assert run["counts"]["accepted"] > 0 and run["counts"].get("posted", 0) == len(deliveries), run
        buyer = operator.create_api_key(first.buyer, ["read"])
        reader = Client(later.base_url, buyer["key_id"], buyer["secret"])
        statement = reader.statement("delivery", first.delivery_id)
        assert statement["delivery_id"] == first.delivery_id and statement["records"]["accepted"] > 0
        clock_ns = int((time.time() + offset) * NS)
    # Offline, on the same journal and inbox at the same time: the same settlements.
    settings = later.settings
    report = asyncio.run(run_delivery(settings, load_catalog(), inbox_files(settings.data_dir), dry_run=True,
                                      clock_ns=lambda: clock_ns, only={d.delivery_id for d in deliveries}))
    with recovered(settings, lambda: clock_ns) as (engine, _, _):
        for outcome in report.outcomes:
            posted = engine.deliveries[outcome.delivery.delivery_id].settlement
            assert posted is not None and posted.digest == outcome.digest, outcome.delivery.delivery_id
            assert (posted.invoice_micros, posted.damages_micros) == (outcome.result.invoice_micros,
                                                                      outcome.result.damages_micros)
        assert [o.delivery.delivery_id for o in report.outcomes] == [first.delivery_id]
        for delivery in deliveries[1:]:   # no record arrived: settled with E = 0, a default, full damages
            settled = engine.deliveries[delivery.delivery_id].settlement
            assert settled is not None and settled.default and settled.invoice_micros == 0, delivery.delivery_id


@contextmanager
def recovered_view(server: ServerProcess) -> Iterator[Engine]:
    """The running exchange's state, read from its committed journal (a replica: no lock taken)."""
    replica = Replica(server.data_dir, load_catalog().rules.engine_limits())
    try:
        yield replica.open()
    finally:
        replica.close()
