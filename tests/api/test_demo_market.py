"""The live demo market: create_app(demo=...) on the real clock lists the calendar, opens and funds
the participants' accounts through the command path, and trades start within seconds."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from exchange.api.app import create_app
from exchange.demo_market import STATE_FILE, DemoConfig, DemoMarket
from tests.api.conftest import make_settings


def test_the_demo_market_trades_within_seconds_and_reuses_its_accounts(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    config = DemoConfig(rate_per_s=200)
    for run in range(2):
        app = create_app(settings, list_calendar=True, demo=config)
        with TestClient(app) as client:
            deadline = time.monotonic() + 10
            demo: DemoMarket | None = None
            while time.monotonic() < deadline:
                demo = getattr(app.state, "demo_market", None)
                if demo is not None and demo.symbols and demo.stats.trades >= 5:
                    break
                time.sleep(0.05)
            assert demo is not None and demo.stats.trades >= 5, demo and demo.stats
            assert len(demo.symbols) == 3 and demo.stats.errors == 0
            trades = [t for s in demo.symbols for t in client.get(f"/v1/series/{s}/trades").json()["items"]]
            books = [client.get(f"/v1/series/{s}/book").json() for s in demo.symbols]
            accounts = demo.market_makers + demo.takers + demo.providers
        if run == 0:
            first_accounts = accounts
            assert accounts == list(range(2, 9))  # after the operator's account 1
        else:
            assert accounts == first_accounts  # remembered in the data directory
        assert (settings.data_dir / STATE_FILE).exists()
        assert any(book["bids"] or book["asks"] for book in books)  # the market makers quote
        assert trades  # the trades went through the command path: the store has them
