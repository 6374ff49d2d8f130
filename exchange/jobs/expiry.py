"""`exchange settle expiry --series SYMBOL`: turn a terminated, finally settled series' open positions
into deliveries (rulebook §7) through the core's `AssignDeliveries` (idempotent: a rerun changes
nothing and lists the deliveries made the first time). The daily job does this by itself for every
series whose trading terminated at the cut it settles."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from exchange.catalog import Catalog
from exchange.domain.commands import AssignDeliveries
from exchange.domain.engine import Delivery
from exchange.domain.events import DeliveriesAlreadyAssigned, DeliveriesAssigned, Rejected
from exchange.jobs.session import job_session
from exchange.settings import Settings


@dataclass(frozen=True)
class ExpiryReport:
    symbol: str
    newly_assigned: bool
    deliveries: list[Delivery]


async def run_expiry(settings: Settings, catalog: Catalog, symbol: str,
                     clock_ns: Callable[[], int] = time.time_ns, url: str | None = None) -> ExpiryReport:
    async with job_session(settings, catalog, clock_ns, url) as session:
        events = await session.submit(AssignDeliveries(symbol))
        refused = [e for e in events if isinstance(e, Rejected)]
        if refused:
            raise ValueError(f"{refused[0].code}: {refused[0].message}")
        assert any(isinstance(e, DeliveriesAssigned | DeliveriesAlreadyAssigned) for e in events), events
        newly = any(isinstance(e, DeliveriesAssigned) for e in events)
        deliveries = [d for d in session.engine.deliveries.values() if d.symbol == symbol]
        return ExpiryReport(symbol, newly, deliveries)
