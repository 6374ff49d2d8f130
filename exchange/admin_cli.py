"""Operator commands of the `exchange` CLI.

While a server holds the data directory (its LOCK), each command works through that server's API with
the operator key it keeps (`exchange.live_server`): reads and writes alike, answered once durable.
Only when no server holds it does a command open the directory itself, through the same sequencer,
journal and core as the service: it recovers the core, submits its commands, waits until they are
durable. Either way it prints what happened; a refusal is one red line naming the mode it tried
("live: ..." or "offline: ...") and exit code 1. `replay` and `recover` read or rewrite the whole
directory, so they are offline only and say so when a server runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from exchange.catalog import load_catalog
from exchange.client import Client
from exchange.client.errors import ExchangeError
from exchange.domain.book import BUY, SELL
from exchange.domain.commands import Command, CreateAccount, Deposit, ListSeries, Withdraw
from exchange.domain.engine import Engine
from exchange.domain.events import CashMoveDuplicate, Rejected
from exchange.domain.units import micros_to_usd, ticks_to_price, usd_to_micros
from exchange.jobs.session import running_service
from exchange.live_server import live_api, operator_credentials
from exchange.service.exchange_service import DataDirLocked, ExchangeService, ServiceConfig, verify_replay
from exchange.service.loss import accept_loss as accept_loss_in
from exchange.settings import Settings
from exchange.signing import IDEMPOTENCY_KEY_RE, derive_secret
from exchange.store import Store
from exchange.store.store import existing_store_seq


class Scope(StrEnum):
    READ = "read"
    TRADE = "trade"
    OPERATOR = "operator"

ReferenceOption = Annotated[str | None, typer.Option(
    help="your id of the transfer (1-64 of A-Z a-z 0-9 . _ : -): the same move with it again moves nothing, "
         "for 24 h")]
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


def _account_view(engine: Engine, account_id: int) -> dict[str, Any]:
    """What `GET /v1/admin/accounts/{id}` answers, from an engine opened offline."""
    account = engine.accounts.get(account_id)
    if account is None:
        raise ValueError(f"offline: no account {account_id}")
    positions = []
    for symbol, exposure in sorted(account.exposures.items()):
        average = exposure.average_entry_ticks()
        tick = engine.series[symbol].spec.tick_micros
        positions.append({"symbol": symbol, "position_lots": exposure.position_lots,
                          "average_entry": None if average is None else f"{micros_to_usd(round(average * tick)):f}",
                          "open_buy_lots": exposure.open_buy_lots, "open_sell_lots": exposure.open_sell_lots})
    return {"cash": str(micros_to_usd(engine.cash_micros(account_id))),
            "initial_margin": str(micros_to_usd(account.margin_micros)), "open_orders": len(account.orders),
            "positions": positions}


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


@contextmanager
def _live(settings: Settings) -> Iterator[Client | None]:
    """A client of the server holding the data directory, or None when none does (then: offline)."""
    url = live_api(settings.data_dir)
    if url is None:
        yield None
        return
    key_id, secret = operator_credentials(settings.data_dir)
    with Client(url, key_id, secret) as client:
        try:
            yield client
        except ExchangeError as error:
            raise ValueError(f"live (the exchange at {url} holds {settings.data_dir}): {error}") from None


def _offline_only(settings: Settings, what: str) -> None:
    url = live_api(settings.data_dir)
    if url is not None:
        raise ValueError(f"the exchange at {url} is serving {settings.data_dir}: `exchange {what}` needs the data "
                         "directory to itself; stop the server (SIGTERM) and run it again")


def _check_reference(reference: str | None) -> None:
    if reference is not None and not IDEMPOTENCY_KEY_RE.match(reference):
        raise ValueError(f"--reference {reference!r}: 1 to 64 of A-Z a-z 0-9 . _ : - (it travels as the request's "
                         "Idempotency-Key)")


def _core_reference(settings: Settings, reference: str | None) -> str | None:
    """The reference as the core sees it: scoped by the operator key, as the API scopes an Idempotency-Key,
    so a move made live and retried offline (or the other way) is still recognised."""
    if reference is None:
        return None
    try:
        key_id, _ = operator_credentials(settings.data_dir)
    except ValueError:
        return reference
    return f"{key_id}:{reference}"


def settings_cash(settings: Settings, account_id: int) -> int:
    """An account's cash from the data directory's store (after an offline command, it is caught up)."""
    store = _store(settings)
    try:
        return store.balances().get(account_id, 0)
    finally:
        store.close()


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
            if live_api(settings.data_dir) is not None:
                console().print(f"{settings.data_dir}: served by a running exchange, which lists the calendar's "
                                "series itself: nothing to do")
                return
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
            settings = _settings(data)
            with _live(settings) as client:
                if client is not None:
                    client.create_account(account_id)
                    console().print(f"account {account_id} created (live)")
                    return
            (events,) = submit_all(settings, [CreateAccount(account_id)])
            if (why := _refused(events)) is not None:
                raise ValueError(f"offline: {why}")
            console().print(f"account {account_id} created")

    # A negative amount must reach the command (and be refused with a reason), not read as an option.
    @app.command(context_settings={"ignore_unknown_options": True})
    def deposit(account_id: int, amount_usd: str, reference: ReferenceOption = None, data: DataOption = None) -> None:
        """Credit USD to an account (exact decimal, e.g. 2500.00)."""
        with errors():
            move_cash(Deposit, account_id, amount_usd, reference, data)

    @app.command(context_settings={"ignore_unknown_options": True})
    def withdraw(account_id: int, amount_usd: str, reference: ReferenceOption = None, data: DataOption = None) -> None:
        """Pay USD out of an account; refused if what is left would not cover its margin."""
        with errors():
            move_cash(Withdraw, account_id, amount_usd, reference, data)

    def move_cash(kind: type[Deposit] | type[Withdraw], account_id: int, amount_usd: str, reference: str | None,
                  data: Path | None) -> None:
        """A deposit or withdrawal, live through the server holding the directory, else offline."""
        settings = _settings(data)
        micros = _positive_usd(amount_usd)
        _check_reference(reference)
        with _live(settings) as client:
            if client is not None:
                send = client.deposit if kind is Deposit else client.withdraw
                answer = send(account_id, str(micros_to_usd(micros)), idempotency_key=reference)
                console().print(f"account {account_id}: cash {answer['cash']} USD (live)")
                return
        (events,) = submit_all(settings, [kind(account_id, micros, _core_reference(settings, reference))])
        if (why := _refused(events)) is not None:
            raise ValueError(f"offline: {why}")
        if isinstance(events[-1], CashMoveDuplicate):
            console().print(f"account {account_id}: reference {reference} was already used for this move "
                            f"(nothing moved); cash {micros_to_usd(settings_cash(settings, account_id))} USD")
            return
        console().print(f"account {account_id}: cash {micros_to_usd(events[-1].balance_micros)} USD")

    @app.command()
    def book(symbol: str, depth: int = 10, data: DataOption = None) -> None:
        """The order book of a series, best prices first."""
        with errors():
            settings = _settings(data)
            bids: list[tuple[str, int, int]]
            asks: list[tuple[str, int, int]]
            with _live(settings) as client:
                if client is not None:
                    answer = client.order_book(symbol, depth=max(1, min(depth, 500)))
                    bids = [(str(p), int(n), int(k)) for p, n, k in answer["bids"]]
                    asks = [(str(p), int(n), int(k)) for p, n, k in answer["asks"]]
            if client is None:
                with _service(settings) as service:
                    assert service.engine is not None
                    series = service.engine.series.get(symbol)
                    if series is None:
                        raise ValueError(f"offline: no listed series {symbol!r}")
                    tick = series.spec.tick_micros
                    bids = [(str(ticks_to_price(p, tick)), n, k) for p, n, k in series.book.levels(BUY)[:depth]]
                    asks = [(str(ticks_to_price(p, tick)), n, k) for p, n, k in series.book.levels(SELL)[:depth]]
            table = Table(title=f"{symbol} (USD per GPU-hour)", box=box.SIMPLE)
            for column in ("bid orders", "bid lots", "bid", "ask", "ask lots", "ask orders"):
                table.add_column(column, justify="right")
            for i in range(max(len(bids), len(asks))):
                bid = bids[i] if i < len(bids) else None
                ask = asks[i] if i < len(asks) else None
                table.add_row(str(bid[2]) if bid else "", str(bid[1]) if bid else "", bid[0] if bid else "",
                              ask[0] if ask else "", str(ask[1]) if ask else "", str(ask[2]) if ask else "")
            console().print(table)

    @app.command()
    def positions(account_id: int, data: DataOption = None) -> None:
        """An account's cash, required margin and positions."""
        with errors():
            settings = _settings(data)
            with _live(settings) as client:
                view = client.account_view(account_id) if client is not None else None
            if view is None:
                with _service(settings) as service:
                    assert service.engine is not None
                    view = _account_view(service.engine, account_id)
            out = console()
            out.print(f"account {account_id}: cash {view['cash']} USD, initial margin {view['initial_margin']} USD, "
                      f"open orders {view['open_orders']}")
            table = Table(box=box.SIMPLE)
            for column in ("series", "position lots", "average entry", "open buy lots", "open sell lots"):
                table.add_column(column, justify="right")
            for p in view["positions"]:
                table.add_row(p["symbol"], str(p["position_lots"]), p["average_entry"] or "", str(p["open_buy_lots"]),
                              str(p["open_sell_lots"]))
            out.print(table)

    @app.command()
    def replay(verify: Annotated[bool, typer.Option("--verify", help="rebuild and compare state hashes")] = False,
               data: DataOption = None) -> None:
        """Rebuild the core from the journal (from scratch and from snapshot + tail) and compare hashes."""
        with errors():
            settings = _settings(data)
            _offline_only(settings, "replay")
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
            _offline_only(settings, "recover")
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
        with errors():
            settings = _settings(data)
            with _live(settings) as client:
                answer = client.account_ledger(account_id, limit=max(1, min(limit, 500))) if client else None
            if answer is None:
                with _service(settings) as service:
                    assert isinstance(service.projector, Store)
                    rows = [(r.seq, r.kind, r.from_account, r.to_account, micros_to_usd(r.amount_micros))
                            for r in service.projector.ledger(account_id, limit=limit)]
                    balance_micros = service.projector.balances().get(account_id)
                    if balance_micros is None:
                        raise ValueError(f"offline: no ledger account {account_id}")
                    balance = micros_to_usd(balance_micros)
            else:
                rows = [(r["seq"], r["kind"], r["from"], r["to"], Decimal(r["amount"])) for r in answer["items"]]
                balance = Decimal(answer["balance"])
            table = Table(title=f"ledger of {account_id}", box=box.SIMPLE)
            for column in ("seq", "kind", "from", "to", "amount USD"):
                table.add_column(column, justify="right")
            for seq, kind, source, target, amount in rows:
                signed = amount if target == account_id else -amount
                table.add_row(str(seq), kind, str(source), str(target), f"{signed:f}")
            console().print(table)
            console().print(f"balance {balance} USD")

    @app.command()
    def snapshot(data: DataOption = None) -> None:
        """Write a snapshot of the core now."""
        with errors():
            settings = _settings(data)
            with _live(settings) as client:
                if client is not None:
                    answer = client.request_snapshot()
                    console().print(f"the running exchange writes a snapshot at seq {answer['seq']} into "
                                    f"{answer['snapshot_dir']} (in the background)")
                    return
            with _service(settings) as service:
                console().print(f"wrote {service.snapshot_now()}")
