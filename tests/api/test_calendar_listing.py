"""A running exchange keeps listing the calendar's series as their time comes (issue 13: the exchange
never stops, so listing only at start would stop new daily series after a few days)."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from exchange.api.app import create_app
from exchange.testing.specs import T0_NS
from tests.api.conftest import Clock, make_settings

DAY_NS = 86_400 * 10**9


def test_new_daily_series_are_listed_while_the_exchange_runs(tmp_path: Path) -> None:
    clock = Clock(T0_NS)
    app = create_app(make_settings(tmp_path / "data", calendar_poll_s=0.05), clock_ns=clock)
    with TestClient(app) as client:
        runtime = app.state.runtime
        at_start = set(runtime.engine.series)
        assert at_start
        clock.now_ns += 3 * DAY_NS
        wanted = {spec.symbol for spec in runtime.catalog.listed_series(clock.now_ns)}
        assert wanted - at_start, "three days later the calendar has new series"
        deadline = time.monotonic() + 10
        while not wanted <= set(runtime.engine.series) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert wanted <= set(runtime.engine.series)
        assert client.get("/health").status_code == 200
