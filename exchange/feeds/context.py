"""Everything the feed gateway's handlers need, built once by its lifespan (the gateway's `Runtime`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exchange.api.keyring import KeyRing
from exchange.api.ratelimit import RateLimits
from exchange.feeds.hub import FeedHub
from exchange.feeds.replica import Replica
from exchange.settings import Settings
from exchange.store.store import ApiKeyRow

# 1 ms .. 10 s: a gateway that keeps up publishes a few milliseconds after the engine.
DELAY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


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
        self.publish_delay = Histogram(
            "exchange_feed_publish_delay_seconds", "From the engine time of a batch's first command to the "
            "gateway handing the batch to the hub (sequencing, group commit, marker poll, replica apply)",
            buckets=DELAY_BUCKETS_S, registry=registry)


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
