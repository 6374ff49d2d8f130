"""`exchange settle ...`: the settlement batch jobs on the command line (rich progress and summaries).

Against a running exchange they work as its client (`exchange.jobs.session`): the one serving the data
directory (`--data` or $EXCHANGE_DATA_DIR, found through its server.json) or the one at `--url`; on a
stopped exchange they open the data directory themselves. The exchange's scheduler runs them this way
too, with `--progress-json` (one JSON object per line on stdout: progress, then the summary)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from exchange.catalog import load_catalog
from exchange.domain.units import micros_to_usd, ticks_to_price
from exchange.jobs.daily import run_daily
from exchange.jobs.delivery import run_delivery
from exchange.jobs.expiry import run_expiry
from exchange.jobs.inbox import inbox_files
from exchange.jobs.statements import price_text, usd_text
from exchange.settings import Settings

DataOption = Annotated[Path | None,
                       typer.Option("--data", help="data directory (default $EXCHANGE_DATA_DIR or ./data)")]
NS_PER_S = 1_000_000_000
UrlOption = Annotated[str | None, typer.Option("--url", help="the running exchange's API (default: the one serving "
                                               "--data, else run offline on a stopped exchange's data)")]
ProgressJsonOption = Annotated[bool, typer.Option("--progress-json", help="machine-readable progress and summary "
                                                  "on stdout (what the scheduler reads)")]


def _emit(record: dict[str, object]) -> None:
    print(json.dumps(record, separators=(",", ":")), flush=True)


def _settings(data: Path | None) -> Settings:
    from exchange.admin_cli import require_data_dir

    settings = Settings()
    settings = settings if data is None else settings.model_copy(update={"data_dir": data})
    require_data_dir(settings.data_dir)   # a settlement job never starts an empty exchange
    return settings


def parse_date(text: str) -> int:
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"--date {text!r} is not a date such as 2026-12-03") from None
    return int(day.timestamp()) * NS_PER_S


def parse_rrp(values: list[str]) -> dict[str, Decimal]:
    prices: dict[str, Decimal] = {}
    for value in values:
        symbol, sep, price = value.partition("=")
        try:
            prices[symbol] = Decimal(price)
        except InvalidOperation:
            raise ValueError(f"--rrp {value!r}: expected SYMBOL=PRICE such as H100-M40-Z26=2.55") from None
        if not sep or not symbol:
            raise ValueError(f"--rrp {value!r}: expected SYMBOL=PRICE such as H100-M40-Z26=2.55")
        if not prices[symbol].is_finite() or prices[symbol] <= 0:
            raise ValueError(f"--rrp {value!r}: a replacement reference price is a positive number of USD per "
                             "GPU-hour such as 2.55")
    return prices


def register(app: typer.Typer, errors: Callable[[], AbstractContextManager[None]],
             console: Callable[[], Console]) -> None:
    settle = typer.Typer(help="Settlement batch jobs (rulebook §6-§8).", no_args_is_help=True)
    app.add_typer(settle, name="settle")

    @app.command("jobs")
    def jobs(limit: Annotated[int, typer.Option(min=1, max=500, help="runs to show, newest first")] = 20,
             state: Annotated[str | None, typer.Option(help="only runs in this state: running, succeeded, failed, "
                                                       "interrupted")] = None,
             kind: Annotated[str | None, typer.Option(help="only daily, delivery or retention runs")] = None,
             data: DataOption = None, url: UrlOption = None) -> None:
        """The exchange's settlement job runs: state, progress, duration, counts, errors (through the running
        server's API, else from the data directory's store)."""
        with errors():
            settings = _settings(data)
            runs = _job_runs(settings, url, limit, state, kind)
            table = Table(title="job runs, newest first")
            for column in ("run", "kind", "key", "trigger", "attempt", "state", "progress", "duration",
                           "counts / error"):
                table.add_column(column)
            for run in runs:
                progress = run["progress"]
                done = f"{progress['done']}/{progress['total']}" if progress["total"] is not None else str(
                    progress["done"])
                duration = "" if run["duration_ms"] is None else f"{run['duration_ms'] / 1000:.1f} s"
                detail = run["error"] or ", ".join(f"{k} {v}" for k, v in run["counts"].items())
                style = {"failed": "red", "interrupted": "yellow", "running": "cyan"}.get(run["state"], "")
                table.add_row(str(run["run_id"]), run["kind"], run["key"], run["trigger"], str(run["attempt"]),
                              f"[{style}]{run['state']}[/]" if style else run["state"], done, duration, detail)
            console().print(table)

    @settle.command("daily")
    def daily(date: Annotated[str, typer.Option(help="settle every cut up to this date's 16:00 UTC (YYYY-MM-DD)")],
              dry_run: Annotated[bool, typer.Option("--dry-run", help="compute and report, post nothing")] = False,
              amend: Annotated[bool, typer.Option("--amend", help="recompute this date even if settled")] = False,
              data: DataOption = None, url: UrlOption = None, progress_json: ProgressJsonOption = False) -> None:
        """Daily settlement: prices, variation margin, expiry of terminated series, margin calls, statements."""
        with errors(), _progress(console(), progress_json) as progress:
            task = progress.add_task("settling", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)
                if progress_json:
                    _emit({"progress": done, "total": total})
            settings = _settings(data)
            report = asyncio.run(run_daily(settings, load_catalog(), parse_date(date), settings.clock_ns,
                                           dry_run=dry_run, amend=amend, progress=advance, url=url))
        if progress_json:
            _emit({"summary": {"mode": report.mode, "plans": len(report.plans), "posted": len(report.posted),
                               "unchanged": len(report.unchanged), "refused": len(report.refused),
                               "expired": len(report.expired), "margin_calls": len(report.margin_calls),
                               "statements": report.statements_written},
                   "refused": [f"{name}: {why}" for name, why in report.refused]})
            if report.refused:
                raise typer.Exit(1)
            return
        out = console()
        table = Table(title=f"daily settlement up to {date}" + (" (dry run)" if dry_run else ""))
        for column in ("series", "date", "price (USD per GPU-hour)", "method", "accounts", "net VM (USD)"):
            table.add_column(column)
        catalog = load_catalog()
        for plan in report.plans:
            day = datetime.fromtimestamp(plan.date_ns // NS_PER_S, UTC).strftime("%Y-%m-%d")
            price = ticks_to_price(plan.price_ticks, catalog.rules.tick_micros)
            table.add_row(plan.symbol, day, price_text(str(price)), str(plan.method), str(len(plan.postings)),
                          usd_text(micros_to_usd(sum(vm for _, vm in plan.postings))))
        out.print(table)
        statements = (f"statements {len(report.statements)} files (dry run)" if dry_run
                      else f"statements {report.statements_written} (GET /v1/statements)")
        out.print(f"{report.mode}: posted {len(report.posted)}, already settled {len(report.unchanged)}, "
                  f"refused {len(report.refused)}, expired {len(report.expired)} series, "
                  f"margin calls {len(report.margin_calls)}, {statements}")
        for name, why in report.refused:
            out.print(f"[red]refused[/] {name}: {why}")
        for account, cash, margin in report.margin_calls:
            out.print(f"[yellow]margin call[/] account {account}: cash {micros_to_usd(cash)} "
                      f"< 75% of required {micros_to_usd(margin)}")
        if report.refused:
            raise typer.Exit(1)

    @settle.command("expiry")
    def expiry(series: Annotated[str, typer.Option(help="the terminated series")], data: DataOption = None,
               url: UrlOption = None) -> None:
        """Assign deliveries for a terminated, finally settled series (idempotent)."""
        with errors():
            settings = _settings(data)
            report = asyncio.run(run_expiry(settings, load_catalog(), series, settings.clock_ns, url=url))
        table = Table(title=f"deliveries of {series}" + ("" if report.newly_assigned else " (already assigned)"))
        for column in ("delivery", "seller", "buyer", "lots", "GPUs", "GPU-hours", "final settlement price"):
            table.add_column(column)
        tick_micros = load_catalog().rules.tick_micros
        for d in report.deliveries:
            table.add_row(d.delivery_id, str(d.seller), str(d.buyer), str(d.lots), str(d.gpus), str(d.gpu_hours),
                          price_text(str(ticks_to_price(d.fsp_ticks, tick_micros))))
        console().print(table)

    @settle.command("delivery")
    def delivery(telemetry: Annotated[list[Path] | None, typer.Option(
                     help="probe telemetry (.csv, .jsonl), repeatable")] = None,
                 inbox: Annotated[bool, typer.Option("--inbox", help="read every file of the data directory's "
                                                     "telemetry inbox (data/telemetry/inbox/) too")] = False,
                 dry_run: Annotated[bool, typer.Option("--dry-run", help="compute and report, post nothing")] = False,
                 amend: Annotated[bool, typer.Option("--amend", help="post corrections for changed input")] = False,
                 rrp: Annotated[list[str] | None, typer.Option(help="replacement reference price SYMBOL=PRICE")] = None,
                 rejects: Annotated[Path | None, typer.Option(help="write rejected records here")] = None,
                 delivery: Annotated[list[str] | None, typer.Option(
                     "--delivery", help="settle only this delivery (repeatable; default: every one due)")] = None,
                 data: DataOption = None, url: UrlOption = None, progress_json: ProgressJsonOption = False) -> None:
        """Goodput-adjusted delivery settlement from probe telemetry."""
        with errors(), _progress(console(), progress_json) as progress:
            task = progress.add_task("records", total=None)

            def advance(seen: int) -> None:
                progress.update(task, completed=seen)
                if progress_json:
                    _emit({"progress": seen, "total": None})
            settings = _settings(data)
            files = [*(telemetry or []), *(inbox_files(settings.data_dir) if inbox else [])]
            if not files and not inbox:
                raise ValueError("give the probe's files with --telemetry FILE (repeatable), or --inbox")
            report = asyncio.run(run_delivery(
                settings, load_catalog(), files, dry_run=dry_run, amend=amend, rrp=parse_rrp(rrp or []),
                rejects_path=rejects, progress=advance, clock_ns=settings.clock_ns, url=url,
                only=set(delivery) if delivery else None))
        s = report.summary
        if progress_json:
            statuses: dict[str, int] = {}
            for o in report.outcomes:
                statuses[o.status.partition(":")[0]] = statuses.get(o.status.partition(":")[0], 0) + 1
            _emit({"summary": {"accepted": s.accepted, "duplicate": s.duplicate, "conflicting": s.conflicting,
                               "rejected": s.rejected, **statuses},
                   "refused": [f"{o.delivery.delivery_id}: {o.status}" for o in report.outcomes
                               if o.status.startswith("refused")]})
            if any(o.status.startswith("refused") for o in report.outcomes):
                raise typer.Exit(1)
            return
        out = console()
        out.print(f"records: {s.accepted} accepted, {s.duplicate} duplicate, {s.conflicting} conflicting, "
                  f"{s.rejected} rejected" + (f" (see {rejects})" if rejects and s.rejected else ""))
        for reason, count in s.reasons():
            out.print(f"  {reason}: {count}")
        table = Table(title="deliveries" + (" (dry run)" if dry_run else ""))
        for column in ("delivery", "E (GPU-hours)", "Q (GPU-hours)", "invoice (USD)", "damages (USD)", "default",
                       "status"):
            table.add_column(column)
        for o in report.outcomes:
            r = o.result
            table.add_row(o.delivery.delivery_id, f"{micros_to_usd(r.effective_micro_gpuh):,}",
                          f"{r.contracted_gpuh:,}", usd_text(micros_to_usd(r.invoice_micros)),
                          usd_text(micros_to_usd(r.damages_micros)), "DEFAULT" if r.default else "", o.status)
        out.print(table)
        if report.without_telemetry:
            out.print(f"no telemetry for {len(report.without_telemetry)} deliveries: "
                      f"{', '.join(report.without_telemetry[:10])}")
        if any(o.status.startswith("refused") for o in report.outcomes):
            raise typer.Exit(1)


def _progress(console: Console, quiet: bool = False) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True, disable=quiet or not console.is_terminal)



def _job_runs(settings: Settings, url: str | None, limit: int, state: str | None,
              kind: str | None) -> list[dict[str, Any]]:
    """Job runs through the running exchange's API (the one at `url`, or serving the data directory),
    else straight from the stopped exchange's store."""
    from exchange.client import Client
    from exchange.client.errors import ExchangeError
    from exchange.live_server import live_api, operator_credentials
    from exchange.store import Store
    from exchange.store.job_log import JobLog

    target = url or live_api(settings.data_dir)
    if target is not None:
        key_id, secret = operator_credentials(settings.data_dir)
        with Client(target, key_id, secret) as client:
            try:
                items: list[dict[str, Any]] = client.job_runs(limit=limit, state=state, kind=kind)["items"]
            except ExchangeError as error:
                raise ValueError(f"live (the exchange at {target}): {error}") from None
            return items
    store = Store(settings.store_url())
    try:
        store.migrate()
        return [run.as_json() for run in JobLog(store).page(limit, None, state, kind)]
    finally:
        store.close()
