"""Everything the feed gateway's handlers need, built once by its lifespan (the gateway's `Runtime`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

from exchange.api.keyring import KeyRing
from exchange.api.ratelimit import RateLimits
from exchange.feeds.hub import FeedHub
from exchange.feeds.replica import Replica
from exchange.settings import Settings
from exchange.store.store import ApiKeyRow


class FeedMetrics:
    """The gateway's Prometheus series, on a registry of its own (see exchange.api.metrics)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.replica_seq = Gauge("exchange_feed_replica_seq", "Last journal seq the gateway's replica applied",
                                 registry=registry)
        self.replica_lag = Gauge("exchange_feed_replica_lag_commands",
                                 "Commands committed by the engine, not yet applied by the gateway",
                                 registry=registry)
        self.connections = Gauge("exchange_feed_connections", "Connected market-data WebSockets", registry=registry)
        self.slow_consumers = Counter("exchange_feed_slow_consumers_total",
                                      "Connections closed because their outbound queue overflowed", registry=registry)
        self.hub_errors = Gauge("exchange_feed_hub_errors", "Errors raised inside the hub (logged)", registry=registry)
        self.batches = Counter("exchange_feed_batches_total", "Batches of journal records applied and published",
                               registry=registry)


@dataclass
class FeedContext:
    settings: Settings
    replica: Replica
    hub: FeedHub
    keyring: KeyRing
    limits: RateLimits
    clock_ns: Callable[[], int] = time.time_ns
    metrics: FeedMetrics = field(default_factory=FeedMetrics)
    failure: BaseException | None = None   # why the follower stopped (the gateway is then not ready)

    def api_key(self, key_id: str) -> ApiKeyRow | None:
        return self.keyring.api_key(key_id)

    def secret(self, key_id: str) -> str:
        return self.keyring.secret(key_id)
