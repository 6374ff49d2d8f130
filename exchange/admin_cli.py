"""Operator commands of the `exchange` CLI: they run against a data directory, through the same
sequencer, journal and core as the service (the directory's lock keeps them from racing a running
exchange). Each mutating command recovers the core, submits one or more commands, waits until they
are durable, and prints what happened; a rejection is one red line and exit code 1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from exchange.catalog import load_catalog
from exchange.domain.book import BUY, SELL
from exchange.domain.commands import Command, CreateAccount, Deposit, ListSeries, Withdraw
from exchange.domain.events import Rejected
from exchange.domain.units import micros_to_usd, ticks_to_price, usd_to_micros
from exchange.jobs.session import running_service
from exchange.service.exchange_service import DataDirLocked, ExchangeService, ServiceConfig, verify_replay
from exchange.service.loss import accept_loss as accept_loss_in
from exchange.settings import Settings
from exchange.signing import derive_secret
from exchange.store import Store
from exchange.store.store import existing_store_seq


class Scope(StrEnum):
    READ = "read"
    TRADE = "trade"
    OPERATOR = "operator"

DataOption = Annotated[Path | None,
                       typer.Option("--data", help="data directory (default $EXCHANGE_DATA_DIR or ./data)")]


def _settings(data: Path | None, create: bool = False) -> Settings:
    """The settings for `--data`; unless `create` (only `init` and `serve` create), the directory must
    already be an exchange's data directory: a typo must not silently start an empty exchange."""
    settings = Settings()
    settings = settings if data is None else settings.model_copy(update={"data_dir": data})
    if not create:
        require_data_dir(settings.data_dir)
    return settings


def _positive_usd(text: str) -> int:
    micros = usd_to_micros(text, "amount")
    if micros <= 0:
        raise ValueError(f"amount {text} is refused: it must be a positive number of USD such as 2500.00 "
                         "(a deposit credits, a withdrawal debits)")
    return micros


def require_data_dir(data_dir: Path) -> None:
    if not (data_dir / "journal").is_dir():
        raise ValueError(f"{data_dir} is not an exchange data directory (it has no journal/): create one with "
                         f"`exchange init --data {data_dir}` (or `exchange serve`), or point --data or "
                         "$EXCHANGE_DATA_DIR at an existing one")


def _config(settings: Settings) -> ServiceConfig:
    return ServiceConfig(settings.data_dir, limits=load_catalog().rules.engine_limits(),
                         snapshot_every_commands=settings.snapshot_every_commands, snapshot_mode="inline",
                         audit_every_commands=settings.audit_every_commands)


def _store(settings: Settings) -> Store:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.store_url())
    store.migrate()
    return store


@contextmanager
def _service(settings: Settings) -> Iterator[ExchangeService]:
    service = ExchangeService(_config(settings), _store(settings))
    try:
        service.open()
    except DataDirLocked as error:
        raise ValueError(str(error)) from None
    try:
        yield service
    finally:
        service.close()


def submit_all(settings: Settings, commands: Sequence[Command]) -> list[list[Any]]:
    """Recover, submit the commands in order, wait until durable; the events of each command."""
    results: list[list[Any]] = []

    async def run() -> None:
        async with running_service(settings, load_catalog()) as service:
            for command in commands:
                results.append(await service.submit(command))

    asyncio.run(run())
    return results


def _refused(events: list[Any]) -> str | None:
    rejected = [e for e in events if isinstance(e, Rejected)]
    return f"{rejected[0].code}: {rejected[0].message}" if rejected else None


def register(app: typer.Typer, errors: Any, console: Any) -> None:
    """Add the operator commands to the main `exchange` app (the CLI module owns errors and console)."""

    @app.command()
    def init(data: DataOption = None) -> None:
        """Create (or bring up to date) a data directory: list every series the calendar has open now."""
        with errors():
            settings = _settings(data, create=True)
            catalog = load_catalog()
            now_ns = time.time_ns()
            with _service(settings) as service:
                assert service.engine is not None
                listed = set(service.engine.series)
            wanted = [ListSeries(spec) for spec in catalog.listed_series(now_ns) if spec.symbol not in listed]
            submit_all(settings, wanted)
            settings.load_probe_key(create=True)   # the exchange's probe key, for signing delivery telemetry
            console().print(f"{settings.data_dir}: {len(listed) + len(wanted)} series listed ({len(wanted)} new)")

    account_app = typer.Typer(help="Trader accounts.", no_args_is_help=True)
    app.add_typer(account_app, name="account")

    @account_app.command("create")
    def account_create(account_id: int, data: DataOption = None) -> None:
        """Open a trader account (ids are positive integers chosen by the operator)."""
        with errors():
            (events,) = submit_all(_settings(data), [CreateAccount(account_id)])
            if (why := _refused(events)) is not None:
                raise ValueError(why)
            console().print(f"account {account_id} created")

    # A negative amount must reach the command (and be refused with a reason), not read as an option.
    @app.command(context_settings={"ignore_unknown_options": True})
    def deposit(account_id: int, amount_usd: str, data: DataOption = None) -> None:
        """Credit USD to an account (exact decimal, e.g. 2500.00)."""
        with errors():
            (events,) = submit_all(_settings(data), [Deposit(account_id, _positive_usd(amount_usd))])
            if (why := _refused(events)) is not None:
                raise ValueError(why)
            console().print(f"account {account_id}: cash {micros_to_usd(events[-1].balance_micros)} USD")

    @app.command(context_settings={"ignore_unknown_options": True})
    def withdraw(account_id: int, amount_usd: str, data: DataOption = None) -> None:
        """Pay USD out of an account; refused if what is left would not cover its margin."""
        with errors():
            (events,) = submit_all(_settings(data), [Withdraw(account_id, _positive_usd(amount_usd))])
            if (why := _refused(events)) is not None:
                raise ValueError(why)
            console().print(f"account {account_id}: cash {micros_to_usd(events[-1].balance_micros)} USD")

    @app.command()
    def book(symbol: str, depth: int = 10, data: DataOption = None) -> None:
        """The order book of a series, best prices first."""
        with errors(), _service(_settings(data)) as service:
            assert service.engine is not None
            series = service.engine.series.get(symbol)
            if series is None:
                raise ValueError(f"no listed series {symbol!r}")
            tick = series.spec.tick_micros
            table = Table(title=f"{symbol} (USD per GPU-hour)", box=box.SIMPLE)
            for column in ("bid orders", "bid lots", "bid", "ask", "ask lots", "ask orders"):
                table.add_column(column, justify="right")
            bids, asks = series.book.levels(BUY)[:depth], series.book.levels(SELL)[:depth]
            for i in range(max(len(bids), len(asks))):
                bid = bids[i] if i < len(bids) else None
                ask = asks[i] if i < len(asks) else None
                table.add_row(str(bid[2]) if bid else "", str(bid[1]) if bid else "",
                              str(ticks_to_price(bid[0], tick)) if bid else "",
                              str(ticks_to_price(ask[0], tick)) if ask else "",
                              str(ask[1]) if ask else "", str(ask[2]) if ask else "")
            console().print(table)

    @app.command()
    def positions(account_id: int, data: DataOption = None) -> None:
        """An account's cash, required margin and positions."""
        with errors(), _service(_settings(data)) as service:
            engine = service.engine
            assert engine is not None
            account = engine.accounts.get(account_id)
            if account is None:
                raise ValueError(f"no account {account_id}")
            cash = engine.cash_micros(account_id)
            out = console()
            out.print(f"account {account_id}: cash {micros_to_usd(cash)} USD, initial margin "
                      f"{micros_to_usd(account.margin_micros)} USD, open orders {len(account.orders)}")
            table = Table(box=box.SIMPLE)
            for column in ("series", "position lots", "average entry", "open buy lots", "open sell lots"):
                table.add_column(column, justify="right")
            for symbol, exposure in account.exposures.items():
                average = exposure.average_entry_ticks()
                tick = engine.series[symbol].spec.tick_micros
                entry = "" if average is None else f"{micros_to_usd(round(average * tick)):f}"
                table.add_row(symbol, str(exposure.position_lots), entry, str(exposure.open_buy_lots),
                              str(exposure.open_sell_lots))
            out.print(table)

    @app.command()
    def replay(verify: Annotated[bool, typer.Option("--verify", help="rebuild and compare state hashes")] = False,
               data: DataOption = None) -> None:
        """Rebuild the core from the journal (from scratch and from snapshot + tail) and compare hashes."""
        with errors():
            settings = _settings(data)
            check = verify_replay(_config(settings), existing_store_seq(settings.store_url()))
            out = console()
            out.print(f"journal: {check.journal_seq} commands; state hash from scratch {check.from_scratch}")
            if check.from_snapshot is not None:
                out.print(f"snapshot at {check.snapshot_seq} + tail: {check.from_snapshot}")
            if verify and not check.ok:
                raise ValueError("replay from the snapshot does not match replay from scratch")
            if verify:
                out.print("[green]verified[/]: both replays agree")

    @app.command()
    def recover(accept_loss: Annotated[bool, typer.Option(
                    "--accept-loss", help="cut the journal at its last whole record, move what is cut aside, "
                    "rebuild the store to match, and record the loss (restoring a copy is better)")] = False,
                data: DataOption = None) -> None:
        """The way out when the journal lost committed records (the exchange refuses to start)."""
        with errors():
            settings = _settings(data)
            if not accept_loss:
                raise ValueError("this accepts losing committed records for good: restore the journal from a copy "
                                 "if you have one; otherwise run again with --accept-loss")
            store = Store(settings.store_url()) if existing_store_seq(settings.store_url()) is not None else None
            try:
                report = accept_loss_in(settings.data_dir, store, time.time_ns())
            finally:
                if store is not None:
                    store.close()
            out = console()
            lost = report.lost_from_seq
            out.print(f"journal ends at seq {report.journal_seq}; " + (
                f"[red]commands from seq {lost} on are lost[/]" if lost else "no committed command was lost"))
            for moved in report.moved:
                out.print(f"moved aside: {moved}")
            if report.store_reset:
                out.print("the SQL store's projection was reset: the next start rebuilds it from the journal")
            out.print(f"loss recorded in {report.record}")

    apikey_app = typer.Typer(help="API keys (secrets are shown once and stored hashed).", no_args_is_help=True)
    app.add_typer(apikey_app, name="apikey")

    @apikey_app.command("create")
    def apikey_create(account_id: int,
                      scope: Annotated[list[Scope], typer.Option(help="read, trade or operator (repeatable)")],
                      data: DataOption = None) -> None:
        """Create an API key for an account; prints the key id and its secret (shown only now)."""
        # Only the store is touched (not the data directory's lock), so this works while `serve` runs.
        with errors():
            settings = _settings(data)
            store = _store(settings)
            try:
                if account_id not in {row.account_id for row in store.accounts()}:
                    raise ValueError(f"no account {account_id}")
                master_key = settings.load_master_key()
                key_id, secret = store.create_api_key(account_id, [s.value for s in scope], time.time_ns(),
                                                      lambda key_id: derive_secret(master_key, key_id))
            finally:
                store.close()
            console().print(f"key id {key_id}\nsecret {secret}\n(store the secret now: it is not kept)")

    @app.command()
    def ledger(account_id: int, limit: int = 50, data: DataOption = None) -> None:
        """Cash postings to and from an account (or a system account: -1 external, -2 fees), oldest first."""
        with errors(), _service(_settings(data)) as service:
            assert isinstance(service.projector, Store)
            table = Table(title=f"ledger of {account_id}", box=box.SIMPLE)
            for column in ("seq", "kind", "from", "to", "amount USD"):
                table.add_column(column, justify="right")
            for row in service.projector.ledger(account_id, limit=limit):
                signed = row.amount_micros if row.to_account == account_id else -row.amount_micros
                table.add_row(str(row.seq), row.kind, str(row.from_account), str(row.to_account),
                              f"{micros_to_usd(signed):f}")
            balance = service.projector.balances().get(account_id)
            if balance is None:
                raise ValueError(f"no ledger account {account_id}")
            console().print(table)
            console().print(f"balance {micros_to_usd(balance)} USD")

    @app.command()
    def snapshot(data: DataOption = None) -> None:
        """Write a snapshot of the core now."""
        with errors(), _service(_settings(data)) as service:
            console().print(f"wrote {service.snapshot_now()}")
