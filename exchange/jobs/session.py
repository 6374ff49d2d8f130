"""A running durable service on a data directory, for batch jobs and operator commands (they own the
directory while they run: its lock keeps them from racing a running server)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from exchange.catalog import Catalog
from exchange.service.exchange_service import DataDirLocked, ExchangeService, ServiceConfig
from exchange.settings import Settings
from exchange.store import Store


@asynccontextmanager
async def running_service(settings: Settings, catalog: Catalog,
                          clock_ns: Callable[[], int] = time.time_ns) -> AsyncIterator[ExchangeService]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.store_url())
    store.migrate()
    service = ExchangeService(ServiceConfig(settings.data_dir, limits=catalog.rules.engine_limits(),
                                            snapshot_every_commands=settings.snapshot_every_commands,
                                            snapshot_mode="inline",
                                            audit_every_commands=settings.audit_every_commands, deadline_poll_ms=0),
                              store, clock_ns)
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
