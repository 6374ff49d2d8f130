"""Set up a data directory the way an operator would before `exchange serve` (accounts, cash, series,
API keys), and sign requests: shared by the API tests, the end-to-end tests and the API benchmarks."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from exchange.domain.commands import Command, CreateAccount, Deposit, ListSeries
from exchange.domain.events import Rejected
from exchange.domain.spec import SeriesSpec
from exchange.service.exchange_service import ExchangeService, ServiceConfig
from exchange.settings import Settings
from exchange.signing import HEADER_IDEMPOTENCY_KEY, HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, derive_secret, sign
from exchange.store import Store


@dataclass(frozen=True, slots=True)
class Credentials:
    account_id: int
    key_id: str
    secret: str
    scopes: tuple[str, ...]


def bootstrap(settings: Settings, clock_ns: Callable[[], int], *, series: Sequence[SeriesSpec] = (),
              deposits_micros: dict[int, int] | None = None,
              keys: Sequence[tuple[int, Sequence[str]]] = ()) -> list[Credentials]:
    """List `series`, open the accounts of `deposits_micros` with that much cash, create `keys`
    ((account, scopes) each) and return their credentials. The data directory must not be in use."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.store_url())
    store.migrate()
    commands: list[Command] = [ListSeries(spec) for spec in series]
    for account_id, micros in (deposits_micros or {}).items():
        commands.append(CreateAccount(account_id))
        if micros:
            commands.append(Deposit(account_id, micros))

    async def run() -> None:
        service = ExchangeService(ServiceConfig(settings.data_dir, snapshot_mode="inline"), store, clock_ns)
        await service.start()
        try:
            for command in commands:
                events = await service.submit(command)
                refused = [e for e in events if isinstance(e, Rejected)]
                if refused:
                    raise ValueError(f"bootstrap command {command!r} refused: {refused[0].message}")
        finally:
            await service.stop()

    try:
        asyncio.run(run())
        master_key = settings.load_master_key()
        credentials = []
        for account_id, scopes in keys:
            key_id, secret = store.create_api_key(account_id, scopes, clock_ns(),
                                                  lambda key_id: derive_secret(master_key, key_id))
            credentials.append(Credentials(account_id, key_id, secret, tuple(sorted(scopes))))
        return credentials
    finally:
        store.close()


_unique = itertools.count(1)


def signed_headers(credentials: Credentials, method: str, path_with_query: str, body: bytes,
                   timestamp_s: int, idempotency_key: str | None = None) -> dict[str, str]:
    """Signed headers at `timestamp_s` plus a fraction unique to this call (as the SDK does), so that
    two identical requests are two requests, not a replay of one."""
    timestamp = f"{timestamp_s}.{next(_unique) % 1_000_000:06d}"
    headers = {HEADER_KEY: credentials.key_id, HEADER_TIMESTAMP: timestamp,
               HEADER_SIGNATURE: sign(credentials.secret, timestamp, method, path_with_query, body, idempotency_key),
               "content-type": "application/json"}
    if idempotency_key is not None:
        headers[HEADER_IDEMPOTENCY_KEY] = idempotency_key
    return headers


def json_body(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
