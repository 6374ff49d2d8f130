"""Everything a request handler needs, built once per app by the lifespan: settings, catalog, store,
the durable service (sequencer + core), rate limits, metrics. Handlers get it by dependency injection
(`get_runtime`) and talk to the core only through `submit` (commands) and read-only inspection."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from exchange.api.errors import ApiCode, ApiError, engine_refusal
from exchange.api.keyring import KeyRing
from exchange.api.metrics import Metrics
from exchange.api.ratelimit import RateLimits
from exchange.api.session_counts import SessionCounts
from exchange.catalog import Catalog
from exchange.domain.commands import Command
from exchange.domain.engine import Engine
from exchange.domain.events import Event, Rejected
from exchange.domain.spec import SeriesSpec
from exchange.service.exchange_service import ExchangeService
from exchange.service.projection_worker import ProjectionFailed
from exchange.service.sequencer import Sequenced, SequencerBusy, SequencerError
from exchange.settings import Settings
from exchange.store import Store
from exchange.store.store import ApiKeyRow

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    catalog: Catalog
    store: Store
    service: ExchangeService
    master_key: bytes
    metrics: Metrics
    limits: RateLimits
    clock_ns: Callable[[], int] = time.time_ns
    ready: bool = False
    in_flight_idempotency: set[tuple[str, str]] = field(default_factory=set)
    ws_sessions: SessionCounts = field(default_factory=SessionCounts)
    gateway_url: str | None = None   # the supervised feed gateway: /ready requires it ready too
    exchange_clock_ns: Callable[[], int] = time.time_ns   # the market's time (Settings.clock_offset_s)
    keyring: KeyRing = field(init=False)

    def __post_init__(self) -> None:
        self.keyring = KeyRing(self.store, self.master_key)

    @property
    def engine(self) -> Engine:
        engine = self.service.engine
        if engine is None:
            raise ApiError(503, ApiCode.SERVICE_UNAVAILABLE, "the exchange is starting", retry_after_s=1)
        return engine

    def spec(self, symbol: str) -> SeriesSpec:
        series = self.engine.series.get(symbol)
        if series is None:
            raise ApiError(404, ApiCode.NOT_FOUND, f"no listed series {symbol!r}")
        return series.spec

    # -- commands ----------------------------------------------------------------------------
    async def submit(self, command: Command) -> list[Event]:
        """Sequence, journal and apply one command; its events once durable. Sequencer trouble is 503."""
        return (await self.submit_sequenced(command)).events

    async def submit_sequenced(self, command: Command) -> Sequenced:
        """`submit`, with the command's journal seq and time."""
        if not self.ready:
            raise ApiError(503, ApiCode.SERVICE_UNAVAILABLE, "the exchange is not accepting commands",
                           retry_after_s=1)
        try:
            async with asyncio.timeout(self.settings.submit_timeout_s):
                result = await self.service.submit_sequenced(command)
                # Read-your-writes: answer once the store shows the command (the projection runs on its
                # own thread, so this waits without holding up anyone else).
                await self.service.wait_projected(result.seq)
                return result
        except SequencerBusy:
            raise ApiError(503, ApiCode.SERVICE_UNAVAILABLE, "the sequencer queue is full", retry_after_s=1) from None
        except (SequencerError, ProjectionFailed, TimeoutError) as error:
            # Outcome unknown (like a crash): the client retries with the same client order id / key. The
            # cause goes to the log, not to the client (public errors carry no exception text).
            log.warning("command outcome unknown: %r", error)
            raise ApiError(503, ApiCode.SERVICE_UNAVAILABLE, "the command's outcome is unknown: retry it the same "
                           "way (same client order id or Idempotency-Key)", retry_after_s=1) from None

    async def submit_checked(self, command: Command) -> list[Event]:
        """`submit`, raising the engine's refusal (if any) as an API error."""
        events = await self.submit(command)
        for event in events:
            if isinstance(event, Rejected):
                raise engine_refusal(event)
        return events

    def projected_seq(self) -> int:
        """The journal seq the SQL store has applied (the projector runs right after each commit)."""
        return self.store.last_seq()

    # -- API keys ----------------------------------------------------------------------------
    def api_key(self, key_id: str) -> ApiKeyRow | None:
        return self.keyring.api_key(key_id)

    def forget_key(self, key_id: str) -> None:
        self.keyring.forget(key_id)

    def secret(self, key_id: str) -> str:
        return self.keyring.secret(key_id)


async def get_runtime(connection: HTTPConnection) -> Runtime:
    """The app's runtime (async: a plain function dependency would cost a thread-pool hop per request)."""
    runtime: Runtime = connection.app.state.runtime
    return runtime
