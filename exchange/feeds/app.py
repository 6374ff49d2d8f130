"""The feed gateway: market data served by its own process, so that fan-out never costs the engine.

`create_feed_app(settings)` builds a FastAPI app that, in its lifespan, recovers a read-only replica
of the core from the data directory (`Replica`: newest snapshot + journal up to the commit marker),
builds the `FeedHub` on it, and runs the follower: every `POLL_INTERVAL_S` it reads the commit
marker, applies the newly committed records to the replica and hands the resulting batch to the hub,
which fans it out. The engine's only cost is the marker's 16-byte store per group commit, whatever
the number or speed of subscribers (issue 5's requirement); any number of gateways can follow one
data directory.

It serves `/v1/ws/market` (exchange/feeds/session.py), the book snapshot with its `book_seq` (the
same path as the API server's book, aligned with this gateway's feed), the index history, and
`/health`, `/ready`, `/metrics`. API keys for the private channel are checked against the same store
and master key as the API server.

If the follower fails (a damaged journal, a core exception), the gateway stops being ready and, as a
process (`exit_on_failure`), terminates itself so that its supervisor restarts it from the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from exchange.api import asyncapi
from exchange.api.errors import install_error_handlers
from exchange.api.keyring import KeyRing
from exchange.api.quota import RateLimitHeaders
from exchange.api.ratelimit import RateLimits
from exchange.catalog import Catalog, load_catalog
from exchange.feeds import routes
from exchange.feeds.context import FeedContext
from exchange.feeds.hub import FeedHub
from exchange.feeds.replica import POLL_RECORDS_MAX, Replica, ReplicaNotReady
from exchange.settings import Settings
from exchange.store import Store

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.001      # the marker is a memory read: polling it costs ~1% of a core
MARKER_WAIT_S = 0.1          # retry interval while the exchange has not yet created its marker
PARENT_CHECK_S = 1.0


def create_feed_app(settings: Settings | None = None, *, catalog: Catalog | None = None,
                    clock_ns: Callable[[], int] = time.time_ns, parent_pid: int | None = None,
                    exit_on_failure: bool = False) -> FastAPI:
    """`parent_pid`: exit when that process is gone (the gateway started by `exchange serve`)."""
    settings = settings or Settings()
    catalog = catalog or load_catalog()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        replica = Replica(settings.data_dir, catalog.rules.engine_limits())
        while True:
            try:
                engine = replica.open()
                break
            except ReplicaNotReady:
                await asyncio.sleep(MARKER_WAIT_S)
        store = Store(settings.store_url())
        hub = FeedHub(engine, clock_ns, queue_max=settings.feed_queue_messages_max)
        hub.seed(store.trades_between, replica.seq)
        context = FeedContext(settings, replica, hub, KeyRing(store, settings.load_master_key()),
                              RateLimits.from_settings(settings), clock_ns)
        app.state.context = context
        hub.start()
        follower = asyncio.create_task(_follow(context, parent_pid, exit_on_failure), name="feed-follower")
        try:
            yield
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            await hub.stop()
            replica.close()
            store.close()

    app = FastAPI(title="GPU compute futures exchange: market-data gateway", version="1", lifespan=lifespan,
                  description="Market-data feeds (/v1/ws/market), book snapshots aligned with them, index history.")
    install_error_handlers(app)
    app.include_router(routes.router)
    asyncapi.install(app)   # the same document as the API's: it describes both sockets
    app.add_middleware(RateLimitHeaders)
    return app


async def _follow(context: FeedContext, parent_pid: int | None, exit_on_failure: bool) -> None:
    replica, hub, metrics = context.replica, context.hub, context.metrics
    next_parent_check = time.monotonic() + PARENT_CHECK_S
    try:
        while True:
            batch = replica.poll()
            if batch:
                metrics.publish_delay.observe(max(0, context.clock_ns() - batch[0].ts_ns) / 1e9)
                hub.publish(batch)
                metrics.batches.inc()
                if len(batch) >= POLL_RECORDS_MAX:
                    await asyncio.sleep(0)   # catching up: let the sockets drain between chunks
                    continue
            await asyncio.sleep(POLL_INTERVAL_S)
            if parent_pid is not None and time.monotonic() >= next_parent_check:
                next_parent_check = time.monotonic() + PARENT_CHECK_S
                if os.getppid() != parent_pid:
                    log.warning("feed gateway: the exchange process %d is gone: stopping", parent_pid)
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
    except asyncio.CancelledError:
        raise
    except Exception as error:   # a damaged journal or a core exception: never serve a wrong book
        context.failure = error
        log.exception("feed gateway: following the journal failed at seq %d", replica.seq)
        if exit_on_failure:
            os.kill(os.getpid(), signal.SIGTERM)
