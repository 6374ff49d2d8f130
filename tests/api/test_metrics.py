"""Prometheus metrics: a registry per app, every metric exported, observations visible."""

from __future__ import annotations

from collections import deque

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from exchange.api.metrics import FSYNC_BUCKETS_S, REQUEST_BUCKETS_S, Metrics

NAMES = (
    "exchange_http_requests_total", "exchange_http_request_seconds", "exchange_orders_total",
    "exchange_order_latency_seconds", "exchange_journal_fsync_seconds", "exchange_projector_lag_commands",
    "exchange_journal_seq", "exchange_websocket_clients", "exchange_sequencer_queue_depth",
)


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = metrics.render()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples}


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    return _samples(metrics)[(name, tuple(sorted(labels.items())))]


def test_render_returns_the_text_format_with_every_metric() -> None:
    body, content_type = Metrics().render()
    assert isinstance(body, bytes)
    assert content_type == CONTENT_TYPE_LATEST
    assert content_type.startswith("text/plain")
    text = body.decode()
    for name in NAMES:
        assert f"# HELP {name.removesuffix('_total')}" in text, name
        assert f"# TYPE {name.removesuffix('_total')}" in text, name


def test_each_app_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # a second app in the process does not clash with the first
    first.observe_order("accepted")
    assert _value(first, "exchange_orders_total", outcome="accepted") == 1
    assert _value(second, "exchange_orders_total", outcome="accepted") == 0
    assert first.registry is not second.registry
    assert REGISTRY.get_sample_value("exchange_orders_total", {"outcome": "accepted"}) is None


def test_http_requests_are_counted_and_timed() -> None:
    metrics = Metrics()
    metrics.observe_request("POST", "/v1/orders", 201, 1_200_000)  # 1.2 ms
    metrics.observe_request("POST", "/v1/orders", 201, 3_000_000)
    metrics.observe_request("GET", "/v1/orders/{order_id}", 404, 400_000)
    assert _value(metrics, "exchange_http_requests_total", method="POST", route="/v1/orders", status="201") == 2
    assert _value(metrics, "exchange_http_requests_total", method="GET", route="/v1/orders/{order_id}",
                  status="404") == 1
    post = {"method": "POST", "route": "/v1/orders"}
    assert _value(metrics, "exchange_http_request_seconds_count", **post) == 2
    assert _value(metrics, "exchange_http_request_seconds_sum", **post) == pytest.approx(0.0042)
    assert _value(metrics, "exchange_http_request_seconds_bucket", le="0.001", **post) == 0
    assert _value(metrics, "exchange_http_request_seconds_bucket", le="0.0025", **post) == 1
    assert _value(metrics, "exchange_http_request_seconds_bucket", le="0.005", **post) == 2
    assert _value(metrics, "exchange_http_request_seconds_bucket", le="0.0005", method="GET",
                  route="/v1/orders/{order_id}") == 1


def test_the_request_buckets_span_half_a_millisecond_to_a_second() -> None:
    assert REQUEST_BUCKETS_S[0] == 0.0005
    assert REQUEST_BUCKETS_S[-1] == 1.0
    assert list(REQUEST_BUCKETS_S) == sorted(REQUEST_BUCKETS_S)
    assert list(FSYNC_BUCKETS_S) == sorted(FSYNC_BUCKETS_S)


def test_order_outcomes_start_at_zero_and_count() -> None:
    metrics = Metrics()
    for outcome in ("accepted", "rejected", "duplicate"):
        assert _value(metrics, "exchange_orders_total", outcome=outcome) == 0
    metrics.observe_order("accepted", latency_ns=2_000_000)
    metrics.observe_order("accepted", latency_ns=800_000)
    metrics.observe_order("rejected")
    metrics.observe_order("duplicate", latency_ns=300_000)
    assert _value(metrics, "exchange_orders_total", outcome="accepted") == 2
    assert _value(metrics, "exchange_orders_total", outcome="rejected") == 1
    assert _value(metrics, "exchange_orders_total", outcome="duplicate") == 1
    assert _value(metrics, "exchange_order_latency_seconds_count") == 3
    assert _value(metrics, "exchange_order_latency_seconds_sum") == pytest.approx(0.0031)


def test_an_unknown_order_outcome_is_refused() -> None:
    metrics = Metrics()
    with pytest.raises(ValueError, match="outcome"):
        metrics.observe_order("filled")


def test_fsync_samples_in_ns_are_observed_in_seconds() -> None:
    metrics = Metrics()
    metrics.observe_fsync_ns([40_000, 90_000, 2_000_000])
    metrics.observe_fsync_ns(iter([200_000_000]))  # any iterable
    assert _value(metrics, "exchange_journal_fsync_seconds_count") == 4
    assert _value(metrics, "exchange_journal_fsync_seconds_sum") == pytest.approx(0.20213)
    assert _value(metrics, "exchange_journal_fsync_seconds_bucket", le="5e-05") == 1
    assert _value(metrics, "exchange_journal_fsync_seconds_bucket", le="0.0001") == 2
    assert _value(metrics, "exchange_journal_fsync_seconds_bucket", le="0.0025") == 3
    assert _value(metrics, "exchange_journal_fsync_seconds_bucket", le="0.1") == 3
    assert _value(metrics, "exchange_journal_fsync_seconds_bucket", le="+Inf") == 4


def test_new_fsync_samples_of_a_rolling_window_are_observed_once() -> None:
    metrics = Metrics()
    window: deque[int] = deque(maxlen=3)

    def commit(ns: int) -> None:
        window.append(ns)

    commit(1_000)
    commit(2_000)
    assert metrics.observe_new_fsync_ns(window, commits=2) == 2
    assert metrics.observe_new_fsync_ns(window, commits=2) == 0  # scraped again: nothing new
    commit(3_000)
    assert metrics.observe_new_fsync_ns(window, commits=3) == 1
    for ns in (4_000, 5_000, 6_000, 7_000):  # more commits than the window holds: the oldest are lost
        commit(ns)
    assert metrics.observe_new_fsync_ns(window, commits=7) == 3
    assert _value(metrics, "exchange_journal_fsync_seconds_count") == 6
    assert _value(metrics, "exchange_journal_fsync_seconds_sum") == pytest.approx(24e-6)
    window.clear()
    commit(10_000)  # a new sequencer counts from 1 again
    assert metrics.observe_new_fsync_ns(window, commits=1) == 1
    assert _value(metrics, "exchange_journal_fsync_seconds_count") == 7


def test_gauges_show_what_was_set() -> None:
    metrics = Metrics()
    metrics.set_journal_seq(12_345)
    metrics.set_projector_lag(17)
    metrics.set_sequencer_queue_depth(3)
    assert _value(metrics, "exchange_journal_seq") == 12_345
    assert _value(metrics, "exchange_projector_lag_commands") == 17
    assert _value(metrics, "exchange_sequencer_queue_depth") == 3
    metrics.set_projector_lag(0)
    assert _value(metrics, "exchange_projector_lag_commands") == 0


def test_websocket_clients_are_counted_per_channel() -> None:
    metrics = Metrics()
    metrics.websocket_connected("book")
    metrics.websocket_connected("book")
    metrics.websocket_connected("trades")
    metrics.websocket_disconnected("book")
    assert _value(metrics, "exchange_websocket_clients", channel="book") == 1
    assert _value(metrics, "exchange_websocket_clients", channel="trades") == 1


def test_metric_objects_are_public_for_direct_use() -> None:
    metrics = Metrics()
    metrics.sequencer_queue_depth.inc(5)
    metrics.http_requests.labels(method="GET", route="/health", status="200").inc()
    text = metrics.render()[0].decode()
    assert "exchange_sequencer_queue_depth 5.0" in text
    assert 'exchange_http_requests_total{method="GET",route="/health",status="200"} 1.0' in text
