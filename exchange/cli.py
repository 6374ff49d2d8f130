"""The `exchange` command: a live simulated market, the listing calendar, and symbol lookup.

    exchange demo                     watch a simulated market trade (Ctrl-C to stop)
    exchange demo --no-live --steps 2000 --seed 7 --start 2026-11-27T12:00:00Z
    exchange series --at 2026-11-27T12:00:00Z
    exchange symbol H100-M40-Z26

This is the edge of the system: it may read the clock (the default start of `demo` and instant of
`series`) and print; the core it drives does neither. Every expected error is one red line on
stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import typer.core
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from exchange import admin_cli
from exchange.api.server_file import announced
from exchange.catalog import Catalog, CatalogError, SymbolError, load_catalog, parse_symbol
from exchange.catalog.nearest import nearest_series
from exchange.domain.book import BUY
from exchange.domain.engine import Engine
from exchange.domain.events import Event, Trade
from exchange.domain.spec import PeriodKind, SeriesSpec
from exchange.domain.units import NS_PER_HOUR, NS_PER_SECOND, UnitError, micros_to_usd, ticks_to_price
from exchange.jobs import cli as jobs_cli
from exchange.journal.journal import JournalCorrupt
from exchange.service.witness import JournalBehind
from exchange.telemetry import cli as probe_cli
from exchange.testing.simulator import MARKET_MAKERS, PROVIDERS, TAKERS, MarketSimulator, SimStats


def _flag_type(self: typer.core.TyperOption, ctx: Any) -> str | None:
    """A flag takes no value, so its help shows no type (typer labels every flag `<bool>`)."""
    return None if self.is_flag else _option_type(self, ctx)


_option_type = typer.core.TyperOption.display_type_rich
typer.core.TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]

app = typer.Typer(
    name="exchange",
    help="GPU compute futures exchange: GPU-hour contracts graded by MFU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEMO_PRODUCTS = ("H100-M40", "B200-M35", "A100-M40")  # the demo's default: one daily series of each
DEFAULT_NO_LIVE_STEPS = 2_000
BOOK_DEPTH = 10
TAPE_LENGTH = 12
_FRAME_S = 0.1
_FAST_BATCH = 400  # commands per frame when --speed 0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EXPECTED_ERRORS = (CatalogError, SymbolError, UnitError, ValueError, JournalCorrupt, JournalBehind)


# -- the boundary: consoles, errors, time ----------------------------------------------------


def _stdout() -> Console:
    """Rich console on stdout; 120 columns when not a terminal, so piped tables stay readable."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=120)


def _fail(message: str) -> NoReturn:
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(1)


def _one_line(exc: Exception) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    more = f" (and {len(lines) - 1} more problems)" if len(lines) > 1 else ""
    return lines[0] + more


@contextmanager
def _errors() -> Iterator[None]:
    """Turn the expected errors into one red line and a non-zero exit code."""
    try:
        yield
    except _EXPECTED_ERRORS as exc:
        _fail(_one_line(exc))


def _catalog() -> Catalog:
    return load_catalog()


def parse_instant(text: str, option: str) -> int:
    """ISO 8601 date-time -> ns since the epoch, UTC; a time without an offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{option} {text!r} is not an ISO 8601 date-time such as 2026-11-27T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1_000


def _now_hour_ns() -> int:
    now = time.time_ns()
    return now - now % NS_PER_HOUR


def _moment(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1_000)


def utc(ns: int) -> str:
    """"2026-11-27 16:00 UTC"."""
    return _moment(ns).strftime("%Y-%m-%d %H:%M UTC")


def _clock(ns: int) -> str:
    """"12:03:21.150", for the trade tape."""
    moment = _moment(ns)
    return f"{moment:%H:%M:%S}.{moment.microsecond // 1000:03d}"


def _usd(micros: int) -> str:
    """"14,284.80" when whole cents, else every digit to the micro-dollar ("1,714.176000"): never a
    rounded amount, and never a surprising three decimals."""
    amount = micros_to_usd(micros)
    cents = amount.quantize(Decimal("0.01"))
    return f"{cents:,}" if cents == amount else f"{amount:,}"


def _price(spec: SeriesSpec, price_ticks: int) -> str:
    return str(ticks_to_price(price_ticks, spec.tick_micros))


def _plain(number: Decimal) -> str:
    """A decimal without exponent or trailing zeros: 10, 0.02."""
    return format(number.normalize(), "f")


def _percent(ppm: int) -> str:
    return f"{_plain(Decimal(ppm) / 10_000)}%"


def _day(ns: int) -> str:
    """"2026-12-01" for a midnight, else the minute."""
    moment = _moment(ns)
    return f"{moment:%Y-%m-%d}" if ns % (24 * NS_PER_HOUR) == 0 else f"{moment:%Y-%m-%d %H:%M}"


def _lots_gpu_hours(lots: int, gpu_hours: int) -> str:
    return f"{lots:,} lots = {gpu_hours:,} GPU-hours"


# -- exchange demo -------------------------------------------------------------------------


@dataclass
class SeriesTally:
    trades: int = 0
    volume_lots: int = 0
    notional_micros: int = 0
    last_price_ticks: int | None = None


class DemoView:
    """Collects what the screen shows from the simulator's events, and renders it."""

    def __init__(self, sim: MarketSimulator, show: str) -> None:
        self.sim = sim
        self.engine = sim.engine
        self.show = show
        self.spec = sim.specs[show]
        self.tallies = {symbol: SeriesTally() for symbol in sim.symbols}
        self.tape: deque[tuple[Trade, int]] = deque(maxlen=TAPE_LENGTH)  # (trade, price move sign)
        self.steps = 0

    def consume(self, events: list[Event]) -> None:
        self.steps += 1
        for event in events:
            if isinstance(event, Trade):
                tally = self.tallies[event.symbol]
                last, price = tally.last_price_ticks, event.price_ticks
                move = 0 if last is None else (price > last) - (price < last)
                tally.trades += 1
                tally.volume_lots += event.qty_lots
                tally.notional_micros += (event.price_ticks * event.qty_lots
                                          * self.sim.specs[event.symbol].lot_tick_value_micros)
                tally.last_price_ticks = event.price_ticks
                if event.symbol == self.show:
                    self.tape.appendleft((event, move))

    # -- pieces ----------------------------------------------------------------------------
    def title(self) -> Text:
        spec, sim = self.spec, self.sim
        others = [symbol for symbol in sim.symbols if symbol != spec.symbol]
        text = Text()
        text.append("Compute Exchange", style="bold magenta")
        text.append(f"  simulated market, seed {sim.seed}: {len(MARKET_MAKERS)} market makers, {len(TAKERS)} "
                    f"takers and {len(PROVIDERS)} GPU providers on the real matching engine\n")
        text.append(spec.symbol, style="bold cyan")
        text.append(f"  {spec.generation} GPUs delivering at least {_plain(spec.mfu_grade * 100)}% MFU, "
                    f"{_day(spec.delivery_start_ns)} to {_day(spec.delivery_end_ns)} UTC "
                    f"({spec.delivery_hours} h)\n")
        text.append(f"1 lot = {spec.gpus_per_lot} GPUs x {spec.delivery_hours} h = {spec.lot_gpu_hours:,} "
                    "GPU-hours; prices in USD per GPU-hour", style="dim")
        if others:
            text.append(f"; also trading {', '.join(others[:4])}{' ...' if len(others) > 4 else ''}",
                        style="dim")
        return text

    def book(self, depth: int = BOOK_DEPTH) -> Table:
        spec = self.spec
        bids, asks = self.engine.book_levels(spec.symbol)
        table = Table(title=f"Order book (top {depth})", box=box.SIMPLE_HEAD, title_style="bold",
                      padding=(0, 1), show_edge=False)
        for name, style in (("orders", "dim"), ("lots", "green"), ("bid", "bold green"),
                            ("ask", "bold red"), ("lots", "red"), ("orders", "dim")):
            table.add_column(name, justify="right", style=style, no_wrap=True)
        for i in range(depth):
            bid = bids[i] if i < len(bids) else None
            ask = asks[i] if i < len(asks) else None
            table.add_row(
                str(bid[2]) if bid else "", f"{bid[1]:,}" if bid else "", _price(spec, bid[0]) if bid else "",
                _price(spec, ask[0]) if ask else "", f"{ask[1]:,}" if ask else "", str(ask[2]) if ask else "",
            )
        if bids and asks:
            ticks = asks[0][0] - bids[0][0]
            table.caption = (f"spread {ticks_to_price(ticks, spec.tick_micros)} "
                             f"({ticks} tick{'s' if ticks != 1 else ''})")
        else:
            table.caption = "one side is empty"
        return table

    def trades(self, rows: int = TAPE_LENGTH) -> Table:
        spec = self.spec
        table = Table(title="Last trades", box=box.SIMPLE_HEAD, title_style="bold", padding=(0, 1),
                      show_edge=False)
        table.add_column("time UTC", style="dim", no_wrap=True)
        table.add_column("price", justify="right", no_wrap=True)
        table.add_column("", width=1, no_wrap=True)
        table.add_column("lots", justify="right", no_wrap=True)
        table.add_column("aggressor", no_wrap=True)
        shown = list(self.tape)[:rows]
        for trade, move in shown:
            arrow, style = {1: ("▲", "green"), -1: ("▼", "red"), 0: ("", "")}[move]
            buy = trade.aggressor_side == BUY
            table.add_row(_clock(trade.ts_ns), Text(_price(spec, trade.price_ticks), style=style),
                          Text(arrow, style=style), f"{trade.qty_lots:,}",
                          Text("buy", style="green") if buy else Text("sell", style="red"))
        for _ in range(rows - len(shown)):
            table.add_row("", "", "", "", "")
        tally = self.tallies[spec.symbol]
        table.caption = f"{tally.trades:,} trades, {tally.volume_lots:,} lots in {spec.symbol}"
        return table

    def stats_line(self, elapsed_s: float) -> Text:
        stats = self.sim.stats
        rate = int(stats.events / elapsed_s) if elapsed_s > 0 else 0
        text = Text()
        text.append(f"market time {utc(self.sim.now_ns)[:10]} {_clock(self.sim.now_ns)} UTC", style="bold")
        text.append(f"   commands {stats.commands:,}   events {stats.events:,} ({rate:,}/s)   "
                    f"trades {stats.trades:,}\n")
        text.append(f"all series: volume {_lots_gpu_hours(stats.volume_lots, stats.volume_gpu_hours)}, "
                    f"notional ${_usd(stats.notional_micros)}\n")
        text.append(f"rejects {stats.rejected:,}", style="yellow" if stats.rejected else "")
        text.append(f" ({_rejects(stats)})" if stats.rejected else "")
        text.append(f"   retries answered as duplicates {stats.duplicates:,}   "
                    f"GTD expiries {stats.expired:,}")
        if self.show in self.sim.terminated:
            text.append("   TRADING TERMINATED", style="bold red")
        return text

    def screen(self, width: int, height: int, elapsed_s: float, stopping: str) -> RenderableType:
        """The live screen; book and tape side by side when wide enough, shortened to fit the height."""
        if width >= 100:
            rows = max(3, min(BOOK_DEPTH, height - 12))
            grid = Table.grid(padding=(0, 4))
            grid.add_row(self.book(rows), self.trades(rows))
            body: RenderableType = grid
        else:
            rows = max(2, min(BOOK_DEPTH, (height - 20) // 2))
            body = Group(self.book(rows), self.trades(rows))
        return Group(self.title(), body, self.stats_line(elapsed_s), Text(stopping, style="dim"))

    def summary(self, elapsed_s: float) -> RenderableType:
        table = Table(title="Per series", box=box.SIMPLE_HEAD, title_style="bold")
        table.add_column("symbol", style="bold cyan", no_wrap=True)
        table.add_column("trades", justify="right")
        table.add_column("lots", justify="right")
        table.add_column("GPU-hours", justify="right")
        table.add_column("notional USD", justify="right")
        table.add_column("last", justify="right")
        table.add_column("bid", justify="right", style="green")
        table.add_column("ask", justify="right", style="red")
        table.add_column("status")
        for symbol, tally in self.tallies.items():
            spec = self.sim.specs[symbol]
            bids, asks = self.engine.book_levels(symbol)
            table.add_row(
                symbol, f"{tally.trades:,}", f"{tally.volume_lots:,}",
                f"{tally.volume_lots * spec.lot_gpu_hours:,}", _usd(tally.notional_micros),
                _price(spec, tally.last_price_ticks) if tally.last_price_ticks is not None else "-",
                _price(spec, bids[0][0]) if bids else "-", _price(spec, asks[0][0]) if asks else "-",
                Text("terminated", style="red") if symbol in self.sim.terminated else Text("trading", style="green"),
            )
        stats = self.sim.stats
        rate = int(stats.events / elapsed_s) if elapsed_s > 0 else 0
        totals = Table(title="Summary", show_header=False, box=box.SIMPLE, title_style="bold")
        totals.add_column("what", style="cyan", no_wrap=True)
        totals.add_column("value")
        totals.add_row("market time", f"{utc(self.sim.start_ns)} + {self.steps:,} steps of "
                                      f"{self.sim.step_ns // 1_000_000} ms")
        totals.add_row("commands", f"{stats.commands:,} ({_counts(stats.commands_by_type)})")
        totals.add_row("events", f"{stats.events:,} ({rate:,} events/s)")
        totals.add_row("trades", f"{stats.trades:,}")
        totals.add_row("volume", _lots_gpu_hours(stats.volume_lots, stats.volume_gpu_hours))
        totals.add_row("notional", f"${_usd(stats.notional_micros)} (fees ${_usd(stats.fees_micros)})")
        totals.add_row("rejects", f"{stats.rejected:,}" + (f" ({_rejects(stats)})" if stats.rejected else ""))
        totals.add_row("duplicates", f"{stats.duplicates:,} retries answered with the original result")
        totals.add_row("GTD expiries", f"{stats.expired:,}")
        self.engine.audit()
        totals.add_row("audit", "ok: books, orders, margin and positions consistent; ledger sums to zero")
        grid = Table.grid(padding=(0, 4))
        grid.add_row(self.book(), self.trades())
        return Group(self.title(), grid, table, totals)


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in sorted(counter.items(), key=lambda kv: -kv[1]))


def _rejects(stats: SimStats) -> str:
    return _counts(stats.rejects)


def _demo_symbols(catalog: Catalog, start_ns: int, requested: list[str] | None) -> list[str]:
    if requested:
        for text in requested:
            spec = catalog.series_spec(text)  # SymbolError names what is wrong
            if spec.trading_end_ns <= start_ns:
                raise ValueError(f"{spec.symbol}: trading ended at {utc(spec.trading_end_ns)}, before the "
                                 f"start {utc(start_ns)}")
        return list(dict.fromkeys(requested))
    listed = catalog.listed_series(start_ns)
    chosen: list[str] = []
    for product in DEMO_PRODUCTS:
        daily = [s for s in listed if s.product == product and s.period is PeriodKind.DAILY]
        if daily:
            chosen.append(daily[0].symbol)
    if not chosen:
        chosen = [s.symbol for s in listed[:3]]
    if not chosen:
        raise ValueError(f"no series listed at {utc(start_ns)}")
    return chosen


@app.command()
def demo(
    *,
    seed: Annotated[int, typer.Option(help="Seed of the simulated market: same seed, same market.")] = 7,
    symbols: Annotated[list[str] | None, typer.Option(
        "--symbol", "-s", metavar="SYMBOL",
        help="Series to trade (repeatable). Default: the front daily series of "
             + ", ".join(DEMO_PRODUCTS) + ".")] = None,
    show: Annotated[str | None, typer.Option(
        metavar="SYMBOL", help="Series whose book and trades are shown; default the first.")] = None,
    steps: Annotated[int | None, typer.Option(
        min=0, help=f"Commands to run; 0 runs until Ctrl-C. Default 0 live, {DEFAULT_NO_LIVE_STEPS} with "
                    "--no-live.")] = None,
    speed: Annotated[int, typer.Option(min=0, metavar="CMDS_PER_SEC",
                                       help="Live mode pace in commands per second; 0 = as fast as possible."
                                       )] = 30,
    start: Annotated[str | None, typer.Option(metavar="ISO8601",
                                              help="Market start time (UTC if no offset); default this hour."
                                              )] = None,
    live: Annotated[bool, typer.Option(
        "--live/--no-live", help="Live screen, or run then print a summary (for scripts).")] = True,
) -> None:
    """Watch a seeded simulated market trade GPU-hour futures on the real matching engine."""
    with _errors():
        start_ns = _now_hour_ns() if start is None else parse_instant(start, "--start")
        catalog = _catalog()
        chosen = _demo_symbols(catalog, start_ns, symbols)
        shown = chosen[0] if show is None else show
        if shown not in chosen:
            raise ValueError(f"--show {shown!r} is not one of the simulated series: {', '.join(chosen)}")
        engine = Engine(catalog.rules.engine_limits(), audit_every_commands=1_000)
        sim = MarketSimulator(engine, catalog, seed=seed, start_ns=start_ns, symbols=chosen)
        sim.setup()
        view = DemoView(sim, shown)
        console = _stdout()
        if live and console.is_terminal:
            _run_live(console, sim, view, steps or 0, speed)
            return
        total = DEFAULT_NO_LIVE_STEPS if steps is None else steps
        if total == 0:
            if not live:
                raise ValueError("--steps 0 runs until Ctrl-C, which needs the live screen: drop --no-live")
            total = DEFAULT_NO_LIVE_STEPS  # live asked for, but stdout is not a terminal
        began = time.perf_counter()
        for _ in range(total):
            view.consume(sim.step())
        console.print(view.summary(time.perf_counter() - began))


def _run_live(console: Console, sim: MarketSimulator, view: DemoView, total: int, speed: int) -> None:
    began = time.perf_counter()
    stopping = "Ctrl-C to stop" if total == 0 else f"running {total:,} commands; Ctrl-C to stop"
    try:
        first = view.screen(console.width, console.height, 0.0, stopping)
        with Live(first, console=console, auto_refresh=False, transient=False) as screen:
            while total == 0 or view.steps < total:
                frame_start = time.perf_counter()
                if speed == 0:
                    batch = _FAST_BATCH
                else:
                    due = int((frame_start - began) * speed) + 1
                    batch = min(max(due - view.steps, 0), max(speed, 1))
                if total:
                    batch = min(batch, total - view.steps)
                for _ in range(batch):
                    view.consume(sim.step())
                elapsed = time.perf_counter() - began
                screen.update(view.screen(console.width, console.height, elapsed, stopping), refresh=True)
                pause = _FRAME_S - (time.perf_counter() - frame_start)
                if pause > 0 and speed:
                    time.sleep(pause)
    except KeyboardInterrupt:
        console.print("[dim]stopped[/]")
    console.print(view.summary(time.perf_counter() - began))


# -- exchange series -----------------------------------------------------------------------


@app.command()
def series(
    at: Annotated[str | None, typer.Option("--at", metavar="ISO8601",
                                           help="Instant (UTC if no offset); default now.")] = None,
    product: Annotated[str | None, typer.Option("--product", metavar="PRODUCT",
                                                help="Only this product, e.g. H100-M40.")] = None,
    nearest: Annotated[bool, typer.Option("--nearest", help="Print only the symbol of the product's series "
                                          "whose trading ends first (for scripts: $(exchange series "
                                          "--product H100-M40 --nearest)).")] = False,
) -> None:
    """The listing calendar: every series open for trading at an instant."""
    with _errors():
        at_ns = (time.time_ns() if nearest else _now_hour_ns()) if at is None else parse_instant(at, "--at")
        catalog = _catalog()
        specs = catalog.listed_series(at_ns)
        if product is not None:
            known = {spec.product for spec in specs}
            if product not in known:
                raise ValueError(f"no listed product {product!r}; listed: {', '.join(sorted(known))}")
            specs = [spec for spec in specs if spec.product == product]
        if nearest:
            if product is None:
                raise ValueError("--nearest needs --product (e.g. --product H100-M40)")
            found = nearest_series(specs, product, at_ns)
            if found is None:
                raise ValueError(f"no series of {product} trades for long enough after {utc(at_ns)}")
            typer.echo(found.symbol)
            return
        console = _stdout()
        wide = console.width >= 110  # narrow terminals: the symbol already names product and period
        table = Table(title=f"Series listed at {utc(at_ns)} ({len(specs)})", box=box.SIMPLE_HEAD,
                      title_style="bold", pad_edge=wide)
        width = max((len(spec.symbol) for spec in specs), default=6)
        table.add_column("symbol", style="bold cyan", no_wrap=True, min_width=width)
        if wide:
            table.add_column("product", no_wrap=True)
            table.add_column("period", no_wrap=True)
        table.add_column("delivery from" if wide else "from", no_wrap=True, min_width=10)
        table.add_column("until", no_wrap=True, min_width=10)
        table.add_column("trading ends", no_wrap=True, min_width=11)
        table.add_column("lot GPU-h", justify="right", no_wrap=True, min_width=9)
        table.add_column("ref USD", justify="right", no_wrap=True, min_width=7)
        if wide:
            table.add_column("tick", justify="right", no_wrap=True)
        for spec in specs:
            trading_end = _moment(spec.trading_end_ns).strftime("%Y-%m-%d %H:%M" if wide else "%m-%d %H:%M")
            cells = [spec.symbol, *((spec.product, str(spec.period)) if wide else ()),
                     _day(spec.delivery_start_ns), _day(spec.delivery_end_ns), trading_end,
                     f"{spec.lot_gpu_hours:,}", _price(spec, spec.reference_price_ticks)]
            if wide:
                cells.append(_plain(micros_to_usd(spec.tick_micros)))
            table.add_row(*cells)
        ticks = sorted({_plain(micros_to_usd(spec.tick_micros)) for spec in specs})
        table.caption = ("times UTC; delivery from 00:00 until 00:00 (exclusive); prices USD per GPU-hour"
                         + ("" if wide else f", tick {', '.join(ticks)}")
                         + "; one lot = GPUs per lot x delivery hours")
        console.print(table)


# -- exchange symbol -----------------------------------------------------------------------


@app.command()
def symbol(text: Annotated[str, typer.Argument(metavar="SYMBOL", help="e.g. H100-M40-Z26, H100-M40-26W49, "
                                                                       "H100-M40-261203")]) -> None:
    """Parse and explain a series symbol: product, lot size in GPU-hours, delivery and trading end."""
    with _errors():
        parsed = parse_symbol(text)
        catalog = _catalog()
        spec = catalog.series_spec(parsed)
        generation = catalog.generations[spec.generation]
        band_low, band_high = spec.price_band_ticks(spec.reference_price_ticks)
        margin_per_lot = spec.initial_margin_per_lot_micros(spec.reference_price_ticks)
        notional = spec.reference_price_ticks * spec.lot_tick_value_micros
        kind = {PeriodKind.MONTHLY: "monthly", PeriodKind.WEEKLY: "weekly (ISO week)",
                PeriodKind.DAILY: "daily"}[spec.period]

        table = Table(title=spec.symbol, title_style="bold", show_header=False, box=box.SIMPLE)
        table.add_column("field", style="cyan", no_wrap=True)
        table.add_column("value")
        table.add_row("product", f"{spec.product}: {generation.description}, "
                                 f"min probe MFU {parsed.grade_percent}%")
        table.add_row("GPUs per lot", str(spec.gpus_per_lot))
        table.add_row("delivery", f"{kind}, {utc(spec.delivery_start_ns)} to {utc(spec.delivery_end_ns)}")
        table.add_row("delivery hours", str(spec.delivery_hours))
        table.add_row("lot size", f"{spec.lot_gpu_hours} GPU-hours "
                                  f"({spec.gpus_per_lot} GPUs x {spec.delivery_hours} h)")
        now_ns = time.time_ns()
        if spec.trading_end_ns <= now_ns:
            ago = timedelta(seconds=(now_ns - spec.trading_end_ns) // 1_000_000_000)
            table.add_row("trading ends", f"{utc(spec.trading_end_ns)}: [bold red]stopped trading[/] "
                                          f"{ago.days} days ago")
            table.add_row("trading now", f"exchange series --product {spec.product} --nearest")
        else:
            table.add_row("trading ends", utc(spec.trading_end_ns))
        table.add_row("reference price", f"{_price(spec, spec.reference_price_ticks)} USD per GPU-hour "
                                         f"(tick {_plain(micros_to_usd(spec.tick_micros))})")
        low, high = _price(spec, band_low), _price(spec, band_high)
        table.add_row("price band", f"±{_percent(spec.price_band_ppm)}: {low} to {high}")
        table.add_row("lot notional", f"${_usd(notional)} at the reference price")
        table.add_row("initial margin", f"${_usd(margin_per_lot)} per lot "
                                        f"({_percent(spec.initial_margin_ppm)} of notional)")
        table.add_row("fees", f"taker {_plain(Decimal(spec.taker_fee_ppm) / 100)} bps, "
                              f"maker {_plain(Decimal(spec.maker_fee_ppm) / 100)} bps of notional")
        _stdout().print(table)


admin_cli.register(app, _errors, _stdout)
probe_cli.register(app, _errors, _stdout)
jobs_cli.register(app, _errors, _stdout)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default $EXCHANGE_HOST or 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default $EXCHANGE_PORT or 8000)")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="data directory (default $EXCHANGE_DATA_DIR)")] = None,
    database_url: Annotated[str | None, typer.Option(help="SQLAlchemy URL of the store (default: SQLite)")] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
    demo: Annotated[bool | None, typer.Option("--demo/--no-demo", help="run the live demo market: simulated "
                                              "market makers, takers and providers trading a few series "
                                              "(default $EXCHANGE_DEMO or on)")] = None,
    feeds: Annotated[bool | None, typer.Option("--feeds/--no-feeds", help="run the market-data feed gateway "
                                               "process (default $EXCHANGE_FEED_GATEWAY or on)")] = None,
    feed_port: Annotated[int | None, typer.Option(help="the feed gateway's port (default $EXCHANGE_FEED_PORT "
                                                  "or 8001)")] = None,
) -> None:
    """Run the exchange: REST + WebSocket API on a durable data directory (recovers on start), and the
    market-data feed gateway on its own port."""
    from exchange.api.server import serve as run_server
    from exchange.settings import Settings

    with _errors():
        updates: dict[str, object] = {k: v for k, v in (("host", host), ("port", port), ("data_dir", data),
                                                        ("database_url", database_url), ("feed_gateway", feeds),
                                                        ("feed_port", feed_port)) if v is not None}
        settings = Settings().model_copy(update=updates)
        run_server(settings, log_level.upper(), demo=settings.demo if demo is None else demo)


@app.command("feed-gateway")
def feed_gateway(
    host: Annotated[str | None, typer.Option(help="bind address (default $EXCHANGE_FEED_HOST, else the API's)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default $EXCHANGE_FEED_PORT or 8001)")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="data directory (default $EXCHANGE_DATA_DIR)")] = None,
    database_url: Annotated[str | None, typer.Option(help="SQLAlchemy URL of the store (default: SQLite)")] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
    parent_pid: Annotated[int | None, typer.Option(help="exit when this process is gone (set by exchange "
                                                   "serve)")] = None,
) -> None:
    """Run a market-data feed gateway: follows the data directory's journal (read-only) and serves
    /v1/ws/market. `exchange serve` runs one by itself; start more for more subscribers."""
    from exchange.feeds.server import serve_gateway
    from exchange.settings import Settings

    with _errors():
        updates: dict[str, object] = {k: v for k, v in (("feed_host", host), ("feed_port", port), ("data_dir", data),
                                                        ("database_url", database_url)) if v is not None}
        serve_gateway(Settings().model_copy(update=updates), log_level.upper(), parent_pid)


@app.command()
def watch(
    symbol: Annotated[str, typer.Argument(metavar="SYMBOL", help="series to watch, e.g. $(exchange series "
                                          "--product H100-M40 --nearest)")],
    url: Annotated[str | None, typer.Option(help="the feed gateway's base URL (default: the one the exchange "
                                            "serving --data announced)")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="data directory of a running exchange "
                                              "(default $EXCHANGE_DATA_DIR)")] = None,
) -> None:
    """Watch a live order book (top 10 levels) and the trade tape from the market-data feed."""
    from exchange import watch_cli
    from exchange.client.errors import ExchangeError

    with _errors():
        target = url or server_urls(data)["feeds"]
        try:
            watch_cli.run(symbol, target, _stdout())
        except ExchangeError as error:
            raise ValueError(f"{error} ({target})") from None


def server_urls(data: Path | None) -> dict[str, str]:
    """The URLs the exchange serving `data` (default $EXCHANGE_DATA_DIR) announced in its server.json,
    else the configured defaults (EXCHANGE_HOST, EXCHANGE_PORT, EXCHANGE_FEED_PORT)."""
    from exchange.settings import Settings

    settings = Settings() if data is None else Settings().model_copy(update={"data_dir": data})
    urls = announced(settings.data_dir)
    if urls is not None:
        return urls
    host = settings.feed_host or settings.host
    return {"api": f"http://{settings.host}:{settings.port}", "feeds": f"http://{host}:{settings.feed_port}"}


def main() -> None:
    # Everything the exchange writes (data directory, journal, snapshots, database, keys, statements)
    # is private to its user: the journal and the store hold every account's money and orders.
    os.umask(0o077)
    app()


if __name__ == "__main__":
    main()
