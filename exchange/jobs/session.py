"""Where a settlement job runs: on a stopped exchange's data directory (offline: the job recovers the
core itself and owns the directory, its lock keeping a server out) or against a running exchange
(live: the job is a client).

Live, the job reads the state it plans from (accounts, series, settlements) from a read-only replica
of the core that follows the committed journal (`exchange.feeds.replica`, the one the feed gateway
runs), and submits its commands over the operator API (`POST /v1/admin/commands`), which answers once
each is durable, with its seq; the job then reads that command's events from the replica, which applies
the same journal record (so it sees exactly the outcome the exchange had). Before planning it submits
an `AdvanceTime` as a barrier: once that is durable, every command sequenced before the job began is
committed, so reading the journal up to the barrier sees all of them (a cut the job settles has passed
before it starts).

Both give the job the same `JobSession`: an engine to read, the journal to replay, `submit`, and the
store's statement archive. The same journal gives the same plans and digests in both modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from exchange.api.job_schemas import command_json
from exchange.catalog import Catalog
from exchange.domain.commands import AdvanceTime, Command
from exchange.domain.engine import Engine
from exchange.domain.events import Event
from exchange.live_server import announced_api, operator_credentials
from exchange.service.exchange_service import DataDirLocked, ExchangeService, ServiceConfig
from exchange.settings import Settings
from exchange.store import Store
from exchange.store.statement_archive import StatementArchive

REPLICA_WAIT_S_MAX = 60.0      # a durable command shows in the committed journal within this
REPLICA_POLL_S = 0.005


class JobSession(Protocol):
    mode: str                     # "offline" | "live"
    statements: StatementArchive
    until_seq: int | None         # live: replay the journal up to this seq (the barrier), offline: all of it

    @property
    def journal_dir(self) -> Path: ...

    @property
    def engine(self) -> Engine: ...

    async def submit(self, command: Command) -> list[Event]: ...


@dataclass
class OfflineSession:
    service: ExchangeService
    statements: StatementArchive
    mode: str = "offline"
    until_seq: int | None = None

    @property
    def journal_dir(self) -> Path:
        return self.service.config.journal_dir

    @property
    def engine(self) -> Engine:
        engine = self.service.engine
        assert engine is not None
        return engine

    async def submit(self, command: Command) -> list[Event]:
        return await self.service.submit(command)


class LiveSession:
    mode = "live"

    def __init__(self, data_dir: Path, catalog: Catalog, client: Any, statements: StatementArchive) -> None:
        from exchange.feeds.replica import Replica

        self._journal_dir = data_dir / "journal"
        self.client = client
        self.statements = statements
        self.replica = Replica(data_dir, catalog.rules.engine_limits())
        self.until_seq: int | None = None
        self._events: dict[int, list[Event]] = {}

    @property
    def journal_dir(self) -> Path:
        return self._journal_dir

    @property
    def engine(self) -> Engine:
        engine = self.replica.engine
        assert engine is not None
        return engine

    async def open(self) -> None:
        answer = await self.client.submit_command(command_json(AdvanceTime()))   # the barrier
        self.until_seq = int(answer["seq"])
        await asyncio.to_thread(self.replica.open)
        await self._follow(self.until_seq)

    async def submit(self, command: Command) -> list[Event]:
        answer = await self.client.submit_command(command_json(command))
        seq = int(answer["seq"])
        await self._follow(seq)
        events = self._events.pop(seq, None)
        assert events is not None, f"the replica passed seq {seq} without its events"
        return events

    async def _follow(self, seq: int) -> None:
        """Apply the committed journal up to at least `seq`, keeping the events of commands at or after it."""
        deadline = time.monotonic() + REPLICA_WAIT_S_MAX
        while self.replica.seq < seq:
            for item in await asyncio.to_thread(self.replica.poll):
                if item.seq >= seq:
                    self._events[item.seq] = item.events
            if self.replica.seq >= seq:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"seq {seq} was acknowledged durable but is not in the committed journal after "
                                   f"{REPLICA_WAIT_S_MAX:.0f} s (is --data the running exchange's directory?)")
            await asyncio.sleep(REPLICA_POLL_S)
        for old in [s for s in self._events if s < seq]:
            del self._events[old]

    def close(self) -> None:
        self.replica.close()


def yield_cpu(nice: int) -> None:
    """Run this process only on CPU time the exchange leaves (a job against a running exchange shares its
    machine): Linux's SCHED_IDLE class where available (it runs only when a core is otherwise idle),
    else `nice`. 0 leaves the priority alone."""
    if not nice:
        return
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(AttributeError, OSError):
            os.nice(nice)


def _owned_service(settings: Settings, catalog: Catalog,
                   clock_ns: Callable[[], int]) -> tuple[Store, ExchangeService]:
    """The store (migrated) and the service of a process that opens the data directory itself: snapshots
    written inline, no deadline task (time moves with the commands submitted). Not opened yet."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.store_url())
    store.migrate()
    service = ExchangeService(ServiceConfig(settings.data_dir, limits=catalog.rules.engine_limits(),
                                            snapshot_every_commands=settings.snapshot_every_commands,
                                            snapshot_mode="inline",
                                            audit_every_commands=settings.audit_every_commands, deadline_poll_ms=0),
                              store, clock_ns)
    return store, service


@asynccontextmanager
async def job_session(settings: Settings, catalog: Catalog, clock_ns: Callable[[], int] = time.time_ns,
                      url: str | None = None) -> AsyncIterator[JobSession]:
    """Offline if no server holds the data directory (and no `url`), else live against the server."""
    if url is None:
        store, service = _owned_service(settings, catalog, clock_ns)
        try:
            try:
                service.open()
            except DataDirLocked as error:
                url = announced_api(settings.data_dir)
                if url is None:
                    raise ValueError(f"{error}, which announced no API in {settings.data_dir}/server.json: pass "
                                     "--url of the running exchange, or stop it to run the job offline") from None
            else:
                await service.start()
                try:
                    yield OfflineSession(service, StatementArchive(store))
                finally:
                    await service.stop()
                return
        finally:
            service.close()
            store.close()
    async with _live(settings, catalog, url) as session:
        yield session


@asynccontextmanager
async def _live(settings: Settings, catalog: Catalog, url: str) -> AsyncIterator[LiveSession]:
    from exchange.client import AsyncClient
    from exchange.client.errors import ExchangeError

    key_id, secret = operator_credentials(settings.data_dir)
    yield_cpu(settings.job_nice)
    store = Store(settings.store_url())
    try:
        async with AsyncClient(url, key_id, secret, timeout=60.0, max_retries=8) as client:
            session = LiveSession(settings.data_dir, catalog, client, StatementArchive(store))
            try:
                try:
                    await session.open()
                except ExchangeError as error:
                    raise ValueError(f"tried the running exchange at {url}: {error}") from None
                yield session
            finally:
                session.close()
    finally:
        store.close()


@asynccontextmanager
async def running_service(settings: Settings, catalog: Catalog,
                          clock_ns: Callable[[], int] = time.time_ns) -> AsyncIterator[ExchangeService]:
    """The durable service on the data directory, owned by this process (tests, offline tools)."""
    store, service = _owned_service(settings, catalog, clock_ns)
    try:
        try:
            service.open()
        except DataDirLocked as error:
            raise ValueError(f"{error} (stop the server, or run the job where it owns the data)") from None
        await service.start()
        try:
            yield service
        finally:
            await service.stop()
    finally:
        service.close()
        store.close()
