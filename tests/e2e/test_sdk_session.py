"""The SDK against a real `exchange serve` subprocess, on SQLite and on PostgreSQL.

Sync `Client`, `AsyncClient` and the WebSocket `OrderSession`: place, amend, partial fills between two
accounts, cancel; every kind of failure arrives as the documented `ExchangeError` subclass. And a
graceful shutdown under load: SIGTERM while requests are in flight, every request gets an answer or a
connection error, and after a restart every acknowledged order is there.

The first four tests share one server per backend (started on first use, kept for the test process);
each uses its own accounts and its own series, so they do not see each other's orders.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from exchange.client import (
    AsyncClient,
    AuthError,
    Client,
    ConflictError,
    ExchangeError,
    ForbiddenError,
    NetworkError,
    NotFoundError,
    OrderSession,
    RejectedConflictError,
    RejectedError,
    RejectedNotFoundError,
    RejectedValidationError,
    ValidationError,
)
from exchange.domain.spec import SeriesSpec
from exchange.testing.api_harness import Credentials, bootstrap
from exchange.testing.server_process import ServerProcess
from tests.e2e.conftest import CASH_MICROS, database_url_for, far_series, price_str

FUNDED = range(2, 10)      # accounts 2..9: $1bn each, read + trade
BROKE = (10, 11)           # no cash


@dataclass
class World:
    server: ServerProcess
    operator: Credentials
    traders: dict[int, Credentials]
    readonly: Credentials     # account 2, read scope only
    series: list[SeriesSpec]

    @property
    def url(self) -> str:
        return self.server.base_url

    def client(self, account_id: int, **options: Any) -> Client:
        credentials = self.traders[account_id]
        return Client(self.url, credentials.key_id, credentials.secret, **options)

    def async_client(self, account_id: int, **options: Any) -> AsyncClient:
        credentials = self.traders[account_id]
        return AsyncClient(self.url, credentials.key_id, credentials.secret, **options)


@contextmanager
def running_world(backend: str, tmp: Path) -> Iterator[World]:
    with database_url_for(backend) as database_url:
        server = ServerProcess(tmp / "data", database_url=database_url)
        accounts = [1, *FUNDED, *BROKE]
        credentials = bootstrap(
            server.settings, time.time_ns,
            deposits_micros={a: CASH_MICROS if a in FUNDED else 0 for a in accounts},
            keys=[(1, ["operator", "read", "trade"]), *((a, ["read", "trade"]) for a in accounts[1:]), (2, ["read"])])
        with server:
            yield World(server, credentials[0], {c.account_id: c for c in credentials[1:-1]}, credentials[-1],
                        far_series(4))


@pytest.fixture(scope="session")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, World], Path, ExitStack]]:
    """One running world per backend and test process, started on first use (pytest-xdist hands the
    tests of a module to its workers in any order, so a module-scoped server would restart often)."""
    with ExitStack() as stack:
        yield {}, tmp_path_factory.mktemp("sdk"), stack


@pytest.fixture
def world(backend: str, worlds: tuple[dict[str, World], Path, ExitStack]) -> World:
    cache, tmp, stack = worlds
    if backend not in cache:
        cache[backend] = stack.enter_context(running_world(backend, tmp / backend))
    return cache[backend]


def test_sync_client_place_partial_fill_amend_cancel(world: World) -> None:
    spec = world.series[0]
    symbol, ref = spec.symbol, spec.reference_price_ticks
    with world.client(2) as alice, world.client(3) as bob:
        assert alice.account()["account_id"] == 2
        ask = alice.place_order(symbol, "sell", 10, price=price_str(spec, ref), client_order_id="life-ask")
        assert (ask["status"], ask["remaining"], ask["price"], ask["client_order_id"]) == (
            "open", 10, price_str(spec, ref), "life-ask")
        assert alice.place_order(symbol, "sell", 10, price=price_str(spec, ref),
                                 client_order_id="life-ask")["id"] == ask["id"], "a retry is the same order"

        bid = bob.place_order(symbol, "buy", 4, price=price_str(spec, ref + 2))
        assert (bid["status"], bid["filled"], bid["remaining"]) == ("closed", 4, 0)
        assert Decimal(bid["average"]) == Decimal(price_str(spec, ref)), "trades print at the resting price"

        got = alice.get_order(order_id=ask["id"])
        assert (got["status"], got["filled"], got["remaining"]) == ("open", 4, 6)
        assert alice.get_order(client_order_id="life-ask")["id"] == ask["id"]

        smaller = alice.amend_order(client_order_id="life-ask", amount=3)
        assert (smaller["remaining"], smaller["cancelled"], smaller["amount"]) == (3, 3, 10)
        moved = alice.amend_order(order_id=ask["id"], price=price_str(spec, ref + 4))
        assert (moved["price"], moved["remaining"]) == (price_str(spec, ref + 4), 3)
        book = alice.order_book(symbol, depth=5)
        assert book["asks"][0][:2] == [price_str(spec, ref + 4), 3]

        # A second buyer lifts 1 of the 3 left: a second partial fill.
        second = bob.place_order(symbol, "buy", 1, price=price_str(spec, ref + 4), time_in_force="IOC")
        assert (second["status"], second["filled"]) == ("closed", 1)
        assert alice.get_order(order_id=ask["id"])["remaining"] == 2

        cancelled = alice.cancel_order(order_id=ask["id"])
        assert (cancelled["status"], cancelled["filled"], cancelled["remaining"]) == ("canceled", 5, 0)
        with pytest.raises(RejectedNotFoundError) as refused:
            alice.cancel_order(order_id=ask["id"])
        assert (refused.value.status, refused.value.code) == (404, "order_not_open")

        fills = bob.fills(symbol=symbol)["items"]
        assert sorted((f["side"], f["amount"], f["liquidity"]) for f in fills) == [
            ("buy", 1, "taker"), ("buy", 4, "taker")]
        assert {f["liquidity"] for f in alice.fills(symbol=symbol)["items"]} == {"maker"}
        assert [(p["symbol"], p["size"]) for p in bob.positions()["items"]] == [(symbol, 5)]
        assert [(p["symbol"], p["size"]) for p in alice.positions()["items"]] == [(symbol, -5)]
        balances = bob.balances()
        assert Decimal(balances["cash"]) < Decimal(CASH_MICROS) / 1_000_000, "the taker paid a fee"
        assert Decimal(balances["margin"]) > 0
        assert [o["id"] for o in alice.iter_orders("closed", symbol=symbol, page_size=1)] == [ask["id"]]
        assert alice.open_orders(symbol=symbol)["items"] == []


def test_failures_arrive_as_the_documented_exceptions(world: World) -> None:
    spec = world.series[1]
    symbol, ref = spec.symbol, spec.reference_price_ticks
    broke = world.traders[BROKE[0]]
    url = world.url
    with world.client(4) as carol, world.client(5) as dave, \
            Client(url, broke.key_id, broke.secret) as pauper, \
            Client(url, world.operator.key_id, world.operator.secret) as operator:
        with pytest.raises(RejectedConflictError) as margin:
            pauper.place_order(symbol, "buy", 1, price=price_str(spec, ref))
        assert (margin.value.status, margin.value.code) == (409, "insufficient_margin")
        assert isinstance(margin.value, ConflictError) and isinstance(margin.value, RejectedError)
        operator.deposit(BROKE[0], "1000000.00")
        assert pauper.place_order(symbol, "buy", 1, price=price_str(spec, ref))["status"] == "open"

        with pytest.raises(RejectedValidationError) as band:
            carol.place_order(symbol, "buy", 1, price=price_str(spec, ref * 2))
        assert (band.value.status, band.value.code) == (422, "price_outside_band")
        with pytest.raises(RejectedValidationError) as off_tick:
            carol.place_order(symbol, "buy", 1, price=price_str(spec, ref) + "1")
        assert off_tick.value.code == "invalid_price"
        with pytest.raises(RejectedNotFoundError) as unknown:
            carol.place_order("H100-M40-991231", "buy", 1, price=price_str(spec, ref))
        assert (unknown.value.status, unknown.value.code) == (404, "unknown_series")
        with pytest.raises(ValidationError) as invalid:
            carol.place_order(symbol, "buy", 0, price=price_str(spec, ref))
        assert (invalid.value.status, invalid.value.code) == (422, "validation_error")
        assert not isinstance(invalid.value, RejectedError)

        mine = carol.place_order(symbol, "buy", 2, price=price_str(spec, ref - 1), client_order_id="err-1")
        with pytest.raises(RejectedConflictError) as reused:
            carol.place_order(symbol, "buy", 3, price=price_str(spec, ref - 1), client_order_id="err-1")
        assert reused.value.code == "client_order_id_conflict"
        with pytest.raises(NotFoundError) as hidden:
            dave.get_order(order_id=mine["id"])
        assert (hidden.value.status, hidden.value.code) == (404, "not_found")
        assert not isinstance(hidden.value, RejectedError)
        with pytest.raises(RejectedNotFoundError):
            dave.cancel_order(order_id=mine["id"])
        assert carol.get_order(order_id=mine["id"])["status"] == "open", "another account cannot touch it"

        with Client(url, world.readonly.key_id, world.readonly.secret) as readonly:
            assert readonly.balances()["account_id"] == 2
            with pytest.raises(ForbiddenError) as scope:
                readonly.place_order(symbol, "buy", 1, price=price_str(spec, ref))
            assert scope.value.status == 403
        with Client(url, world.traders[4].key_id, "not-the-secret") as impostor, pytest.raises(AuthError) as auth:
            impostor.balances()
        assert auth.value.status == 401 and auth.value.code.startswith("auth_")
        with pytest.raises(ForbiddenError):
            carol.deposit(4, "1.00")

        # Idempotency-Key: the same request replays its answer; another request under the key is 409.
        first = carol.cancel_all(symbol=symbol, idempotency_key="err-cancel-all")
        assert carol.cancel_all(symbol=symbol, idempotency_key="err-cancel-all") == first == {"cancelled": 1}
        with pytest.raises(ConflictError) as conflict:
            carol.cancel_all(symbol=symbol, side="buy", idempotency_key="err-cancel-all")
        assert conflict.value.code == "idempotency_key_conflict"


def test_async_client_concurrent_orders(world: World) -> None:
    spec = world.series[2]
    symbol, ref = spec.symbol, spec.reference_price_ticks

    async def session() -> None:
        async with world.async_client(6) as erin, world.async_client(7) as frank:
            def bid(i: int) -> Any:
                return erin.place_order(symbol, "buy", 1, price=price_str(spec, ref - 1 - i % 5),
                                        client_order_id=f"async-{i}")

            bids = await asyncio.gather(*(bid(i) for i in range(20)))
            assert len({b["id"] for b in bids}) == 20 and {b["status"] for b in bids} == {"open"}
            again = await asyncio.gather(*(bid(i) for i in range(20)))
            assert [b["id"] for b in again] == [b["id"] for b in bids], "retries return the originals"

            sold = await frank.place_order(symbol, "sell", 7, type="market")
            assert (sold["status"], sold["filled"], sold["type"]) == ("closed", 7, "market")
            # Price priority, then time: the 4 bids at ref-1 fill, then 3 of the 4 at ref-2.
            left = [o async for o in erin.iter_orders("open", symbol=symbol, page_size=3)]
            assert len(left) == 13 and sum(o["remaining"] for o in left) == 13
            assert min(Decimal(o["price"]) for o in left) == Decimal(price_str(spec, ref - 5))
            assert max(Decimal(o["price"]) for o in left) == Decimal(price_str(spec, ref - 2))

            amended = await asyncio.gather(*(erin.amend_order(order_id=o["id"], price=price_str(spec, ref - 6))
                                             for o in left[:5]))
            assert {a["price"] for a in amended} == {price_str(spec, ref - 6)}
            assert await erin.cancel_all(symbol=symbol) == {"cancelled": 13}
            positions = await erin.positions()
            assert [(p["symbol"], p["size"]) for p in positions["items"]] == [(symbol, 7)]
            assert (await erin.open_orders(symbol=symbol))["items"] == []

    asyncio.run(session())


def test_order_session_over_websocket(world: World) -> None:
    spec = world.series[3]
    symbol, ref = spec.symbol, spec.reference_price_ticks
    maker, broke = world.traders[8], world.traders[BROKE[1]]

    async def session() -> None:
        async with await OrderSession.connect(world.server.ws_url, maker.key_id, maker.secret) as ws:
            asks = await asyncio.gather(*(ws.place(symbol, "sell", 2, price=price_str(spec, ref + 1 + i),
                                                   client_order_id=f"ws-{i}") for i in range(10)))
            assert len({a["id"] for a in asks}) == 10 and {a["status"] for a in asks} == {"open"}
            assert (await ws.place(symbol, "sell", 2, price=price_str(spec, ref + 1),
                                   client_order_id="ws-0"))["id"] == asks[0]["id"]
            smaller = await ws.amend(client_order_id="ws-0", amount=1)
            assert (smaller["remaining"], smaller["cancelled"]) == (1, 1)
            assert (await ws.get(order_id=asks[1]["id"]))["client_order_id"] == "ws-1"
            assert (await ws.cancel(order_id=asks[1]["id"]))["status"] == "canceled"
            with pytest.raises(RejectedNotFoundError) as gone:
                await ws.cancel(order_id=asks[1]["id"])
            assert gone.value.code == "order_not_open"
            with pytest.raises(RejectedValidationError) as band:
                await ws.place(symbol, "buy", 1, price=price_str(spec, ref * 2))
            assert band.value.code == "price_outside_band"

            # Another account takes the best ask over REST; the WebSocket sees the fill.
            async with world.async_client(9) as taker:
                taken = await taker.place_order(symbol, "buy", 1, price=price_str(spec, ref + 1),
                                                time_in_force="IOC")
            assert (taken["status"], taken["filled"]) == ("closed", 1)
            assert (await ws.get(client_order_id="ws-0"))["status"] == "closed"

            armed = await ws.cancel_all_after(60)
            assert armed["deadline_ns"] > time.time_ns()
            assert (await ws.cancel_all_after(0))["deadline_ns"] is None
            assert await ws.cancel_all(symbol=symbol) == {"cancelled": 8}

        async with await OrderSession.connect(world.url, broke.key_id, broke.secret) as poor:
            with pytest.raises(RejectedConflictError) as margin:
                await poor.place(symbol, "buy", 1, price=price_str(spec, ref))
            assert margin.value.code == "insufficient_margin"
        with pytest.raises(AuthError):
            await OrderSession.connect(world.url, maker.key_id, "not-the-secret")

    asyncio.run(session())


# -- graceful shutdown -------------------------------------------------------------------------------

@dataclass
class Outcome:
    account_id: int
    client_order_id: str
    sent_s: float
    done_s: float
    order_id: str | None = None            # acknowledged
    error: ExchangeError | None = None     # an answer (status > 0) or no answer (NetworkError)


async def _flood_until_gone(server: ServerProcess, traders: list[Credentials], spec: SeriesSpec,
                            sigterm_after_acks: int, workers_per_client: int = 4) -> tuple[list[Outcome], float]:
    """Every trader's workers place non-crossing orders back to back (each waits for its answer) until
    the server stops answering; SIGTERM goes out once `sigterm_after_acks` orders were acknowledged,
    so requests are in flight when it arrives. Returns every outcome and the time of the SIGTERM."""
    ref = spec.reference_price_ticks
    outcomes: list[Outcome] = []
    sigterm_s = 0.0
    acks = 0

    async def worker(client: AsyncClient, account_id: int, index: int) -> None:
        nonlocal sigterm_s, acks
        for n in range(5_000):
            side = "buy" if (index + n) % 2 else "sell"
            ticks = ref - 1 - n % 5 if side == "buy" else ref + 1 + n % 5
            outcome = Outcome(account_id, f"drain-{account_id}-{index}-{n}", time.monotonic(), 0.0)
            outcomes.append(outcome)
            try:
                order = await client.place_order(spec.symbol, side, 1, price=price_str(spec, ticks),
                                                 client_order_id=outcome.client_order_id)
                outcome.order_id = order["id"]
            except ExchangeError as error:   # anything else is a bug and fails the test
                outcome.error = error
            outcome.done_s = time.monotonic()
            if outcome.order_id is not None:
                acks += 1
                if acks >= sigterm_after_acks and not sigterm_s:
                    sigterm_s = time.monotonic()
                    assert server.process is not None
                    server.process.send_signal(signal.SIGTERM)
            if isinstance(outcome.error, NetworkError):
                return
        raise AssertionError("the server kept answering after SIGTERM")

    clients = [AsyncClient(server.base_url, t.key_id, t.secret, max_retries=0, timeout=60.0) for t in traders]
    try:
        async with asyncio.timeout(180):
            await asyncio.gather(*(worker(client, trader.account_id, i)
                                   for client, trader in zip(clients, traders, strict=True)
                                   for i in range(workers_per_client)))
    finally:
        for client in clients:
            await client.aclose()
    return outcomes, sigterm_s


def test_sigterm_drains_requests_in_flight_and_keeps_every_acknowledged_order(backend: str,
                                                                               tmp_path: Path) -> None:
    spec = far_series(1)[0]
    with database_url_for(backend) as database_url:
        server = ServerProcess(tmp_path / "data", database_url=database_url,
                               settings={"shutdown_drain_s": 30, "submit_timeout_s": 60})
        traders = bootstrap(server.settings, time.time_ns, deposits_micros={a: CASH_MICROS for a in (1, 2, 3)},
                            keys=[(a, ["read", "trade"]) for a in (1, 2, 3)])
        with server:
            outcomes, sigterm_s = asyncio.run(_flood_until_gone(server, traders, spec, sigterm_after_acks=60))
            server.terminate()
            assert server.shut_down_cleanly(), server.log_tail()

            acked = [o for o in outcomes if o.order_id is not None]
            unanswered = [o for o in outcomes if isinstance(o.error, NetworkError)]
            answered_errors = [o for o in outcomes if o.error is not None and not isinstance(o.error, NetworkError)]
            assert len(acked) >= 60
            assert not [o for o in outcomes if o.error is None and o.order_id is None]
            # Before the SIGTERM everything is acknowledged; after it, a request is answered (an order, or
            # 503 "not accepting commands" once the sequencer is stopping) or refused at the connection.
            assert all(o.error is None for o in outcomes if o.done_s < sigterm_s), \
                [str(o.error) for o in outcomes if o.done_s < sigterm_s and o.error is not None]
            assert {o.error.code for o in answered_errors if o.error is not None} <= {"service_unavailable"}
            drained = [o for o in acked if o.sent_s < sigterm_s < o.done_s]
            assert drained, "no request that was in flight at the SIGTERM was answered"

            server.start()
            with Client(server.base_url, traders[0].key_id, traders[0].secret) as probe:
                assert probe.ready()["journal_seq"] == probe.ready()["projected_seq"]
            sent_by_account: dict[int, set[str]] = {t.account_id: set() for t in traders}
            for o in outcomes:
                sent_by_account[o.account_id].add(o.client_order_id)
            for trader in traders:
                with Client(server.base_url, trader.key_id, trader.secret) as client:
                    for o in acked:
                        if o.account_id == trader.account_id:
                            order = client.get_order(client_order_id=o.client_order_id)
                            assert (order["id"], order["status"]) == (o.order_id, "open"), o
                    found_unanswered = set()
                    for o in unanswered:
                        if o.account_id == trader.account_id:
                            try:
                                client.get_order(client_order_id=o.client_order_id)
                                found_unanswered.add(o.client_order_id)
                            except NotFoundError:
                                pass
                    stored = [o["client_order_id"] for o in client.iter_orders("all", page_size=500)]
                    assert len(stored) == len(set(stored))
                    acked_here = {o.client_order_id for o in acked if o.account_id == trader.account_id}
                    assert set(stored) == acked_here | found_unanswered
                    assert set(stored) <= sent_by_account[trader.account_id]
