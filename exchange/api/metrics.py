"""Prometheus metrics of the API server, on a registry of their own.

Each `Metrics` owns a dedicated `CollectorRegistry` rather than prometheus_client's global one, so
any number of apps can live in one process (the tests build many) without "Duplicated timeseries"
errors, and `/metrics` shows exactly this app's series.

Label values must come from small, fixed sets so the number of series stays bounded: `route` is the
route *template* (`/v1/orders/{order_id}`, never the raw path), `method` the HTTP method, `status`
the status code, `outcome` one of `ORDER_OUTCOMES`, `channel` a WebSocket channel name.

Durations are taken in integer nanoseconds (what `time.perf_counter_ns` and the sequencer's samples
give) and exported in seconds, as Prometheus expects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

NS_PER_SECOND = 1_000_000_000

ORDER_OUTCOMES = ("accepted", "rejected", "duplicate")

# 0.5 ms .. 1 s: an order entry answers in about a millisecond (one group fsync), reads faster.
REQUEST_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# 50 µs .. 100 ms: an fsync on a good SSD takes tens of microseconds to a few milliseconds.
FSYNC_BUCKETS_S = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


def _seconds(ns: int) -> float:
    return ns / NS_PER_SECOND


class Metrics:
    """The exchange's metrics. The metric objects are public attributes; the methods below are
    the usual ways to feed them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.http_requests = Counter(
            "exchange_http_requests_total", "HTTP requests answered, by method, route template and status",
            ("method", "route", "status"), registry=registry)
        self.http_request_seconds = Histogram(
            "exchange_http_request_seconds", "Time to answer an HTTP request, by method and route template",
            ("method", "route"), buckets=REQUEST_BUCKETS_S, registry=registry)
        self.orders = Counter(
            "exchange_orders_total", "Orders received, by outcome: accepted, rejected or duplicate (idempotent replay)",
            ("outcome",), registry=registry)
        self.order_latency_seconds = Histogram(
            "exchange_order_latency_seconds", "Time from receiving an order to answering it (durable)",
            buckets=REQUEST_BUCKETS_S, registry=registry)
        self.journal_fsync_seconds = Histogram(
            "exchange_journal_fsync_seconds", "Duration of a journal group commit (flush + fsync)",
            buckets=FSYNC_BUCKETS_S, registry=registry)
        self.job_runs = Counter(
            "exchange_job_runs_total", "Settlement job runs by the scheduler, by kind (daily, delivery) and outcome "
            "(succeeded, failed)", ("kind", "outcome"), registry=registry)
        self.job_seconds = Histogram(
            "exchange_job_seconds", "Duration of a scheduled settlement job run, by kind", ("kind",),
            buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600), registry=registry)
        self.job_last_success_seconds = Gauge(
            "exchange_job_last_success_timestamp_seconds", "When a settlement job of this kind last succeeded "
            "(market time, seconds since the epoch)", ("kind",), registry=registry)
        self.jobs_due = Gauge(
            "exchange_jobs_due", "Settlement jobs due and not yet succeeded (a failing job stays due)",
            registry=registry)
        self.projector_lag_commands = Gauge(
            "exchange_projector_lag_commands", "Commands journaled but not yet projected into the store",
            registry=registry)
        self.journal_seq = Gauge(
            "exchange_journal_seq", "Last durable journal sequence number", registry=registry)
        self.websocket_clients = Gauge(
            "exchange_websocket_clients", "Connected WebSocket clients, by channel", ("channel",), registry=registry)
        self.sequencer_queue_depth = Gauge(
            "exchange_sequencer_queue_depth", "Commands waiting for the sequencer", registry=registry)
        for outcome in ORDER_OUTCOMES:  # export zeros from the start, so rates work from the first scrape
            self.orders.labels(outcome=outcome)
        self._fsync_commits_seen = 0

    # -- HTTP ------------------------------------------------------------------------------------
    def observe_request(self, method: str, route: str, status: int, duration_ns: int) -> None:
        """One answered HTTP request: `route` is the route template, not the raw path."""
        self.http_requests.labels(method=method, route=route, status=str(status)).inc()
        self.http_request_seconds.labels(method=method, route=route).observe(_seconds(duration_ns))

    # -- orders ----------------------------------------------------------------------------------
    def observe_order(self, outcome: str, latency_ns: int | None = None) -> None:
        """One order answered: `outcome` is accepted, rejected or duplicate; its latency if known."""
        if outcome not in ORDER_OUTCOMES:
            raise ValueError(f"order outcome {outcome!r} is not one of {', '.join(ORDER_OUTCOMES)}")
        self.orders.labels(outcome=outcome).inc()
        if latency_ns is not None:
            self.order_latency_seconds.observe(_seconds(latency_ns))

    # -- journal and sequencer -------------------------------------------------------------------
    def observe_fsync_ns(self, samples: Iterable[int]) -> None:
        """Observe each fsync duration (ns) given. Every sample is counted, so give each one once:
        to feed from the sequencer's rolling window use `observe_new_fsync_ns`."""
        histogram = self.journal_fsync_seconds
        for ns in samples:
            histogram.observe(_seconds(ns))

    def observe_new_fsync_ns(self, window: Sequence[int], commits: int) -> int:
        """Observe the samples of `window` not observed before, given `commits`, the number of
        commits ever made (the window's last entry being the latest commit's): pass the sequencer's
        `fsync_ns` and `batches_committed`, as often as you like (e.g. on each scrape). Samples that
        left the window between two calls are lost, not miscounted. A `commits` smaller than last
        time (a new sequencer) starts the count again. Returns how many samples were observed."""
        seen = self._fsync_commits_seen
        if commits < seen:
            seen = 0
        new = min(commits - seen, len(window))
        self._fsync_commits_seen = commits
        if new <= 0:
            return 0
        self.observe_fsync_ns(list(window)[-new:])
        return new

    def set_journal_seq(self, seq: int) -> None:
        self.journal_seq.set(seq)

    def set_projector_lag(self, commands: int) -> None:
        self.projector_lag_commands.set(commands)

    def set_sequencer_queue_depth(self, depth: int) -> None:
        self.sequencer_queue_depth.set(depth)

    # -- WebSocket -------------------------------------------------------------------------------
    def websocket_connected(self, channel: str) -> None:
        self.websocket_clients.labels(channel=channel).inc()

    def websocket_disconnected(self, channel: str) -> None:
        self.websocket_clients.labels(channel=channel).dec()

    # -- exposition ------------------------------------------------------------------------------
    def render(self) -> tuple[bytes, str]:
        """The body and Content-Type of a `/metrics` response."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
