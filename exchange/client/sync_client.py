"""The blocking REST client, on httpx.Client."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from exchange.client.base_client import DEFAULT_TIMEOUT_S, USER_AGENT, BaseClient, decode_response, network_error
from exchange.client.calls import Call, segment
from exchange.client.errors import ExchangeError
from exchange.client.retry import RetryPolicy

JSON = dict[str, Any]


class Client(BaseClient[JSON]):
    """Blocking client of the exchange's REST API; every method returns the answer's JSON object.

        with Client("http://127.0.0.1:8000", key_id, secret) as client:
            order = client.place_order("H100-M40-Z26", "buy", 5, price="2.35")
            client.cancel_order(order["id"])

    `transport` replaces httpx's network transport (e.g. httpx.MockTransport in tests); `sleep` is
    what waits between retries. See `BaseClient` for the other arguments and the method reference.
    """

    def __init__(self, base_url: str, key_id: str | None = None, secret: str | None = None, *,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S, max_retries: int = 3,
                 clock_s: Callable[[], int] | None = None, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep, rng: Callable[[], float] = random.random,
                 retry_policy: RetryPolicy | None = None) -> None:
        super().__init__(base_url, key_id, secret, timeout=timeout, max_retries=max_retries, clock_s=clock_s,
                         rng=rng, retry_policy=retry_policy)
        self._sleep = sleep
        self._http = httpx.Client(timeout=timeout, transport=transport,
                                  headers={"Accept": "application/json", "User-Agent": USER_AGENT})

    def _call(self, call: Call) -> JSON:
        attempt = 0
        while True:
            prepared = self._prepare(call)
            error: ExchangeError
            try:
                response = self._http.request(prepared.method, prepared.url, content=prepared.body or None,
                                              headers=prepared.headers)
            except httpx.TransportError as transport_error:
                error = network_error(transport_error)
            else:
                try:
                    return decode_response(response.status_code, response.content, response.headers)
                except ExchangeError as answer_error:
                    error = answer_error
            delay = self._retry_delay_s(call, attempt, error)
            if delay is None:
                raise error
            self._sleep(delay)
            attempt += 1

    def upload_telemetry(self, path: Path, name: str | None = None) -> JSON:
        """PUT /v1/admin/telemetry/{name} [operator]: stream a probe file (.csv, .jsonl) into the
        exchange's telemetry inbox (read twice: once to sign it, once to send it; never held in memory).
        Safe to retry: the same file again is answered {"created": false}."""
        if self.signer is None:
            raise ValueError("uploading telemetry needs an API key (key_id and secret)")
        target = f"{self._prefix}/v1/admin/telemetry/{segment(name or path.name)}"   # the prefix is signed too

        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as source:
                while chunk := source.read(1 << 20):
                    yield chunk
        headers = self.signer.stream_headers("PUT", target, chunks())
        # No read or write deadline: a large file takes as long as it takes (the server bounds its size).
        response = self._http.put(self._origin + target, content=chunks(), headers=headers,
                                  timeout=httpx.Timeout(30.0, read=None, write=None))
        return decode_response(response.status_code, response.content, response.headers)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- pagination ------------------------------------------------------------------------------------

    @staticmethod
    def _items(fetch: Callable[[str | None], JSON]) -> Iterator[JSON]:
        cursor: str | None = None
        while True:
            page = fetch(cursor)
            yield from page.get("items", [])
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def iter_series(self, status: str = "trading", page_size: int | None = None) -> Iterator[JSON]:
        """Every series, following `next_cursor` page by page."""
        return self._items(lambda cursor: self.series(status, page_size, cursor))

    def iter_trades(self, symbol: str, page_size: int | None = None) -> Iterator[JSON]:
        """Every public trade of a series, newest first, following `next_cursor` page by page."""
        return self._items(lambda cursor: self.trades(symbol, page_size, cursor))

    def iter_orders(self, status: str = "all", symbol: str | None = None,
                    page_size: int | None = None) -> Iterator[JSON]:
        """Every order of the account with this status, by ascending id, page by page."""
        return self._items(lambda cursor: self.orders(status, symbol, page_size, cursor))

    def iter_fills(self, symbol: str | None = None, page_size: int | None = None) -> Iterator[JSON]:
        """Every fill of the account, newest first, page by page."""
        return self._items(lambda cursor: self.fills(symbol, page_size, cursor))

    def iter_ledger(self, page_size: int | None = None) -> Iterator[JSON]:
        """Every ledger posting of the account, page by page."""
        return self._items(lambda cursor: self.ledger(page_size, cursor))
