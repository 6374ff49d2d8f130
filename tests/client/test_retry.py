"""Safe retries: only what is idempotent is sent again, with the same identity (client order id or
Idempotency-Key), after a wait that honours Retry-After or backs off exponentially with jitter."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from exchange.client import (
    AsyncClient,
    Client,
    ConflictError,
    NetworkError,
    RateLimitedError,
    RejectedConflictError,
    RequestTimeoutError,
    RetryPolicy,
    UnavailableError,
    ValidationError,
)
from exchange.signing import HEADER_IDEMPOTENCY_KEY
from tests.client.helpers import (
    BASE_URL,
    KEY_ID,
    SECRET,
    AsyncSleeps,
    Clock,
    Script,
    Sleeps,
    body_json,
    error_response,
    json_response,
)

SYMBOL = "H100-M40-Z26"


def _client(script: Script, sleeps: Sleeps, max_retries: int = 3) -> Client:
    return Client(BASE_URL, KEY_ID, SECRET, transport=script.transport(), clock_s=Clock(), sleep=sleeps,
                  rng=lambda: 0.5, max_retries=max_retries)


def _unavailable(retry_after: str | None = None) -> httpx.Response:
    return error_response(503, "service_unavailable", headers={"Retry-After": retry_after} if retry_after else None)


def test_a_get_is_retried_on_503_and_honours_retry_after() -> None:
    script = Script(steps=[_unavailable("2"), _unavailable("1")], default={"cash": "10.00"})
    sleeps = Sleeps()
    with _client(script, sleeps) as client:
        assert client.balances() == {"cash": "10.00"}
    assert len(script.requests) == 3
    assert sleeps.waits == [2.0, 1.0]


def test_retry_after_is_capped() -> None:
    script = Script(steps=[_unavailable("3600")])
    sleeps = Sleeps()
    with _client(script, sleeps) as client:
        client.positions()
    assert sleeps.waits == [RetryPolicy().retry_after_max_s]


def test_without_retry_after_the_backoff_is_exponential_with_jitter() -> None:
    script = Script(steps=[_unavailable(), _unavailable(), _unavailable()])
    sleeps = Sleeps()
    with _client(script, sleeps) as client:
        client.ticker(SYMBOL)
    # ceilings 0.25, 0.5, 1.0 s; jitter draws 0.5 -> 3/4 of each ceiling
    assert sleeps.waits == [0.1875, 0.375, 0.75]


def test_jitter_spans_half_to_all_of_the_ceiling() -> None:
    policy = RetryPolicy(backoff_base_s=1.0, backoff_max_s=4.0)
    assert policy.backoff_s(0, lambda: 0.0) == 0.5
    assert policy.backoff_s(1, lambda: 0.999) == pytest.approx(2.0, rel=1e-3)
    assert policy.backoff_s(10, lambda: 0.0) == 2.0  # capped at backoff_max_s


def test_retries_stop_after_max_retries_and_raise_the_last_error() -> None:
    script = Script(steps=[_unavailable()] * 10)
    sleeps = Sleeps()
    with _client(script, sleeps, max_retries=2) as client, pytest.raises(UnavailableError):
        client.products()
    assert len(script.requests) == 3 and len(sleeps.waits) == 2

    script = Script(steps=[_unavailable()])
    with _client(script, Sleeps(), max_retries=0) as client, pytest.raises(UnavailableError):
        client.products()
    assert len(script.requests) == 1


def test_an_order_is_retried_after_a_connection_error_with_the_same_client_order_id() -> None:
    script = Script(steps=[httpx.ReadError("connection reset"), httpx.RemoteProtocolError("eof"),
                           json_response(200, {"id": "9", "status": "open"})])
    sleeps = Sleeps()
    with _client(script, sleeps) as client:
        order = client.place_order(SYMBOL, "buy", 2, price="2.30")
    assert order == {"id": "9", "status": "open"}
    assert len(script.requests) == 3
    ids = {body_json(r)["client_order_id"] for r in script.requests}
    assert len(ids) == 1 and len(ids.pop()) == 32  # generated once, reused by every attempt
    assert len({r.content for r in script.requests}) == 1  # the very same bytes each time
    assert all(HEADER_IDEMPOTENCY_KEY not in r.headers for r in script.requests)


def test_an_order_keeps_the_callers_client_order_id_and_each_call_gets_its_own() -> None:
    script = Script()
    with _client(script, Sleeps()) as client:
        client.place_order(SYMBOL, "buy", 1, price="2.30", client_order_id="mine-1")
        client.place_order(SYMBOL, "buy", 1, price="2.30")
        client.place_order(SYMBOL, "buy", 1, price="2.30")
    ids = [body_json(r)["client_order_id"] for r in script.requests]
    assert ids[0] == "mine-1" and len(set(ids)) == 3


def test_a_timed_out_order_is_retried_then_raises_request_timeout() -> None:
    script = Script(steps=[httpx.ReadTimeout("slow")] * 4)
    sleeps = Sleeps()
    with _client(script, sleeps) as client, pytest.raises(RequestTimeoutError) as caught:
        client.place_order(SYMBOL, "sell", 1, price="2.30")
    assert len(script.requests) == 4
    assert isinstance(caught.value, NetworkError) and caught.value.status == 0
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


def test_a_delete_carries_the_same_idempotency_key_across_retries() -> None:
    script = Script(steps=[httpx.ReadError("reset"), _unavailable("0"), json_response(200, {"status": "canceled"})])
    with _client(script, Sleeps()) as client:
        assert client.cancel_order("42") == {"status": "canceled"}
        client.cancel_order("43")
    keys = [r.headers[HEADER_IDEMPOTENCY_KEY] for r in script.requests]
    assert [r.method for r in script.requests] == ["DELETE"] * 4
    assert keys[0] == keys[1] == keys[2] != keys[3]  # one key per logical call


def test_a_callers_idempotency_key_is_used() -> None:
    script = Script()
    with _client(script, Sleeps()) as client:
        client.deposit(3, "100.00", idempotency_key="dep-2024-001")
    assert script.last.headers[HEADER_IDEMPOTENCY_KEY] == "dep-2024-001"


def test_idempotency_key_in_use_is_retried_but_a_conflict_is_not() -> None:
    script = Script(steps=[error_response(409, "idempotency_key_in_use", headers={"Retry-After": "1"})])
    sleeps = Sleeps()
    with _client(script, sleeps) as client:
        client.withdraw(3, "5")
    assert len(script.requests) == 2 and sleeps.waits == [1.0]

    script = Script(steps=[error_response(409, "idempotency_key_conflict")])
    with _client(script, Sleeps()) as client, pytest.raises(ConflictError):
        client.withdraw(3, "5")
    assert len(script.requests) == 1


@pytest.mark.parametrize(("status", "code", "error"), [
    (400, "malformed_json", ValidationError),
    (422, "price_outside_band", ValidationError),
    (409, "client_order_id_conflict", RejectedConflictError),
    (409, "insufficient_margin", RejectedConflictError),
])
def test_refusals_are_not_retried(status: int, code: str, error: type[Exception]) -> None:
    script = Script(steps=[error_response(status, code)])
    sleeps = Sleeps()
    with _client(script, sleeps) as client, pytest.raises(error):
        client.place_order(SYMBOL, "buy", 1, price="2.30")
    assert len(script.requests) == 1 and sleeps.waits == []


def test_a_non_idempotent_call_is_retried_only_when_certainly_not_acted_on() -> None:
    # create_api_key is not idempotent: a lost answer must not mint a second key
    script = Script(steps=[httpx.ReadError("reset")])
    with _client(script, Sleeps()) as client, pytest.raises(NetworkError) as caught:
        client.create_api_key(3, ["read"])
    assert len(script.requests) == 1 and caught.value.maybe_sent

    script = Script(steps=[_unavailable()])
    with _client(script, Sleeps()) as client, pytest.raises(UnavailableError):
        client.create_api_key(3, ["read"])
    assert len(script.requests) == 1

    script = Script(steps=[httpx.ConnectError("refused"), error_response(429, "rate_limited",
                                                                         headers={"Retry-After": "1"})])
    with _client(script, Sleeps()) as client:
        client.create_api_key(3, ["read", "trade"])
    assert len(script.requests) == 3


def test_rate_limits_are_retried_and_then_raised_with_retry_after() -> None:
    script = Script(steps=[error_response(429, "rate_limited", headers={"Retry-After": "4"})] * 4)
    sleeps = Sleeps()
    with _client(script, sleeps) as client, pytest.raises(RateLimitedError) as caught:
        client.account()
    assert sleeps.waits == [4.0, 4.0, 4.0]
    assert caught.value.retry_after_s == 4.0


def test_readiness_is_never_retried() -> None:
    script = Script(steps=[_unavailable("1")])
    with _client(script, Sleeps()) as client, pytest.raises(UnavailableError):
        client.ready()
    assert len(script.requests) == 1


def test_floats_are_refused_before_anything_is_sent() -> None:
    script = Script()
    with _client(script, Sleeps()) as client:
        with pytest.raises(TypeError, match="float"):
            client.place_order(SYMBOL, "buy", 1, price=2.3)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            client.place_order(SYMBOL, "buy", 1.0, price="2.3")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="float"):
            client.deposit(1, 100.0)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="float"):
            client.amend_order("5", price=2.5)  # type: ignore[arg-type]
    assert script.requests == []


def test_the_async_client_retries_the_same_way() -> None:
    script = Script(steps=[httpx.ConnectError("refused"), _unavailable("2"), json_response(201, {"id": "1"})])
    sleeps = AsyncSleeps()

    async def main() -> None:
        async with AsyncClient(BASE_URL, KEY_ID, SECRET, transport=script.transport(), clock_s=Clock(), sleep=sleeps,
                               rng=lambda: 0.0) as client:
            assert await client.place_order(SYMBOL, "buy", 1, price="2.3") == {"id": "1"}
            with pytest.raises(ValidationError):
                script.steps.append(error_response(422, "validation_error"))
                await client.cancel_all(SYMBOL)

    asyncio.run(main())
    assert sleeps.waits == [0.125, 2.0]
    assert len({r.content for r in script.requests[:3]}) == 1
    assert len(script.requests) == 4
