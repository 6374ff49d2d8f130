"""Token-bucket rate limiting for the API edge: pure, exact, bounded.

The algorithm. Every key (an API key id, a client IP) owns a bucket that holds at most `burst`
tokens and refills continuously at `rate_per_s` tokens per second. A request costing `cost` tokens
is allowed when the bucket holds at least `cost` tokens, and then takes them; otherwise it is
refused, takes nothing, and is told how long until the bucket will hold enough: its Retry-After.
A key seen for the first time starts with a full bucket, so a client may send `burst` requests at
once and then `rate_per_s` per second for as long as it likes.

Why integers. The level of a bucket is kept in units of 1/1_000_000_000 token ("nano-tokens"),
which is exactly what one second of nanoseconds refills at one token per second: `elapsed_ns` of
refill adds `elapsed_ns * rate_per_s` units, a product of integers, with no division and so no
rounding. Floats would round every refill, and the errors would drift with the length and number of
the steps between requests: two clients sending the same requests at the same instants could get
different answers depending on how often they had been checked. Here the level after any sequence
of checks is exactly the level the definition gives, whatever the step sizes, and the Retry-After is
the exact wait rounded up to the next whole millisecond: waiting that long always succeeds (if
nothing else spends the tokens first), and waiting one millisecond less never would.

Pure. Nothing here reads a clock: every call is given `now_ns` (the edge reads the clock once per
request), so tests replay exact timings. A time earlier than the last one seen for a key (a clock
stepped back) refills nothing and is otherwise treated as the last time.

Bounded memory. At most `max_keys` buckets are kept, in least-recently-used order; a new key beyond
that evicts the key used longest ago. An evicted key comes back with a full bucket, which is the
price of the bound; the per-IP limiter still holds a client that cycles through API keys, and a key
idle for `burst / rate_per_s` seconds would have a full bucket anyway.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from exchange.api.replay import ReplayGuard

if TYPE_CHECKING:
    from exchange.settings import Settings

UNITS_PER_TOKEN = 1_000_000_000  # nano-tokens: one second of refill at one token per second
_NS_PER_MS = 1_000_000
_MS_PER_S = 1_000


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def retry_after_seconds(wait_ms: int) -> int:
    """The HTTP Retry-After value (whole seconds) for a wait in milliseconds, rounded up, so a client
    that honours it never comes back too early: 1 ms -> 1, 1000 ms -> 1, 1001 ms -> 2."""
    return _ceil_div(wait_ms, _MS_PER_S)


class RateLimiter:
    """One token bucket per key: `rate_per_s` tokens per second, at most `burst` at once."""

    __slots__ = ("_buckets", "_capacity", "burst", "max_keys", "rate_per_s")

    def __init__(self, rate_per_s: int, burst: int, max_keys: int = 100_000) -> None:
        for name, value in (("rate_per_s", rate_per_s), ("burst", burst), ("max_keys", max_keys)):
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._capacity = burst * UNITS_PER_TOKEN
        # key -> (level in nano-tokens, time of that level in ns); least recently used first
        self._buckets: OrderedDict[str, tuple[int, int]] = OrderedDict()

    def __len__(self) -> int:
        """How many keys have a bucket now (at most `max_keys`)."""
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    def _level(self, key: str, now_ns: int) -> tuple[int, int]:
        """The level of the key's bucket at `now_ns` and the time it refers to (no change made)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return self._capacity, now_ns
        level, then_ns = bucket
        if now_ns <= then_ns:
            return level, then_ns
        return min(self._capacity, level + (now_ns - then_ns) * self.rate_per_s), now_ns

    def _cost_units(self, cost: int) -> int:
        if type(cost) is not int or cost < 1:
            raise ValueError(f"cost must be a positive integer, not {cost!r}")
        if cost > self.burst:
            raise ValueError(f"cost {cost} exceeds the burst {self.burst}: it could never be allowed")
        return cost * UNITS_PER_TOKEN

    def wait_ms(self, key: str, now_ns: int, cost: int = 1) -> int:
        """0 if `cost` tokens are available to `key` at `now_ns`, else the milliseconds until they
        will be (at least 1). Changes nothing: neither the bucket nor the recency of the key."""
        need = self._cost_units(cost)
        level, _ = self._level(key, now_ns)
        if level >= need:
            return 0
        return _ceil_div(_ceil_div(need - level, self.rate_per_s), _NS_PER_MS)

    def status(self, key: str, now_ns: int) -> tuple[int, int]:
        """(whole tokens the key holds at `now_ns`, milliseconds until its bucket is full again, rounded
        up). Changes nothing: what the rate-limit headers of a response report."""
        level, _ = self._level(key, now_ns)
        return level // UNITS_PER_TOKEN, _ceil_div(_ceil_div(self._capacity - level, self.rate_per_s), _NS_PER_MS)

    def take(self, key: str, now_ns: int, cost: int = 1) -> None:
        """Take `cost` tokens from the key's bucket, which must hold them (see `wait_ms`)."""
        need = self._cost_units(cost)
        level, at_ns = self._level(key, now_ns)
        if level < need:
            raise ValueError(f"the bucket of {key!r} holds fewer than {cost} tokens")
        self._store(key, level - need, at_ns)

    def check(self, key: str, now_ns: int, cost: int = 1) -> int:
        """0 if the request is allowed (its `cost` tokens are taken), else the milliseconds until it
        would be (nothing is taken): the Retry-After."""
        need = self._cost_units(cost)
        level, at_ns = self._level(key, now_ns)
        if level >= need:
            self._store(key, level - need, at_ns)
            return 0
        self._store(key, level, at_ns)  # a use all the same: refresh its recency
        return _ceil_div(_ceil_div(need - level, self.rate_per_s), _NS_PER_MS)

    def _store(self, key: str, level: int, at_ns: int) -> None:
        buckets = self._buckets
        if key in buckets:
            buckets.move_to_end(key)
        buckets[key] = (level, at_ns)
        while len(buckets) > self.max_keys:
            buckets.popitem(last=False)


@dataclass(slots=True)
class RateLimits:
    """The two limits every API request passes: one per API key (when it has one) and one per client
    IP. A request is allowed only if both allow it, and then takes from both; a request either
    refuses takes from neither, so a client held back by one limit does not drain the other.

    Failed authentications have budgets of their own, per client IP and per (key id, IP): exhausting
    them blocks further attempts from that IP (429) without locking the key out from its other IPs.
    `replays` remembers the signatures of requests that acted (see `replay.py`)."""

    per_key: RateLimiter
    per_ip: RateLimiter
    auth_failures_per_ip: RateLimiter = field(default_factory=lambda: RateLimiter(1, 20))
    auth_failures_per_key_ip: RateLimiter = field(default_factory=lambda: RateLimiter(1, 10))
    replays: ReplayGuard = field(default_factory=ReplayGuard)

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        return cls(per_key=RateLimiter(settings.rate_per_key_per_s, settings.burst_per_key),
                   per_ip=RateLimiter(settings.rate_per_ip_per_s, settings.burst_per_ip),
                   auth_failures_per_ip=RateLimiter(settings.auth_failures_per_ip_per_s,
                                                    settings.auth_failures_burst_per_ip),
                   auth_failures_per_key_ip=RateLimiter(settings.auth_failures_per_ip_per_s,
                                                        settings.auth_failures_burst_per_key_ip),
                   replays=ReplayGuard(settings.replay_signatures_max))

    def auth_failure_wait_ms(self, key_id: str | None, ip: str, now_ns: int) -> int:
        """0 if `ip` (and `key_id` from it) may still try to authenticate, else the wait in ms."""
        wait = self.auth_failures_per_ip.wait_ms(ip, now_ns)
        if key_id:
            wait = max(wait, self.auth_failures_per_key_ip.wait_ms(f"{key_id[:64]}@{ip}", now_ns))
        return wait

    def note_auth_failure(self, key_id: str | None, ip: str, now_ns: int) -> None:
        self.auth_failures_per_ip.check(ip, now_ns)
        if key_id:
            self.auth_failures_per_key_ip.check(f"{key_id[:64]}@{ip}", now_ns)

    def status(self, key_id: str | None, ip: str, now_ns: int) -> tuple[int, int, int]:
        """(limit, remaining, ms until full) of the tighter of the two buckets a request draws on: the one
        with fewer tokens left (the per-IP one when there is no key). `limit` is that bucket's burst."""
        remaining, full_ms = self.per_ip.status(ip, now_ns)
        limit = self.per_ip.burst
        if key_id is not None:
            key_remaining, key_full_ms = self.per_key.status(key_id, now_ns)
            if key_remaining < remaining:
                limit, remaining, full_ms = self.per_key.burst, key_remaining, key_full_ms
        return limit, remaining, full_ms

    def check(self, key_id: str | None, ip: str, now_ns: int, cost: int = 1) -> int:
        """0 if allowed by both limiters (tokens taken from both), else the longer of their waits
        in milliseconds (nothing taken). `key_id` None (an unauthenticated request): per IP only."""
        wait = self.per_ip.wait_ms(ip, now_ns, cost)
        if key_id is not None:
            wait = max(wait, self.per_key.wait_ms(key_id, now_ns, cost))
        if wait:
            return wait
        self.per_ip.take(ip, now_ns, cost)
        if key_id is not None:
            self.per_key.take(key_id, now_ns, cost)
        return 0
