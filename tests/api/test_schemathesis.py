"""Property-based contract test of the REST API against its own OpenAPI document (Schemathesis).

Every operation of `/openapi.json` is exercised in process (ASGI) in all the phases the pytest
integration runs (explicit examples, coverage, fuzzing), in positive and negative mode, and every
response goes through all of Schemathesis's default checks: no 5xx, only declared status codes,
declared content types and headers, bodies matching their schemas, schema-valid input accepted
(2xx, or 401/403/404/409/429) and schema-invalid input rejected, undeclared methods answered 405 with
an `Allow` that lists the path's methods.

Each request is signed (the `EX-ACCESS-*` headers) over exactly the method, path with query and body
bytes that go on the wire: the signer is a `requests` auth hook, which runs on the prepared request.
Its key holds all three scopes, so the checks see what the handlers do rather than a wall of 401s.
The data directory is seeded with a book, trades and a filled and a cancelled order of the key's own
account, so that the market data and account answers are checked with content, not only empty.

Not exercised here, because they are not operations of the OpenAPI document: the WebSocket order
entry (`/v1/ws/orders`, see test_ws_orders.py); and the request headers the document does not
describe as parameters (the signature ones, declared as security schemes but left out of the copy used
here, see `_without_security`, and Idempotency-Key; see test_auth.py and test_orders.py).
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import requests
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from schemathesis import Case, HookContext
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.adapter import responses as schemathesis_responses
from schemathesis.specs.openapi.converter import to_json_schema

from exchange.api.app import create_app
from exchange.signing import HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, sign
from exchange.testing.api_harness import Credentials, bootstrap
from exchange.testing.specs import T0_NS, make_spec
from tests.api.conftest import CASH_MICROS, OTHER_SYMBOL, SYMBOL, Clock, make_settings

MAX_EXAMPLES = 60   # per operation in the fuzzing phase; the examples and coverage phases add their own


class SignRequest(requests.auth.AuthBase):
    """Signs the prepared request, so what it signs is byte for byte what the app receives."""

    def __init__(self, credentials: Credentials, clock: Clock) -> None:
        self.credentials = credentials
        self.clock = clock
        self.unique = itertools.count(1)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        assert request.method is not None
        body = request.body
        if body is None:
            body = b""
        elif isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes):
            raise TypeError(f"cannot sign a streamed body ({type(body).__name__})")
        # A fraction unique to each request, as the SDK does: identical requests are not replays.
        timestamp = f"{self.clock.now_ns // 1_000_000_000}.{next(self.unique) % 1_000_000:06d}"
        request.headers[HEADER_KEY] = self.credentials.key_id
        request.headers[HEADER_TIMESTAMP] = timestamp
        request.headers[HEADER_SIGNATURE] = sign(self.credentials.secret, timestamp, request.method,
                                                 request.path_url, body)
        return request


# The schema is the OpenAPI document of an app built by the same `create_app` (the document depends on
# the code, not on the data), taken at import since `parametrize` needs it then; that app is never
# started. The requests go to the module's own app (fixture below). (`schemathesis.pytest.from_fixture`
# would read the schema from a fixture, but it does not work with pytest 9.)


def _without_security(document: dict[str, Any]) -> dict[str, Any]:
    """The document without its security declarations. They name the three signature headers, which every
    request here carries (the signer adds them to the prepared request): Schemathesis's auth checks would
    drop one, the signer would put it back and the check would then see the request accepted. Unsigned
    requests are tested against the declarations in test_openapi.py."""
    document = copy.deepcopy(document)
    document.get("components", {}).pop("securitySchemes", None)
    for operations in document["paths"].values():
        for operation in operations.values():
            operation.pop("security", None)
    return document


schema = schemathesis.openapi.from_dict(
    _without_security(create_app(make_settings(Path("never-started")), list_calendar=False).openapi()))


# Random symbols and client order ids name nothing, so every answer about one would be a 404: now and
# then, a valid one in a path is swapped for one that exists (still valid, so the case keeps its mode).
KNOWN_PATH_VALUES = {"symbol": (re.compile(r"^[A-Z0-9][A-Z0-9-]{0,31}$"), [SYMBOL, OTHER_SYMBOL]),
                     "client_order_id": (re.compile(r"^[A-Za-z0-9_-]{1,36}$"), ["seed-take", "seed-cancel"])}


@schema.hook
def flatmap_path_parameters(_context: HookContext, path_parameters: dict[str, Any] | None) -> SearchStrategy[Any]:
    if not path_parameters:
        return st.just(path_parameters)
    options: list[st.SearchStrategy[dict[str, Any]]] = [st.just(path_parameters)]
    for name, (pattern, known) in KNOWN_PATH_VALUES.items():
        value = path_parameters.get(name)
        if isinstance(value, str) and pattern.match(value):
            options.append(st.sampled_from([{**path_parameters, name: existing} for existing in known]))
    return st.one_of(options)


@dataclass
class Exchange:
    app: FastAPI
    signer: SignRequest


def _seed(client: requests.Session, maker: SignRequest, taker: SignRequest) -> None:
    """A two-sided book (the maker's), a trade, and a filled and a cancelled order of the taker."""

    def call(who: SignRequest, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else None
        response = client.request(method, path, data=data, auth=who, headers={"content-type": "application/json"})
        assert response.status_code < 300, response.text

    call(maker, "POST", "/v1/orders", {"symbol": SYMBOL, "side": "sell", "amount": 5, "price": "2.400"})
    call(maker, "POST", "/v1/orders", {"symbol": SYMBOL, "side": "buy", "amount": 5, "price": "2.350"})
    call(taker, "POST", "/v1/orders", {"symbol": SYMBOL, "side": "buy", "amount": 2, "price": "2.400",
                                       "time_in_force": "IOC", "client_order_id": "seed-take"})
    call(taker, "POST", "/v1/orders", {"symbol": SYMBOL, "side": "buy", "amount": 1, "price": "2.300",
                                       "client_order_id": "seed-cancel"})
    call(taker, "DELETE", "/v1/orders/client/seed-cancel")


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    """One app and data directory for the whole module: the operations run against a shared state."""
    clock = Clock(T0_NS)
    settings_ = make_settings(tmp_path_factory.mktemp("schemathesis") / "data")
    superuser, maker = bootstrap(settings_, clock, series=[make_spec(SYMBOL), make_spec(OTHER_SYMBOL)],
                                 deposits_micros={1: CASH_MICROS, 2: CASH_MICROS},
                                 keys=[(1, ["read", "trade", "operator"]), (2, ["read", "trade"])])
    app = create_app(settings_, clock_ns=clock, list_calendar=False)
    signer = SignRequest(superuser, clock)
    with pytest.MonkeyPatch.context() as patch:
        # Schemathesis 4.32 rewrites a response schema's `prefixItems` (the book's [price, lots, orders]
        # levels) into the draft-7 `items: [...]`, then builds a Draft 2020-12 validator from it, which
        # refuses the schema (InvalidSchema; issues #3842 and #4099 fixed the same in other paths).
        # The 2020-12 validator reads `prefixItems` itself: keep it, so the tuples are checked in full.
        patch.setattr(schemathesis_responses, "to_json_schema",
                      functools.partial(to_json_schema, convert_prefix_items=False))
        try:
            # Entering the client starts the app's lifespan, which the ASGI transport then reuses.
            with schemathesis_asgi.get_client(cast(schemathesis_asgi.ASGIApp, app)) as client:
                _seed(client, SignRequest(maker, clock), signer)
            yield Exchange(app, signer)
        finally:
            schemathesis_asgi.shutdown_lifespans()   # stops the service: the sequencer commits, the store closes


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_api_conforms_to_its_schema(case: Case[Any], exchange: Exchange) -> None:
    case.call_and_validate(app=exchange.app, auth=exchange.signer)
