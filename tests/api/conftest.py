"""An in-process exchange app (real service, journal and SQLite store in a temporary directory) with
a clock the test controls, a listed test series, funded accounts and API keys of every scope."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from exchange.api.app import create_app
from exchange.settings import Settings
from exchange.testing.api_harness import Credentials, bootstrap, json_body, signed_headers
from exchange.testing.specs import T0_NS, make_spec

SYMBOL = "H100-M40-261203"
OTHER_SYMBOL = "B200-M35-261203"
CASH_MICROS = 1_000_000 * 1_000_000   # $1M each


class Clock:
    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns

    def advance_s(self, seconds: float) -> None:
        self.now_ns += int(seconds * 1_000_000_000)


@dataclass
class Api:
    client: TestClient
    clock: Clock
    keys: dict[str, Credentials]
    settings: Settings
    extra_headers: dict[str, str] = field(default_factory=dict)

    def call(self, who: str | Credentials, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
        credentials = self.keys[who] if isinstance(who, str) else who
        raw = json_body(body) if body is not None else b""
        idempotency_key = (headers or {}).get("Idempotency-Key")
        signed = signed_headers(credentials, method, path, raw, self.clock.now_ns // 1_000_000_000,
                                idempotency_key)
        response: httpx.Response = self.client.request(method, path, content=raw,
                                                       headers={**signed, **(headers or {})})
        return response

    def place(self, who: str, side: str, amount: int, price: str | None = None, **more: Any) -> httpx.Response:
        body = {"symbol": SYMBOL, "side": side, "amount": amount, **more}
        if price is not None:
            body["price"] = price
        return self.call(who, "POST", "/v1/orders", body)


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": data_dir, "master_key": "ab" * 32, "snapshot_every_commands": 0,
                              "rate_per_key_per_s": 10_000, "burst_per_key": 10_000,
                              "rate_per_ip_per_s": 10_000, "burst_per_ip": 10_000,
                              # the auth tests fail on purpose many times from one address
                              "auth_failures_burst_per_ip": 10_000, "auth_failures_burst_per_key_ip": 10_000,
                              **overrides}
    return Settings(**values)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    clock = Clock(T0_NS)
    settings = make_settings(tmp_path / "data")
    creds = bootstrap(settings, clock, series=[make_spec(SYMBOL), make_spec(OTHER_SYMBOL)],
                      deposits_micros={1: CASH_MICROS, 2: CASH_MICROS, 3: 0, 100: 0},
                      keys=[(1, ["read", "trade"]), (2, ["read", "trade"]), (1, ["read"]), (100, ["operator"]),
                            (3, ["read", "trade"])])
    keys = dict(zip(("alice", "bob", "alice_readonly", "operator", "carol_broke"), creds, strict=True))
    app = create_app(settings, clock_ns=clock, list_calendar=False)
    with TestClient(app) as client:
        yield Api(client, clock, keys, settings)
