"""The token-bucket rate limiter: burst, refill, exact Retry-After, eviction, the two limits."""

from __future__ import annotations

import ast
import inspect
import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.api import ratelimit
from exchange.api.ratelimit import RateLimiter, RateLimits, retry_after_seconds
from exchange.settings import Settings

MS = 1_000_000  # ns
S = 1_000_000_000  # ns
T0 = 1_790_000_000 * S  # an instant in 2026: real timestamps are large


# -- burst and refill ------------------------------------------------------------------------


def test_a_new_key_may_spend_its_burst_at_once_then_waits_one_token() -> None:
    limiter = RateLimiter(rate_per_s=10, burst=5)
    assert [limiter.check("k", T0) for _ in range(5)] == [0] * 5
    assert limiter.check("k", T0) == 100  # one token refills in 1/10 s
    assert limiter.check("k", T0 + 40 * MS) == 60


def test_refill_is_continuous_and_exact_to_the_nanosecond() -> None:
    limiter = RateLimiter(rate_per_s=10, burst=1)
    assert limiter.check("k", T0) == 0
    assert limiter.check("k", T0 + 100 * MS - 1) == 1  # one nanosecond short: still refused, 1 ms to go
    assert limiter.check("k", T0 + 100 * MS) == 0
    assert limiter.check("k", T0 + 100 * MS) == 100


def test_a_refill_over_many_small_steps_equals_one_large_step() -> None:
    # 1/3 token per step would be rounded by floats or milli-tokens; here nothing is lost
    stepped, jumped = RateLimiter(rate_per_s=1, burst=3), RateLimiter(rate_per_s=1, burst=3)
    for limiter in (stepped, jumped):
        for _ in range(3):
            assert limiter.check("k", T0) == 0
    step = S // 3 + 1  # 333_333_334 ns
    assert stepped.check("k", T0 + step) == 667  # 0.333333334 tokens: 666.666666 ms to go
    assert stepped.check("k", T0 + 2 * step) == 334  # 0.666666668 tokens: 333.333332 ms to go
    assert stepped.check("k", T0 + 3 * step) == 0
    assert jumped.check("k", T0 + 3 * step) == 0
    assert stepped.check("k", T0 + 3 * step) == jumped.check("k", T0 + 3 * step) == 1_000


def test_the_bucket_never_holds_more_than_the_burst() -> None:
    limiter = RateLimiter(rate_per_s=100, burst=3)
    assert limiter.check("k", T0) == 0
    later = T0 + 3_600 * S
    assert [limiter.check("k", later) for _ in range(4)] == [0, 0, 0, 10]


def test_a_refused_check_takes_nothing() -> None:
    limiter = RateLimiter(rate_per_s=2, burst=1)
    assert limiter.check("k", T0) == 0
    for offset_ms in (0, 100, 200, 499):
        assert limiter.check("k", T0 + offset_ms * MS) == 500 - offset_ms
    assert limiter.check("k", T0 + 500 * MS) == 0


def test_keys_are_independent() -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1)
    assert limiter.check("a", T0) == 0
    assert limiter.check("a", T0) == 1_000
    assert limiter.check("b", T0) == 0


# -- Retry-After -----------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "expected_ms"), [
    (1, 1_000), (2, 500), (3, 334), (7, 143), (1_000, 1), (1_500, 1), (1_000_000, 1), (999, 2),
])
def test_retry_after_is_the_exact_wait_rounded_up_to_a_millisecond(rate: int, expected_ms: int) -> None:
    limiter = RateLimiter(rate_per_s=rate, burst=1)
    assert limiter.check("k", T0) == 0
    assert limiter.check("k", T0) == expected_ms
    exact_ns = math.ceil(Fraction(S, rate))
    assert expected_ms == math.ceil(Fraction(exact_ns, MS))
    probe = RateLimiter(rate_per_s=rate, burst=1)
    probe.check("k", T0)
    assert probe.wait_ms("k", T0 + exact_ns - 1) > 0  # a nanosecond early is too early
    assert probe.wait_ms("k", T0 + exact_ns) == 0


def test_retry_after_with_a_cost_counts_every_missing_token() -> None:
    limiter = RateLimiter(rate_per_s=4, burst=10)
    assert limiter.check("k", T0, cost=9) == 0  # 1 token left
    assert limiter.check("k", T0, cost=5) == 1_000  # 4 missing at 4 per second
    assert limiter.check("k", T0 + 250 * MS, cost=5) == 750
    assert limiter.check("k", T0 + S, cost=5) == 0
    assert limiter.check("k", T0 + S, cost=1) == 250


def test_waiting_the_retry_after_always_succeeds() -> None:
    limiter = RateLimiter(rate_per_s=7, burst=3)
    now = T0
    for _ in range(50):
        wait = limiter.check("k", now, cost=2)
        if wait:
            assert limiter.wait_ms("k", now + wait * MS - MS, cost=2) > 0
            now += wait * MS
            assert limiter.check("k", now, cost=2) == 0


@pytest.mark.parametrize(("wait_ms", "seconds"), [(1, 1), (999, 1), (1_000, 1), (1_001, 2), (2_500, 3)])
def test_retry_after_seconds_rounds_up(wait_ms: int, seconds: int) -> None:
    assert retry_after_seconds(wait_ms) == seconds


# -- odd inputs ------------------------------------------------------------------------------


def test_a_clock_stepped_back_refills_nothing() -> None:
    limiter = RateLimiter(rate_per_s=1, burst=2)
    assert limiter.check("k", T0 + 10 * S) == 0
    assert limiter.check("k", T0) == 0  # earlier: the bucket is as it was at the later time
    assert limiter.check("k", T0 + 5 * S) == 1_000
    assert limiter.check("k", T0 + 11 * S) == 0  # refill counts from the latest time seen
    assert limiter.check("k", T0 + 11 * S) == 1_000


@pytest.mark.parametrize("cost", [0, -1, 6, True])
def test_a_cost_that_could_never_pass_is_an_error(cost: int) -> None:
    limiter = RateLimiter(rate_per_s=1, burst=5)
    with pytest.raises(ValueError, match="cost"):
        limiter.check("k", T0, cost=cost)
    with pytest.raises(ValueError, match="cost"):
        limiter.wait_ms("k", T0, cost=cost)
    assert len(limiter) == 0


@pytest.mark.parametrize(("rate", "burst", "max_keys"), [(0, 1, 1), (1, 0, 1), (1, 1, 0), (-1, 1, 1)])
def test_the_limits_must_be_positive_integers(rate: int, burst: int, max_keys: int) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        RateLimiter(rate, burst, max_keys)


def test_a_float_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        RateLimiter(1.5, 1)  # type: ignore[arg-type]


def test_take_without_enough_tokens_is_an_error() -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1)
    limiter.take("k", T0)
    with pytest.raises(ValueError, match="fewer than 1 tokens"):
        limiter.take("k", T0)


def test_wait_ms_changes_nothing() -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1, max_keys=1)
    assert limiter.wait_ms("new", T0) == 0
    assert "new" not in limiter
    limiter.check("a", T0)
    assert limiter.wait_ms("a", T0) == 1_000
    assert limiter.wait_ms("a", T0) == 1_000


# -- bounded memory --------------------------------------------------------------------------


def test_beyond_max_keys_the_least_recently_used_key_is_evicted() -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1, max_keys=2)
    limiter.check("a", T0)
    limiter.check("b", T0)
    limiter.check("a", T0)  # refused, but a use: b is now the least recently used
    limiter.check("c", T0)
    assert len(limiter) == 2
    assert "a" in limiter
    assert "b" not in limiter
    assert "c" in limiter
    assert limiter.check("b", T0) == 0  # an evicted key comes back with a full bucket
    assert "a" not in limiter


def test_memory_stays_bounded_under_many_keys() -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1, max_keys=100)
    for i in range(10_000):
        assert limiter.check(f"ip-{i}", T0 + i) == 0
    assert len(limiter) == 100
    assert all(f"ip-{i}" in limiter for i in range(9_900, 10_000))


# -- both limits -----------------------------------------------------------------------------


def _limits() -> RateLimits:
    return RateLimits(per_key=RateLimiter(rate_per_s=1, burst=2), per_ip=RateLimiter(rate_per_s=2, burst=3))


def test_a_request_takes_from_both_limits() -> None:
    limits = _limits()
    assert limits.check("key", "10.0.0.1", T0) == 0
    assert limits.per_key.wait_ms("key", T0, cost=2) == 1_000
    assert limits.per_ip.wait_ms("10.0.0.1", T0, cost=3) == 500


def test_when_the_key_limit_refuses_the_ip_limit_is_not_drained() -> None:
    limits = _limits()
    assert limits.check("key", "10.0.0.1", T0) == 0
    assert limits.check("key", "10.0.0.1", T0) == 0
    for _ in range(5):
        assert limits.check("key", "10.0.0.1", T0) == 1_000  # the key's limit
    assert limits.per_ip.wait_ms("10.0.0.1", T0) == 0  # one of the IP's 3 tokens still there
    assert limits.check("other-key", "10.0.0.1", T0) == 0


def test_when_the_ip_limit_refuses_the_key_limit_is_not_drained() -> None:
    limits = _limits()
    for i in range(3):
        assert limits.check(f"key-{i}", "10.0.0.1", T0) == 0
    assert limits.check("key", "10.0.0.1", T0) == 500  # the IP's limit
    assert limits.check("key", "10.0.0.1", T0) == 500
    assert "key" not in limits.per_key
    assert limits.check("key", "10.0.0.2", T0) == 0
    assert limits.check("key", "10.0.0.2", T0) == 0  # both of the key's tokens were still there


def test_when_both_refuse_the_wait_is_the_longer_one() -> None:
    limits = RateLimits(per_key=RateLimiter(rate_per_s=1, burst=1), per_ip=RateLimiter(rate_per_s=4, burst=1))
    assert limits.check("key", "ip", T0) == 0
    assert limits.check("key", "ip", T0) == 1_000
    assert limits.check("key", "ip", T0 + 250 * MS) == 750  # the IP's limit would allow it now
    assert limits.check("key", "ip", T0 + S) == 0


def test_an_unauthenticated_request_is_limited_per_ip_only() -> None:
    limits = _limits()
    assert [limits.check(None, "ip", T0) for _ in range(4)] == [0, 0, 0, 500]
    assert len(limits.per_key) == 0


def test_limits_from_settings() -> None:
    settings = Settings(rate_per_key_per_s=5, burst_per_key=6, rate_per_ip_per_s=7, burst_per_ip=8)
    limits = RateLimits.from_settings(settings)
    assert (limits.per_key.rate_per_s, limits.per_key.burst) == (5, 6)
    assert (limits.per_ip.rate_per_s, limits.per_ip.burst) == (7, 8)


# -- integers only ---------------------------------------------------------------------------


def test_the_module_has_no_float_arithmetic() -> None:
    tree = ast.parse(inspect.getsource(ratelimit))
    for node in ast.walk(tree):
        assert not (isinstance(node, ast.Constant) and isinstance(node.value, float)), ast.dump(node)
        assert not isinstance(node, ast.Div), "true division makes floats: use //"
        assert not (isinstance(node, ast.Name) and node.id in {"float", "math", "time"}), node.id


class _Model:
    """The definition, in exact rationals: level in tokens, refilled by elapsed seconds × rate."""

    def __init__(self, rate: int, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.buckets: dict[str, tuple[Fraction, int]] = {}

    def check(self, key: str, now_ns: int, cost: int) -> int:
        level, then = self.buckets.get(key, (Fraction(self.burst), now_ns))
        if now_ns > then:
            level, then = min(Fraction(self.burst), level + Fraction((now_ns - then) * self.rate, S)), now_ns
        if level >= cost:
            self.buckets[key] = (level - cost, then)
            return 0
        self.buckets[key] = (level, then)
        return math.ceil((cost - level) * 1_000 / self.rate)


@given(rate=st.integers(1, 5_000), burst=st.integers(1, 50),
       steps=st.lists(st.tuples(st.sampled_from("abc"), st.integers(-10 * MS, 2 * S), st.integers(1, 50)),
                      max_size=60))
def test_agrees_with_the_exact_rational_definition(rate: int, burst: int, steps: list[tuple[str, int, int]]) -> None:
    limiter, model = RateLimiter(rate, burst), _Model(rate, burst)
    now = T0
    for key, delta, wanted in steps:
        now += delta
        cost = min(wanted, burst)
        got = limiter.check(key, now, cost)
        assert type(got) is int
        assert got == model.check(key, now, cost)
