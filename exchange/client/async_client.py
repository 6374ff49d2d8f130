"""The asyncio REST client, on httpx.AsyncClient."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Self

import httpx

from exchange.client.base_client import DEFAULT_TIMEOUT_S, USER_AGENT, BaseClient, decode_response, network_error
from exchange.client.calls import Call
from exchange.client.errors import ExchangeError
from exchange.client.retry import RetryPolicy

JSON = dict[str, Any]


class AsyncClient(BaseClient[Coroutine[Any, Any, JSON]]):
    """Asyncio client of the exchange's REST API; every method is awaited for the answer's JSON object.

        async with AsyncClient("http://127.0.0.1:8000", key_id, secret) as client:
            orders = await asyncio.gather(*(client.place_order(symbol, "buy", 1, price=p) for p in prices))

    `transport` replaces httpx's network transport (e.g. httpx.MockTransport in tests); `sleep` is
    what waits between retries. See `BaseClient` for the other arguments and the method reference.
    """

    def __init__(self, base_url: str, key_id: str | None = None, secret: str | None = None, *,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S, max_retries: int = 3,
                 clock_s: Callable[[], int] | None = None, transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, rng: Callable[[], float] = random.random,
                 retry_policy: RetryPolicy | None = None) -> None:
        super().__init__(base_url, key_id, secret, timeout=timeout, max_retries=max_retries, clock_s=clock_s,
                         rng=rng, retry_policy=retry_policy)
        self._sleep = sleep
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport,
                                       headers={"Accept": "application/json", "User-Agent": USER_AGENT})

    async def _call(self, call: Call) -> JSON:
        attempt = 0
        while True:
            prepared = self._prepare(call)
            error: ExchangeError
            try:
                response = await self._http.request(prepared.method, prepared.url,
                                                    content=prepared.body or None, headers=prepared.headers)
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
            await self._sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    close = aclose

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    # -- pagination ------------------------------------------------------------------------------------

    @staticmethod
    async def _items(fetch: Callable[[str | None], Awaitable[JSON]]) -> AsyncIterator[JSON]:
        cursor: str | None = None
        while True:
            page = await fetch(cursor)
            for item in page.get("items", []):
                yield item
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def iter_series(self, status: str = "trading", page_size: int | None = None) -> AsyncIterator[JSON]:
        """Every series, following `next_cursor` page by page (`async for`)."""
        return self._items(lambda cursor: self.series(status, page_size, cursor))

    def iter_trades(self, symbol: str, page_size: int | None = None) -> AsyncIterator[JSON]:
        """Every public trade of a series, newest first, page by page (`async for`)."""
        return self._items(lambda cursor: self.trades(symbol, page_size, cursor))

    def iter_orders(self, status: str = "all", symbol: str | None = None,
                    page_size: int | None = None) -> AsyncIterator[JSON]:
        """Every order of the account with this status, by ascending id, page by page (`async for`)."""
        return self._items(lambda cursor: self.orders(status, symbol, page_size, cursor))

    def iter_fills(self, symbol: str | None = None, page_size: int | None = None) -> AsyncIterator[JSON]:
        """Every fill of the account, newest first, page by page (`async for`)."""
        return self._items(lambda cursor: self.fills(symbol, page_size, cursor))

    def iter_ledger(self, page_size: int | None = None) -> AsyncIterator[JSON]:
        """Every ledger posting of the account, page by page (`async for`)."""
        return self._items(lambda cursor: self.ledger(page_size, cursor))
