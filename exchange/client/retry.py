"""When to retry a failed attempt, and how long to wait first (shared by the sync and async clients)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from exchange.client.calls import Retry
from exchange.client.errors import (
    ConflictError,
    ExchangeError,
    NetworkError,
    RateLimitedError,
    UnavailableError,
)

IDEMPOTENCY_KEY_IN_USE = "idempotency_key_in_use"  # 409: our own earlier attempt is still running


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Up to `max_retries` retries after the first attempt, waiting the server's Retry-After (at most
    `retry_after_max_s`) or else an exponential backoff with jitter: attempt n waits a uniformly
    random time in [b/2, b] where b = min(backoff_max_s, backoff_base_s * 2**n)."""

    max_retries: int = 3
    backoff_base_s: float = 0.25
    backoff_max_s: float = 8.0
    retry_after_max_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")

    @staticmethod
    def retryable(retry: Retry, error: ExchangeError) -> bool:
        """Whether a call of this retry safety may be sent again after failing with `error`."""
        if retry is Retry.NEVER:
            return False
        if isinstance(error, RateLimitedError):
            return True  # refused before anything was done
        if isinstance(error, NetworkError):
            return retry is Retry.IDEMPOTENT or not error.maybe_sent
        if retry is not Retry.IDEMPOTENT:
            return False
        return isinstance(error, UnavailableError) or (
            isinstance(error, ConflictError) and error.code == IDEMPOTENCY_KEY_IN_USE)

    def backoff_s(self, attempt: int, rng: Callable[[], float]) -> float:
        """The jittered exponential wait before retry number `attempt` (0 for the first retry)."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** attempt)
        return ceiling * (0.5 + 0.5 * rng())

    def delay_s(self, retry: Retry, attempt: int, error: ExchangeError, rng: Callable[[], float]) -> float | None:
        """Seconds to wait before retry number `attempt` (0-based) after `error`, or None to give up."""
        if attempt >= self.max_retries or not self.retryable(retry, error):
            return None
        if error.retry_after_s is not None:
            return min(error.retry_after_s, self.retry_after_max_s)
        return self.backoff_s(attempt, rng)
