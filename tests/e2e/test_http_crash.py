"""Crash under load through the HTTP API: kill -9 of a real `exchange serve`, restart, retry, check.

Per seed: several SDK clients (AsyncClient, each with its own account and API key) send a seeded
random flow of limit, IOC and market orders (each with an explicit client order id), cancels and
amends (each with an Idempotency-Key), several requests in flight per client, and record every
answer. After a random number of answers the server's process group gets SIGKILL (the server and any
snapshot writer it forked). The server restarts on the same data directory and the clients send
every request that had no answer again, the same way (an order under its client order id, a cancel
or amend under its Idempotency-Key), until it is answered. Then:

- nothing acknowledged was lost: every accepted order is found by its client order id with the id it
  was acknowledged with, every acknowledged cancel left its order canceled, and every acknowledged
  command is in the journal;
- nothing was doubled: sending an accepted order again returns the original, each account's orders
  are exactly one per accepted client order id (in the store and in the core);
- the data directory, once the server has stopped, passes the checks of the service crash test
  (tests/service/test_crash_service.py): the recovered state hash equals a clean replay of the
  journal and `exchange replay --verify` agrees, the engine's audit passes, the ledger sums to zero,
  and the SQL store is an exact projection of the core.

CRASH_HTTP_SEEDS sets the number of seeds (default 5).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from exchange.catalog import load_catalog
from exchange.client import AsyncClient, ExchangeError, NetworkError, RetryPolicy, UnavailableError
from exchange.domain.commands import AmendOrder, CancelOrder, PlaceOrder
from exchange.domain.engine import Engine
from exchange.domain.spec import SeriesSpec
from exchange.domain.statehash import state_hash
from exchange.journal import read_entries
from exchange.service.exchange_service import ExchangeService, ServiceConfig, verify_replay
from exchange.service.sequencer import Sequenced
from exchange.store import Store
from exchange.testing.api_harness import Credentials, bootstrap
from exchange.testing.server_process import ServerProcess
from tests.e2e.conftest import CASH_MICROS, far_series, price_str
from tests.store.helpers import assert_matches_engine

CLIENTS = 4                  # accounts 1..4, one AsyncClient each
IN_FLIGHT = 3                # requests each client keeps in flight
OPS_PER_WORKER = 200         # a bound; the kill comes long before
ANSWERED_STATUSES = {200, 201, 404, 409, 422}   # what the flow may be answered (anything else is a bug)


def _seeds() -> list[int]:
    return list(range(1, 1 + int(os.environ.get("CRASH_HTTP_SEEDS", "5"))))


@dataclass
class Answer:
    status: int                        # 2xx, or the error's status
    body: dict[str, Any] | None = None
    code: str | None = None


@dataclass
class Request:
    account_id: int
    kind: Literal["place", "cancel", "amend"]
    client_order_id: str               # the order placed, or the order cancelled / amended
    args: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    answer: Answer | None = None       # before the crash (None: no answer)
    retry_answer: Answer | None = None # after the restart, for the unanswered

    @property
    def final(self) -> Answer | None:
        return self.answer or self.retry_answer


def _ok(answer: Answer | None) -> bool:
    return answer is not None and 200 <= answer.status < 300


async def _send(client: AsyncClient, request: Request) -> Answer | None:
    """One attempt (or, with a retrying client, one call): the answer, or None when there was none
    (no connection, no response, or 503: the outcome is unknown)."""
    try:
        if request.kind == "place":
            body = await client.place_order(**request.args, client_order_id=request.client_order_id)
        elif request.kind == "cancel":
            body = await client.cancel_order(client_order_id=request.client_order_id,
                                             idempotency_key=request.idempotency_key)
        else:
            body = await client.amend_order(client_order_id=request.client_order_id, **request.args,
                                            idempotency_key=request.idempotency_key)
    except (NetworkError, UnavailableError):
        return None
    except ExchangeError as error:
        return Answer(error.status, None, error.code)
    return Answer(200, body)


class Flow:
    """One client's seeded random requests: orders near the reference price, so they rest, cross,
    partially fill; cancels and amends of this client's earlier orders (open or not)."""

    def __init__(self, seed: int, account_id: int, series: list[SeriesSpec]) -> None:
        self.rng = random.Random(seed * 1_000 + account_id)
        self.account_id = account_id
        self.series = series
        self.seed = seed
        self.placed: list[str] = []
        self.symbol_of: dict[str, SeriesSpec] = {}
        self.count = 0

    def next(self) -> Request:
        rng, n = self.rng, self.count
        self.count += 1
        roll = rng.random()
        if self.placed and roll < 0.15:
            return Request(self.account_id, "cancel", rng.choice(self.placed),
                           idempotency_key=f"k{self.seed}-{self.account_id}-{n}")
        if self.placed and roll < 0.25:
            target = rng.choice(self.placed)
            spec = self.symbol_of[target]
            args: dict[str, Any] = {}
            if rng.random() < 0.6:
                args["price"] = price_str(spec, spec.reference_price_ticks + rng.randint(-6, 6))
            if not args or rng.random() < 0.5:
                args["amount"] = rng.randint(1, 5)
            return Request(self.account_id, "amend", target, args, f"k{self.seed}-{self.account_id}-{n}")
        spec = rng.choice(self.series)
        ref = spec.reference_price_ticks
        side = rng.choice(("buy", "sell"))
        kind = rng.random()
        if kind < 0.7:      # a limit order that usually rests (GTC), sometimes crosses
            args = {"price": price_str(spec, ref + rng.randint(-6, 4) * (1 if side == "buy" else -1)),
                    "amount": rng.randint(1, 5)}
        elif kind < 0.85:   # IOC at or through the touch
            args = {"price": price_str(spec, ref + rng.randint(0, 6) * (1 if side == "buy" else -1)),
                    "amount": rng.randint(1, 5), "time_in_force": "IOC"}
        else:               # protected market order
            args = {"type": "market", "amount": rng.randint(1, 3)}
        client_order_id = f"s{self.seed}-a{self.account_id}-{n}-{spec.symbol[:4]}"
        self.placed.append(client_order_id)
        self.symbol_of[client_order_id] = spec
        return Request(self.account_id, "place", client_order_id, {"symbol": spec.symbol, "side": side, **args})


async def _load_until_killed(server: ServerProcess, traders: list[Credentials], flows: list[Flow],
                             kill_after_answers: int, kill_delay_s: float) -> list[Request]:
    """Run every client's flow, IN_FLIGHT requests at a time, and SIGKILL the server once
    `kill_after_answers` requests were answered (plus `kill_delay_s`). Returns every request sent."""
    requests: list[Request] = []
    answered = 0
    enough = asyncio.Event()
    killed = False

    async def worker(client: AsyncClient, flow: Flow) -> None:
        nonlocal answered
        for _ in range(OPS_PER_WORKER):
            if killed:
                return
            request = flow.next()
            requests.append(request)
            request.answer = await _send(client, request)
            if request.answer is not None and not killed:
                answered += 1
                if answered >= kill_after_answers:
                    enough.set()

    async def killer() -> None:
        nonlocal killed
        with contextlib.suppress(TimeoutError):  # a very slow machine: kill anyway
            await asyncio.wait_for(enough.wait(), timeout=120)
        await asyncio.sleep(kill_delay_s)
        server.kill9()
        killed = True

    clients = [AsyncClient(server.base_url, t.key_id, t.secret, max_retries=0, timeout=60.0) for t in traders]
    try:
        tasks = [asyncio.create_task(worker(client, flow)) for client, flow in zip(clients, flows, strict=True)
                 for _ in range(IN_FLIGHT)]
        await killer()
        await asyncio.gather(*tasks)
    finally:
        for client in clients:
            await client.aclose()
    return requests


async def _retry_unanswered(server: ServerProcess, traders: list[Credentials], requests: list[Request]) -> None:
    """After the restart: every request without an answer, sent again until it is answered."""
    policy = RetryPolicy(max_retries=60, backoff_base_s=0.05, backoff_max_s=1.0)

    async def resend(trader: Credentials) -> None:
        async with AsyncClient(server.base_url, trader.key_id, trader.secret, timeout=60.0,
                               retry_policy=policy) as client:
            for request in requests:
                if request.account_id == trader.account_id and request.answer is None:
                    request.retry_answer = await _send(client, request)
                    assert request.retry_answer is not None, f"no answer after the restart: {request}"

    await asyncio.gather(*(resend(trader) for trader in traders))


async def _check_through_the_api(server: ServerProcess, traders: list[Credentials], requests: list[Request],
                                 rng: random.Random) -> dict[int, dict[str, str]]:
    """Nothing lost, nothing doubled, as a client sees it; returns the accepted orders of each account
    (client order id -> order id)."""
    accepted: dict[int, dict[str, str]] = {t.account_id: {} for t in traders}
    for request in requests:
        answer = request.final
        assert answer is not None
        assert answer.status in ANSWERED_STATUSES, f"unexpected answer {answer} to {request}"
        if request.kind == "place" and _ok(answer):
            assert answer.body is not None
            accepted[request.account_id][request.client_order_id] = answer.body["id"]

    async def check(trader: Credentials) -> None:
        mine = accepted[trader.account_id]
        async with AsyncClient(server.base_url, trader.key_id, trader.secret, timeout=60.0) as client:
            slots = asyncio.Semaphore(8)

            async def look_up(client_order_id: str, order_id: str) -> None:
                async with slots:
                    order = await client.get_order(client_order_id=client_order_id)
                assert order["id"] == order_id, f"{client_order_id}: acknowledged as {order_id}, now {order}"

            await asyncio.gather(*(look_up(cid, order_id) for cid, order_id in mine.items()))
            places = [r for r in requests if r.account_id == trader.account_id and r.kind == "place"
                      and _ok(r.final)]
            for request in rng.sample(places, min(len(places), 25)):
                again = await client.place_order(**request.args, client_order_id=request.client_order_id)
                assert again["id"] == mine[request.client_order_id], f"a resent order was placed again: {request}"
            stored = [o async for o in client.iter_orders("all", page_size=500)]
        assert len(stored) == len({o["client_order_id"] for o in stored}), "a client order id maps to two orders"
        assert {o["client_order_id"]: o["id"] for o in stored} == mine, \
            "the account's orders are not exactly the accepted ones"
        status = {o["client_order_id"]: o["status"] for o in stored}
        for request in requests:
            if request.account_id == trader.account_id and request.kind == "cancel" and _ok(request.answer):
                assert status[request.client_order_id] == "canceled", f"acknowledged cancel lost: {request}"

    await asyncio.gather(*(check(trader) for trader in traders))
    return accepted


def _check_data_dir(server: ServerProcess, requests: list[Request], accepted: dict[int, dict[str, str]]) -> None:
    """The stopped server's data directory: the service crash test's checks, plus the journal holds
    every acknowledged command and the core's client order ids are exactly the accepted orders."""
    data = server.data_dir
    limits = load_catalog().rules.engine_limits()
    store = Store(server.settings.store_url())
    try:
        service = ExchangeService(ServiceConfig(data, limits=limits, snapshot_mode="inline"), store)
        report = service.open()
        engine = service.engine
        assert engine is not None
        service.close()

        journaled = [(e.command, e.ts_ns) for e in read_entries(data / "journal")]
        assert report.journal_seq == len(journaled)
        clean = Engine(limits)
        items = [Sequenced(seq, ts, clean.apply(command, ts)) for seq, (command, ts) in enumerate(journaled, 1)]
        assert state_hash(engine) == state_hash(clean), "recovered state differs from a clean replay"
        engine.audit()
        assert engine.ledger.total() == 0
        assert verify_replay(ServiceConfig(data, limits=limits)).ok
        assert_matches_engine(store, engine, items)
    finally:
        store.close()

    in_journal: set[tuple[str, int, str | None]] = set()
    for command, _ in journaled:
        if isinstance(command, PlaceOrder | CancelOrder | AmendOrder):
            kind = {PlaceOrder: "place", CancelOrder: "cancel", AmendOrder: "amend"}[type(command)]
            in_journal.add((kind, command.account_id, command.client_order_id))
    for request in requests:
        if _ok(request.answer):
            assert (request.kind, request.account_id, request.client_order_id) in in_journal, \
                f"acknowledged but not in the journal: {request}"
    for account_id, mine in accepted.items():
        in_core = {cid: str(order_id) for (account, cid), (_, order_id, _) in engine.client_orders.items()
                   if account == account_id}
        assert in_core == mine, f"account {account_id}: the core's client order ids differ from the accepted"


@pytest.mark.parametrize("seed", _seeds())
def test_kill_minus_nine_through_the_http_api_loses_and_doubles_nothing(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    series = far_series(2)
    server = ServerProcess(tmp_path / "data", settings={
        "snapshot_every_commands": rng.choice((50, 150, 400)), "audit_every_commands": 200,
        "submit_timeout_s": 60})
    accounts = list(range(1, CLIENTS + 1))
    traders = bootstrap(server.settings, time.time_ns, deposits_micros=dict.fromkeys(accounts, CASH_MICROS),
                        keys=[(a, ["read", "trade"]) for a in accounts])
    flows = [Flow(seed, account_id, series) for account_id in accounts]
    with server:
        requests = asyncio.run(_load_until_killed(server, traders, flows, kill_after_answers=rng.randint(20, 200),
                                                  kill_delay_s=rng.uniform(0, 0.03)))
        assert not server.alive
        unanswered = [r for r in requests if r.answer is None]
        restart_ns = time.time_ns()
        server.start()
        asyncio.run(_retry_unanswered(server, traders, requests))
        accepted = asyncio.run(_check_through_the_api(server, traders, requests, rng))
        server.terminate()
        assert server.shut_down_cleanly(), server.log_tail()
    _check_data_dir(server, requests, accepted)
    # What this seed exercised (pytest -s shows it): retried orders the crash had already journaled
    # came back as the original, the others were placed by the retry.
    retried_places = [r for r in unanswered if r.kind == "place" and _ok(r.retry_answer)]
    journaled_before = sum(1 for r in retried_places
                           if r.retry_answer and r.retry_answer.body and r.retry_answer.body["created_ns"] < restart_ns)
    print(f"seed {seed}: {len(requests)} requests, {len(requests) - len(unanswered)} answered before the kill, "
          f"{len(unanswered)} retried ({len(retried_places)} orders, {journaled_before} of them journaled before "
          f"the kill), {sum(map(len, accepted.values()))} orders in all")
