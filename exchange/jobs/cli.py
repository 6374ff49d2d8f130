"""`exchange settle ...`: the settlement batch jobs on the command line (rich progress and summaries).

They run against the data directory (`--data` or $EXCHANGE_DATA_DIR) and need it to themselves, like
the operator commands: stop the server first (or run them where the exchange is not serving)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from exchange.catalog import load_catalog
from exchange.domain.units import micros_to_usd, ticks_to_price
from exchange.jobs.daily import run_daily
from exchange.jobs.delivery import run_delivery
from exchange.jobs.expiry import run_expiry
from exchange.jobs.statements import price_text, usd_text
from exchange.settings import Settings

DataOption = Annotated[Path | None,
                       typer.Option("--data", help="data directory (default $EXCHANGE_DATA_DIR or ./data)")]
NS_PER_S = 1_000_000_000


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

    @settle.command("daily")
    def daily(date: Annotated[str, typer.Option(help="settle every cut up to this date's 16:00 UTC (YYYY-MM-DD)")],
              dry_run: Annotated[bool, typer.Option("--dry-run", help="compute and report, post nothing")] = False,
              amend: Annotated[bool, typer.Option("--amend", help="recompute this date even if settled")] = False,
              data: DataOption = None) -> None:
        """Daily settlement: prices, variation margin, expiry of terminated series, margin calls, statements."""
        with errors(), _progress(console()) as progress:
            task = progress.add_task("settling", total=None)
            report = asyncio.run(run_daily(
                _settings(data), load_catalog(), parse_date(date), time.time_ns, dry_run=dry_run, amend=amend,
                progress=lambda done, total: progress.update(task, completed=done, total=total)))
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
        out.print(f"posted {len(report.posted)}, already settled {len(report.unchanged)}, "
                  f"refused {len(report.refused)}, expired {len(report.expired)} series, "
                  f"margin calls {len(report.margin_calls)}, statements {len(report.statements)} files")
        for name, why in report.refused:
            out.print(f"[red]refused[/] {name}: {why}")
        for account, cash, margin in report.margin_calls:
            out.print(f"[yellow]margin call[/] account {account}: cash {micros_to_usd(cash)} "
                      f"< 75% of required {micros_to_usd(margin)}")
        if report.refused:
            raise typer.Exit(1)

    @settle.command("expiry")
    def expiry(series: Annotated[str, typer.Option(help="the terminated series")], data: DataOption = None) -> None:
        """Assign deliveries for a terminated, finally settled series (idempotent)."""
        with errors():
            report = asyncio.run(run_expiry(_settings(data), load_catalog(), series))
        table = Table(title=f"deliveries of {series}" + ("" if report.newly_assigned else " (already assigned)"))
        for column in ("delivery", "seller", "buyer", "lots", "GPUs", "GPU-hours", "final settlement price"):
            table.add_column(column)
        tick_micros = load_catalog().rules.tick_micros
        for d in report.deliveries:
            table.add_row(d.delivery_id, str(d.seller), str(d.buyer), str(d.lots), str(d.gpus), str(d.gpu_hours),
                          price_text(str(ticks_to_price(d.fsp_ticks, tick_micros))))
        console().print(table)

    @settle.command("delivery")
    def delivery(telemetry: Annotated[list[Path], typer.Option(help="probe telemetry (.csv, .jsonl), repeatable")],
                 dry_run: Annotated[bool, typer.Option("--dry-run", help="compute and report, post nothing")] = False,
                 amend: Annotated[bool, typer.Option("--amend", help="post corrections for changed input")] = False,
                 rrp: Annotated[list[str] | None, typer.Option(help="replacement reference price SYMBOL=PRICE")] = None,
                 rejects: Annotated[Path | None, typer.Option(help="write rejected records here")] = None,
                 data: DataOption = None) -> None:
        """Goodput-adjusted delivery settlement from probe telemetry."""
        with errors(), _progress(console()) as progress:
            task = progress.add_task("records", total=None)
            report = asyncio.run(run_delivery(
                _settings(data), load_catalog(), telemetry, dry_run=dry_run, amend=amend, rrp=parse_rrp(rrp or []),
                rejects_path=rejects, progress=lambda seen: progress.update(task, completed=seen)))
        out = console()
        s = report.summary
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


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True, disable=not console.is_terminal)

