"""The FastAPI application: `create_app(settings)`.

Start-up (the lifespan) opens the store (migrating it), recovers the durable service from the data
directory, starts the sequencer and lists any calendar series not yet listed; only then does `/ready`
answer 200 and commands get through. Shut-down stops taking commands, lets uvicorn finish the requests
in flight (`shutdown_drain_s`), then stops the sequencer, which commits what it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from exchange.api import asyncapi, openapi, server_file
from exchange.api.errors import install_error_handlers
from exchange.api.metrics import Metrics
from exchange.api.middleware import EdgeMiddleware
from exchange.api.quota import RateLimitHeaders
from exchange.api.ratelimit import RateLimits
from exchange.api.routes import account, admin, health, jobs, market, orders, settlement, statements, ws_orders
from exchange.api.runtime import Runtime
from exchange.api.schemas import ErrorOut
from exchange.catalog import Catalog, load_catalog
from exchange.catalog.nearest import nearest_series
from exchange.demo_market import DemoConfig, start_demo, stop_demo
from exchange.domain.commands import CreateAccount, ListSeries
from exchange.domain.events import Rejected
from exchange.jobs.scheduler import Scheduler
from exchange.live_server import OPERATOR_KEY_FILE
from exchange.service.exchange_service import ExchangeService, ServiceConfig
from exchange.settings import Settings
from exchange.signing import derive_secret
from exchange.store import Store

log = logging.getLogger(__name__)

DOCS_ASSETS_URL = "/docs-assets"
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorOut, "description": description} for status, description in (
        (400, "malformed request"), (401, "missing or bad signature"), (403, "the key lacks the scope"),
        (404, "not found (or not yours)"), (409, "conflicts with the current state"),
        (413, "body too large"), (422, "invalid input"), (429, "rate limited (see Retry-After)"),
        (503, "unavailable or outcome unknown: retry idempotently (see Retry-After)"),
    )
}


def create_app(settings: Settings | None = None, *, catalog: Catalog | None = None,
               clock_ns: Callable[[], int] = time.time_ns, list_calendar: bool = True,
               demo: bool | DemoConfig = False, gateway_url: str | None = None, banner: bool = False,
               scheduler: bool = False) -> FastAPI:
    """`demo` (True or a DemoConfig) runs the live demo market (exchange/demo_market.py) once ready.
    `gateway_url`: the supervised feed gateway, which `/ready` requires to be ready too. `banner`: say
    where everything is, for a person, once ready. `scheduler`: run the settlement calendar
    (exchange/jobs/scheduler.py), whose jobs are clients of this server at settings.host:port."""
    settings = settings or Settings()
    catalog = catalog or load_catalog()
    metrics = Metrics()
    offset_ns = settings.clock_offset_s * 1_000_000_000

    def exchange_clock_ns() -> int:
        """The market's time (the sequencer's, the calendar's): the clock shifted by `clock_offset_s`
        (0 but in drills). Signatures and rate limits keep the machine's clock, as clients do."""
        return clock_ns() + offset_ns

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(settings.store_url())
        store.migrate()
        config = ServiceConfig(settings.data_dir, limits=catalog.rules.engine_limits(),
                               snapshot_every_commands=settings.snapshot_every_commands,
                               audit_every_commands=settings.audit_every_commands, projection_thread=True)
        service = ExchangeService(config, store, exchange_clock_ns)
        settings.load_probe_key(create=True)   # the exchange owns the probe key: made here on first start
        runtime = Runtime(settings, catalog, store, service, settings.load_master_key(), metrics,
                          RateLimits.from_settings(settings), clock_ns, gateway_url=gateway_url,
                          exchange_clock_ns=exchange_clock_ns)
        app.state.runtime = runtime
        report = service.open()
        log.info("recovered to seq %d (snapshot %d, %d replayed)", report.journal_seq, report.snapshot_seq,
                 report.replayed)
        assert service.engine is not None
        await service.start()
        demo_task: asyncio.Task[None] | None = None
        calendar: Scheduler | None = None
        listing_task: asyncio.Task[None] | None = None
        try:
            if list_calendar:
                await _list_calendar(runtime)
            await _first_operator_key(runtime, keep=banner or scheduler)
            runtime.ready = True
            if demo:
                app.state.demo_market, demo_task = start_demo(runtime, demo if isinstance(demo, DemoConfig) else None)
            if banner:
                server_file.announce(settings.data_dir, f"http://{settings.host}:{settings.port}", gateway_url)
                print_banner(runtime, demo if isinstance(demo, DemoConfig) else DemoConfig() if demo else None)
            if list_calendar:   # the calendar rolls daily: new series are listed as their time comes
                listing_task = asyncio.create_task(_keep_listing(runtime), name="calendar-listing")
            if scheduler:
                calendar = Scheduler(settings, store, lambda: runtime.engine, catalog.rules, exchange_clock_ns,
                                     _local_url(settings), metrics)
                calendar.start()
            yield
        finally:
            if listing_task is not None:
                listing_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listing_task
            if calendar is not None:
                await calendar.stop()
            if banner:
                server_file.withdraw(settings.data_dir)
            if demo_task is not None:
                await stop_demo(demo_task)
            runtime.ready = False
            await service.stop()
            store.close()

    # FastAPI's own /docs and /redoc load their scripts from a CDN, so offline they are blank pages:
    # fastapi-offline serves the same Swagger UI and ReDoc from its package (under /docs-assets).
    app = FastAPIOffline(title="GPU compute futures exchange", version="1", lifespan=lifespan,
                         responses=ERROR_RESPONSES, description=API_DESCRIPTION,
                         generate_unique_id_function=openapi.operation_id, static_url=DOCS_ASSETS_URL)
    install_error_handlers(app)
    for module in (health, market, orders, account, settlement, statements, admin, jobs, ws_orders):
        app.include_router(module.router)
    app.add_middleware(EdgeMiddleware, body_bytes_max=settings.request_body_bytes_max, metrics=metrics,
                       large_bodies=(("/v1/admin/commands", settings.command_body_bytes_max),
                                     ("/v1/admin/telemetry/", settings.telemetry_upload_bytes_max)))
    app.add_middleware(RateLimitHeaders)   # outermost, so that the edge's own errors (413, 500) carry them too
    openapi.install(app)
    asyncapi.install(app)
    return app


API_DESCRIPTION = """GPU-hour futures graded by MFU: one lot is `gpus_per_lot` GPUs for every hour of the delivery
period, priced in USD per GPU-hour on a tick grid.

- **Units**: prices and cash are decimal strings (JSON numbers are refused, so values stay exact), lots are
  integers, times are integer nanoseconds since the epoch (UTC).
- **Signed requests**: three headers, `EX-ACCESS-KEY`, `EX-ACCESS-TIMESTAMP` (seconds, up to 6 decimals) and
  `EX-ACCESS-SIGN` = base64(HMAC-SHA256(secret, timestamp + METHOD + path with query
  [+ "\\nIdempotency-Key:" + key + "\\n"] + body)); an acting signature is accepted once (`auth_replayed`).
- **Errors**: always `{"code", "message", "details"}`; `details` carries the numbers (band, tick, nearest valid
  prices, required and available margin; `errors[]` per field for schema violations).
- **Pages**: `limit` and an opaque `cursor`; trades and fills are newest first with `next_cursor` (older) and
  `prev_cursor` (newer), and `since`/`until`.
- **Rate limits**: every response carries `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`;
  429 adds `Retry-After`.
- **WebSockets**: order entry at `/v1/ws/orders` (this server) and market data at `/v1/ws/market` (the feed
  gateway) are described by the AsyncAPI document at `/asyncapi.json`.
"""



def _local_url(settings: Settings) -> str:
    """This server's API as a process on the same machine reaches it."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.host, settings.host)
    return f"http://[{host}]:{settings.port}" if ":" in host else f"http://{host}:{settings.port}"


def print_banner(runtime: Runtime, demo: DemoConfig | None) -> None:
    """A few lines on stdout for the person who ran `exchange serve` (the log is JSON on stderr)."""
    settings = runtime.settings
    api = f"http://{settings.host}:{settings.port}"
    lines = [f"exchange ready: data directory {settings.data_dir}",
             f"  API          {api}  (docs {api}/docs, contract {api}/openapi.json and {api}/asyncapi.json)"]
    if runtime.gateway_url is not None:
        feed = runtime.gateway_url.replace("http://", "ws://")
        lines.append(f"  market data  {feed}/v1/ws/market  (book: {runtime.gateway_url}/v1/series/SYMBOL/book)")
    key = settings.data_dir / OPERATOR_KEY_FILE
    if key.exists():
        lines.append(f"  operator key {key}  (key_id and secret of account 1, every scope)")
    if demo is not None:
        engine = runtime.engine
        now = runtime.exchange_clock_ns()
        specs = [s.spec for s in engine.series.values() if not s.halted and not s.terminated]
        chosen = [n.symbol for p in demo.products if (n := nearest_series(specs, p, now, daily_only=True))]
        lines.append(f"  demo market  trades {', '.join(chosen) or 'nothing yet'}  (--no-demo turns it off; "
                     "the nearest series of a product: exchange series --product H100-M40 --nearest)")
    print("\n".join(lines), flush=True)


async def _first_operator_key(runtime: Runtime, keep: bool) -> None:
    """Keep <data>/operator-key.json (mode 0600) holding a live key with the `operator` scope: the way in
    for the first session, and the key local operator commands and the scheduler's jobs use.

    On a brand-new exchange (no API key at all) it opens account 1 for the operator with every scope.
    Later, if the file is gone or its key revoked, a key with just `operator` is made for the lowest
    account (delete the file and revoke the key to rotate it; the next start writes a new one)."""
    path = runtime.settings.data_dir / OPERATOR_KEY_FILE
    try:
        current = json.loads(path.read_text())
        row = runtime.store.api_key(str(current["key_id"]))
        if row is not None and row.revoked_ts_ns is None and "operator" in row.scopes:
            return
    except (OSError, ValueError, KeyError, TypeError):
        pass
    first = not runtime.store.api_key_count()
    if not first and not keep:   # an app in a test, not `exchange serve`: nothing relies on the file
        return
    accounts = runtime.engine.accounts
    account_id = 1 if first or not accounts else min(accounts)
    scopes = ["operator", "read", "trade"] if first else ["operator"]
    if account_id not in accounts:
        # Straight to the service: `runtime.submit` refuses commands until the app is ready.
        refused = [e for e in await runtime.service.submit(CreateAccount(account_id)) if isinstance(e, Rejected)]
        if refused:
            raise RuntimeError(f"cannot open the operator's account {account_id}: {refused[0].message}")
    key_id, secret = runtime.store.create_api_key(account_id, scopes, runtime.clock_ns(),
                                                  lambda key_id: derive_secret(runtime.master_key, key_id))
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"account_id": account_id, "key_id": key_id, "secret": secret, "scopes": scopes}, out, indent=2)
    os.replace(temporary, path)
    log.warning("%s: operator API key %s written to %s", "first start" if first else "no live operator key",
                key_id, path)


async def _keep_listing(runtime: Runtime) -> None:
    """List the calendar's new series while the exchange runs (it rolls daily: a daily series is listed
    days ahead; without this an exchange up for a week would stop listing new ones)."""
    while True:
        await asyncio.sleep(runtime.settings.calendar_poll_s)
        try:
            await _list_calendar(runtime)
        except asyncio.CancelledError:
            raise
        except Exception:   # listing is retried at the next poll; a failure must not end the loop
            log.exception("listing the calendar's series failed")


async def _list_calendar(runtime: Runtime) -> None:
    """List the calendar's series that are due now and not yet listed (the calendar rolls daily)."""
    listed = set(runtime.engine.series)
    wanted = [ListSeries(spec) for spec in runtime.catalog.listed_series(runtime.exchange_clock_ns())
              if spec.symbol not in listed]
    # Submitted together so that they share group commits (hundreds of fsyncs otherwise).
    await asyncio.gather(*(runtime.service.submit(command) for command in wanted))
