"""Python SDK of the exchange's order-entry API.

    from exchange.client import Client, AsyncClient, OrderSession, RejectedError

- `Client` / `AsyncClient`: the REST API (market data, orders, account, operator endpoints), signed
  with an API key, retrying only what is safe to retry (GETs, orders, which always carry a client
  order id, and mutations, which always carry an Idempotency-Key).
- `OrderSession`: order entry over one authenticated WebSocket, many requests in flight.
- `MarketFeed`: the market-data WebSocket, keeping a `LocalBook` per series (gaps resynced,
  connections re-established with backoff).
- `ExchangeError` and its subclasses: every failure, by kind (see `exchange.client.errors`).

Prices and cash are Decimal, str or int (never float) and come back as decimal strings; quantities
are whole lots (ints); times are integer nanoseconds since the epoch.
"""

from exchange.client.async_client import AsyncClient
from exchange.client.base_client import BaseClient
from exchange.client.calls import Retry, new_client_order_id, new_idempotency_key
from exchange.client.errors import (
    AuthError,
    ConflictError,
    ExchangeError,
    ForbiddenError,
    NetworkError,
    NotFoundError,
    RateLimitedError,
    RejectedConflictError,
    RejectedError,
    RejectedNotFoundError,
    RejectedValidationError,
    RequestTimeoutError,
    ServerError,
    SubscriptionError,
    UnavailableError,
    ValidationError,
    error_from_response,
)
from exchange.client.feed import GapDetected, LocalBook, MarketFeed
from exchange.client.nearest import nearest_symbol
from exchange.client.retry import RetryPolicy
from exchange.client.signer import Signer
from exchange.client.sync_client import Client
from exchange.client.values import Money
from exchange.client.ws_orders import OrderSession

__all__ = [
    "AsyncClient",
    "AuthError",
    "BaseClient",
    "Client",
    "ConflictError",
    "ExchangeError",
    "ForbiddenError",
    "GapDetected",
    "LocalBook",
    "MarketFeed",
    "Money",
    "NetworkError",
    "NotFoundError",
    "OrderSession",
    "RateLimitedError",
    "RejectedConflictError",
    "RejectedError",
    "RejectedNotFoundError",
    "RejectedValidationError",
    "RequestTimeoutError",
    "Retry",
    "RetryPolicy",
    "ServerError",
    "Signer",
    "SubscriptionError",
    "UnavailableError",
    "ValidationError",
    "error_from_response",
    "nearest_symbol",
    "new_client_order_id",
    "new_idempotency_key",
]
