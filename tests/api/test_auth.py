"""The auth matrix of the REST API: signed-request checks, key scopes, revocation, ownership, rate limits.

Every refusal is asserted by HTTP status *and* `code`, and every refused request is shown to have
reached nothing: the journal seq (`GET /ready`) and the account's orders are the same afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from exchange.api.app import create_app
from exchange.api.runtime import Runtime
from exchange.signing import HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP
from exchange.testing.api_harness import Credentials, bootstrap, json_body, signed_headers
from exchange.testing.specs import T0_NS, make_spec
from tests.api.conftest import CASH_MICROS, SYMBOL, Api, Clock, make_settings

ORDER = {"symbol": SYMBOL, "side": "buy", "amount": 1, "price": "2.300"}
ORDER_BODY = json_body(ORDER)
WINDOW_S = 5   # Settings.signature_window_s, the default the `api` fixture runs with


@pytest.fixture(scope="module")
def shared_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The `api` fixture's exchange, once for the module: for the cases that leave no trace (refusals) or
    are checked against the state just before them. Revocation and ownership get a fresh `api` each."""
    clock = Clock(T0_NS)
    settings = make_settings(tmp_path_factory.mktemp("auth") / "data")
    creds = bootstrap(settings, clock, series=[make_spec(SYMBOL)],
                      deposits_micros={1: CASH_MICROS, 2: CASH_MICROS, 100: 0},
                      keys=[(1, ["read", "trade"]), (2, ["read", "trade"]), (1, ["read"]), (100, ["operator"])])
    keys = dict(zip(("alice", "bob", "alice_readonly", "operator"), creds, strict=True))
    with TestClient(create_app(settings, clock_ns=clock, list_calendar=False)) as client:
        yield Api(client, clock, keys, settings)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes
    headers: dict[str, str]


def now_s(api: Api) -> int:
    return api.clock.now_ns // 1_000_000_000


def signed(api: Api, who: str | Credentials = "alice", method: str = "POST", path: str = "/v1/orders",
           body: bytes = ORDER_BODY, *, timestamp_s: int | None = None) -> Request:
    """A correctly signed request (placing an order unless told otherwise): the base every case alters."""
    credentials = api.keys[who] if isinstance(who, str) else who
    timestamp = now_s(api) if timestamp_s is None else timestamp_s
    return Request(method, path, body, signed_headers(credentials, method, path, body, timestamp))


def send(api: Api, request: Request) -> httpx.Response:
    response: httpx.Response = api.client.request(request.method, request.path, content=request.body,
                                                  headers=request.headers)
    return response


def journal_seq(api: Api) -> int:
    seq: int = api.client.get("/ready").json()["journal_seq"]
    return seq


def orders_of(api: Api, who: str) -> list[dict[str, Any]]:
    response = api.call(who, "GET", "/v1/orders?status=all")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def runtime_of(api: Api) -> Runtime:
    runtime: Runtime = cast(FastAPI, api.client.app).state.runtime
    return runtime


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert (response.status_code, response.json().get("code")) == (status, code), response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "details"}
    return body


def without(request: Request, *names: str) -> Request:
    return replace(request, headers={k: v for k, v in request.headers.items() if k not in names})


def with_headers(request: Request, **values: str) -> Request:
    renamed = {"key": HEADER_KEY, "timestamp": HEADER_TIMESTAMP, "signature": HEADER_SIGNATURE}
    return replace(request, headers={**request.headers, **{renamed[k]: v for k, v in values.items()}})


def place_order(api: Api, who: str = "alice", **more: Any) -> dict[str, Any]:
    response = api.call(who, "POST", "/v1/orders", {**ORDER, **more})
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


def _method_altered(api: Api) -> Request:
    """Signed as a harmless GET of an order, sent as a DELETE of it."""
    order_id = place_order(api)["id"]
    request = signed(api, method="GET", path=f"/v1/orders/{order_id}", body=b"")
    return replace(request, method="DELETE")


def _query_altered(api: Api) -> Request:
    return replace(signed(api, method="GET", path="/v1/orders?status=open", body=b""),
                   path="/v1/orders?status=all")


def _path_altered(api: Api) -> Request:
    """Signed for cancel-all (with an empty filter), sent to order entry with the same body."""
    return replace(signed(api, path="/v1/orders/cancel-all", body=ORDER_BODY), path="/v1/orders")


def _unknown_key(api: Api) -> Request:
    stranger = Credentials(1, "ak_0123456789abcdef", api.keys["alice"].secret, ("read", "trade"))
    return signed(api, stranger)


def _wrong_secret(api: Api) -> Request:
    alice, bob = api.keys["alice"], api.keys["bob"]
    return signed(api, Credentials(alice.account_id, alice.key_id, bob.secret, alice.scopes))


def _signed_other_timestamp(api: Api) -> Request:
    """The signature is over one timestamp, the header carries another (both inside the window)."""
    request = signed(api, timestamp_s=now_s(api) - 1)
    return with_headers(request, timestamp=str(now_s(api)))


def _garbage_signature(api: Api) -> Request:
    return with_headers(signed(api), signature="bm90IGEgc2lnbmF0dXJl")


def _other_body(api: Api) -> Request:
    return replace(signed(api), body=json_body({**ORDER, "amount": 2}))


Builder = Callable[[Api], Request]

REFUSED: list[Any] = [
    # -- headers missing (401 auth_missing) ------------------------------------------------------
    pytest.param(lambda api: without(signed(api), HEADER_KEY), 401, "auth_missing", id="missing-key"),
    pytest.param(lambda api: without(signed(api), HEADER_TIMESTAMP), 401, "auth_missing", id="missing-timestamp"),
    pytest.param(lambda api: without(signed(api), HEADER_SIGNATURE), 401, "auth_missing", id="missing-signature"),
    pytest.param(lambda api: without(signed(api), HEADER_KEY, HEADER_TIMESTAMP, HEADER_SIGNATURE), 401,
                 "auth_missing", id="missing-all-three"),
    pytest.param(lambda api: with_headers(signed(api), key=""), 401, "auth_missing", id="empty-key"),
    # -- the key ------------------------------------------------------------------------------------
    pytest.param(_unknown_key, 401, "auth_unknown_key", id="unknown-key"),
    pytest.param(lambda api: with_headers(signed(api), key="k" * 33), 401, "auth_unknown_key",
                 id="key-id-too-long"),
    # -- the signature ------------------------------------------------------------------------------
    pytest.param(_garbage_signature, 401, "auth_bad_signature", id="bad-signature"),
    pytest.param(_wrong_secret, 401, "auth_bad_signature", id="signed-with-another-keys-secret"),
    pytest.param(_signed_other_timestamp, 401, "auth_bad_signature", id="signed-over-another-timestamp"),
    pytest.param(lambda api: with_headers(signed(api), signature="A" * 129), 401, "auth_bad_signature",
                 id="signature-too-long"),
    # -- the timestamp ------------------------------------------------------------------------------
    pytest.param(lambda api: with_headers(signed(api), timestamp="soon"), 401, "auth_invalid_timestamp",
                 id="timestamp-not-a-number"),
    pytest.param(lambda api: with_headers(signed(api), timestamp=f"{now_s(api)}.1234567"), 401,
                 "auth_invalid_timestamp", id="timestamp-finer-than-microseconds"),
    pytest.param(lambda api: with_headers(signed(api), timestamp=f"-{now_s(api)}"), 401,
                 "auth_invalid_timestamp", id="timestamp-negative"),
    pytest.param(lambda api: with_headers(signed(api), timestamp=f"{now_s(api)}000"), 401,
                 "auth_invalid_timestamp", id="timestamp-in-milliseconds"),
    pytest.param(lambda api: signed(api, timestamp_s=now_s(api) - WINDOW_S - 1), 401,
                 "auth_timestamp_out_of_window", id="timestamp-stale-6s"),
    pytest.param(lambda api: signed(api, timestamp_s=now_s(api) + WINDOW_S + 1), 401,
                 "auth_timestamp_out_of_window", id="timestamp-future-6s"),
    pytest.param(lambda api: signed(api, timestamp_s=now_s(api) - 3600), 401,
                 "auth_timestamp_out_of_window", id="timestamp-replayed-an-hour-later"),
    # -- the request altered after signing ------------------------------------------------------------
    pytest.param(_other_body, 401, "auth_bad_signature", id="body-altered"),
    pytest.param(lambda api: replace(signed(api), body=b""), 401, "auth_bad_signature", id="body-dropped"),
    pytest.param(_path_altered, 401, "auth_bad_signature", id="path-altered"),
    pytest.param(_query_altered, 401, "auth_bad_signature", id="query-altered"),
    pytest.param(lambda api: replace(signed(api), path="/v1/orders?dry_run=1"), 401, "auth_bad_signature",
                 id="query-added"),
    pytest.param(_method_altered, 401, "auth_bad_signature", id="method-altered"),
]


@pytest.mark.parametrize(("build", "status", "code"), REFUSED)
def test_refused_requests_reach_nothing(shared_api: Api, build: Builder, status: int, code: str) -> None:
    api = shared_api
    request = build(api)
    seq_before, orders_before = journal_seq(api), orders_of(api, "alice")

    assert_error(send(api, request), status, code)

    assert journal_seq(api) == seq_before
    assert orders_of(api, "alice") == orders_before


@pytest.mark.parametrize("offset_s", [-WINDOW_S, 0, WINDOW_S], ids=["edge-past-5s", "now", "edge-future-5s"])
def test_timestamps_inside_the_window_are_accepted(shared_api: Api, offset_s: int) -> None:
    api = shared_api
    before = orders_of(api, "alice")
    response = send(api, signed(api, timestamp_s=now_s(api) + offset_s))
    assert response.status_code == 201, response.text
    assert orders_of(api, "alice") == [*before, response.json()]


def test_a_correctly_signed_request_with_a_query_is_accepted(shared_api: Api) -> None:
    api = shared_api
    order = place_order(api)
    path = f"/v1/orders?status=open&limit=500&cursor={int(order['id']) - 1}"
    response = send(api, signed(api, method="GET", path=path, body=b""))
    assert response.status_code == 200, response.text
    assert response.json()["items"] == [order]


def test_the_signed_path_is_the_target_as_sent_percent_encoding_included(shared_api: Api) -> None:
    """A client signs the path it sends (encoded); the server must not verify against the decoded one."""
    api = shared_api
    encoded = "/v1/orders/client/no%20spaces%20allowed"
    response = send(api, signed(api, method="GET", path=encoded, body=b""))
    assert_error(response, 422, "validation_error")   # past the signature: the id itself is refused
    decoded = replace(signed(api, method="GET", path="/v1/orders/client/no spaces allowed", body=b""), path=encoded)
    assert_error(send(api, decoded), 401, "auth_bad_signature")


@pytest.mark.parametrize(("who", "method", "path", "body", "required"), [
    pytest.param("alice_readonly", "POST", "/v1/orders", ORDER, "trade", id="read-key-places-order"),
    pytest.param("alice_readonly", "POST", "/v1/orders/cancel-all", {}, "trade", id="read-key-cancels-all"),
    pytest.param("alice_readonly", "POST", "/v1/cancel-all-after", {"timeout_seconds": 5}, "trade",
                 id="read-key-arms-dead-mans-switch"),
    pytest.param("alice", "POST", "/v1/admin/accounts", {}, "operator", id="trade-key-creates-account"),
    pytest.param("alice", "POST", "/v1/admin/accounts/1/deposits", {"amount": "5"}, "operator",
                 id="trade-key-deposits-to-itself"),
    pytest.param("alice", "PUT", f"/v1/admin/series/{SYMBOL}/halt", {"halted": True}, "operator",
                 id="trade-key-halts-series"),
    pytest.param("alice", "POST", "/v1/admin/api-keys", {"account_id": 1, "scopes": ["operator"]}, "operator",
                 id="trade-key-mints-operator-key"),
    pytest.param("operator", "GET", "/v1/orders", None, "read", id="operator-key-reads-orders"),
    pytest.param("operator", "GET", "/v1/balances", None, "read", id="operator-key-reads-balances"),
    pytest.param("operator", "POST", "/v1/orders", ORDER, "trade", id="operator-key-places-order"),
])
def test_keys_are_held_to_their_scopes(shared_api: Api, who: str, method: str, path: str, body: Any,
                                       required: str) -> None:
    api = shared_api
    seq_before, orders_before = journal_seq(api), orders_of(api, "alice")

    error = assert_error(api.call(who, method, path, body), 403, "forbidden_scope")

    assert error["details"] == {"required": required, "granted": list(api.keys[who].scopes)}
    assert journal_seq(api) == seq_before
    assert orders_of(api, "alice") == orders_before


def test_a_revoked_key_is_refused_once_the_cache_forgets_it(api: Api) -> None:
    alice = api.keys["alice"]
    assert api.call("alice", "GET", "/v1/balances").status_code == 200   # the key is cached now
    runtime = runtime_of(api)
    assert runtime.store.revoke_api_key(alice.key_id, api.clock.now_ns)
    runtime.forget_key(alice.key_id)
    seq_before = journal_seq(api)

    assert_error(api.call("alice", "POST", "/v1/orders", ORDER), 401, "auth_key_revoked")
    assert_error(api.call("alice", "GET", "/v1/orders"), 401, "auth_key_revoked")

    assert journal_seq(api) == seq_before
    assert api.call("alice_readonly", "GET", "/v1/orders").json()["items"] == []   # the account's other key works


@pytest.mark.parametrize(("method", "path", "body", "code"), [
    pytest.param("GET", "/v1/orders/{id}", None, "not_found", id="get-by-id"),
    pytest.param("GET", "/v1/orders/client/mine", None, "not_found", id="get-by-client-id"),
    pytest.param("PATCH", "/v1/orders/{id}", {"amount": 2}, "order_not_open", id="amend-size-by-id"),
    pytest.param("PATCH", "/v1/orders/{id}", {"price": "2.350"}, "not_found", id="amend-price-by-id"),
    pytest.param("PATCH", "/v1/orders/client/mine", {"amount": 2}, "order_not_open", id="amend-by-client-id"),
    pytest.param("DELETE", "/v1/orders/{id}", None, "order_not_open", id="cancel-by-id"),
    pytest.param("DELETE", "/v1/orders/client/mine", None, "order_not_open", id="cancel-by-client-id"),
])
def test_another_accounts_orders_are_not_found_and_untouched(api: Api, method: str, path: str, body: Any,
                                                            code: str) -> None:
    """Another account's order looks exactly like no order at all (404, never 403: ids do not leak).

    Reads (and an amend of the price, which looks the order up first) are refused by the API; a cancel or
    an amend of the size goes to the engine, which refuses it as for any order not open: that refusal is
    journaled (one seq), like every command the sequencer takes, and changes nothing."""
    order = place_order(api, client_order_id="mine")
    before = api.call("alice", "GET", f"/v1/orders/{order['id']}").json()
    seq_before = journal_seq(api)

    assert_error(api.call("bob", method, path.format(id=order["id"]), body), 404, code)

    assert journal_seq(api) == seq_before + (1 if code == "order_not_open" else 0)
    assert api.call("alice", "GET", f"/v1/orders/{order['id']}").json() == before
    assert before["status"] == "open"


def test_cancel_all_never_reaches_another_accounts_orders(api: Api) -> None:
    order = place_order(api)
    response = api.call("bob", "POST", "/v1/orders/cancel-all", {})
    assert (response.status_code, response.json()) == (200, {"cancelled": 0})
    assert api.call("alice", "GET", f"/v1/orders/{order['id']}").json()["status"] == "open"


# -- rate limits: an app of its own with a tiny per-key budget ---------------------------------------


@pytest.fixture
def limited_api(tmp_path: Path) -> Iterator[Api]:
    clock = Clock(T0_NS)
    settings = make_settings(tmp_path / "data", rate_per_key_per_s=1, burst_per_key=2)
    alice, bob = bootstrap(settings, clock, series=[make_spec(SYMBOL)],
                           deposits_micros={1: CASH_MICROS, 2: CASH_MICROS},
                           keys=[(1, ["read", "trade"]), (2, ["read", "trade"])])
    with TestClient(create_app(settings, clock_ns=clock, list_calendar=False)) as client:
        yield Api(client, clock, {"alice": alice, "bob": bob}, settings)


def test_a_key_over_its_rate_is_told_when_to_come_back(limited_api: Api) -> None:
    api = limited_api
    assert [api.call("alice", "GET", "/v1/balances").status_code for _ in range(2)] == [200, 200]   # the burst
    seq_before = journal_seq(api)

    response = api.call("alice", "POST", "/v1/orders", ORDER)

    error = assert_error(response, 429, "rate_limited")
    assert error["details"] == {"retry_after_ms": 1_000}   # one token at 1/s: exactly a second to wait
    assert response.headers["Retry-After"] == "1"
    assert journal_seq(api) == seq_before
    assert api.call("bob", "GET", "/v1/orders").status_code == 200   # the limit is per key

    api.clock.advance_s(0.999)
    error = assert_error(api.call("alice", "POST", "/v1/orders", ORDER), 429, "rate_limited")
    assert error["details"] == {"retry_after_ms": 1}
    api.clock.advance_s(0.001)
    assert api.call("alice", "POST", "/v1/orders", ORDER).status_code == 201


def test_refused_signatures_do_not_spend_the_keys_budget(limited_api: Api) -> None:
    api = limited_api
    for _ in range(5):
        assert_error(send(api, _garbage_signature(api)), 401, "auth_bad_signature")
    assert [api.call("alice", "GET", "/v1/balances").status_code for _ in range(3)] == [200, 200, 429]
