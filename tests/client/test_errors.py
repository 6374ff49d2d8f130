"""Error mapping: every status class and engine refusal gets its exception class, and answers that
are not the exchange's JSON error shape (a proxy's HTML 502, an empty body) still map cleanly."""

from __future__ import annotations

import pickle

import httpx
import pytest

from exchange.client import (
    AuthError,
    Client,
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
    ServerError,
    UnavailableError,
    ValidationError,
    error_from_response,
)
from exchange.domain.codes import RejectCode
from tests.client.helpers import BASE_URL, KEY_ID, SECRET, Clock, Script, Sleeps, error_response


def _body(code: str, message: str = "no", details: dict[str, object] | None = None) -> dict[str, object]:
    return {"code": code, "message": message, "details": details or {}}


@pytest.mark.parametrize(("status", "code", "cls"), [
    (400, "malformed_json", ValidationError),
    (400, "idempotency_key_invalid", ValidationError),
    (401, "auth_bad_signature", AuthError),
    (403, "forbidden_scope", ForbiddenError),
    (404, "not_found", NotFoundError),
    (405, "method_not_allowed", ExchangeError),
    (409, "idempotency_key_conflict", ConflictError),
    (413, "body_too_large", ValidationError),
    (422, "validation_error", ValidationError),
    (429, "rate_limited", RateLimitedError),
    (500, "internal_error", ServerError),
    (503, "service_unavailable", UnavailableError),
])
def test_api_errors_map_by_status(status: int, code: str, cls: type[ExchangeError]) -> None:
    error = error_from_response(status, _body(code, "human text", {"field": "price"}))
    assert type(error) is cls
    assert (error.status, error.code, error.message, error.details) == (status, code, "human text", {"field": "price"})
    assert not isinstance(error, RejectedError)
    assert str(error) == f"{status} {code}: human text"


@pytest.mark.parametrize(("status", "code", "cls", "also"), [
    (404, "order_not_open", RejectedNotFoundError, NotFoundError),
    (404, "unknown_series", RejectedNotFoundError, NotFoundError),
    (409, "insufficient_margin", RejectedConflictError, ConflictError),
    (409, "client_order_id_conflict", RejectedConflictError, ConflictError),
    (409, "series_halted", RejectedConflictError, ConflictError),
    (422, "price_outside_band", RejectedValidationError, ValidationError),
    (400, "invalid_price", RejectedValidationError, ValidationError),
    (500, "invalid_amount", RejectedError, RejectedError),
])
def test_engine_refusals_are_rejected_errors_of_their_status_class(status: int, code: str, cls: type[ExchangeError],
                                                                    also: type[ExchangeError]) -> None:
    error = error_from_response(status, _body(code))
    assert type(error) is cls
    assert isinstance(error, RejectedError) and isinstance(error, also)


def test_every_reject_code_maps_to_a_rejected_error() -> None:
    for code in RejectCode:
        assert isinstance(error_from_response(422, _body(code.value)), RejectedError)


def test_a_non_json_502_from_a_proxy_is_a_server_error() -> None:
    html = b"<html>\n<head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>"
    error = error_from_response(502, html, {"content-type": "text/html"})
    assert type(error) is ServerError
    assert error.code == "http_502"
    assert error.message.startswith("<html> <head><title>502 Bad Gateway")
    assert error.details == {} and error.retry_after_s is None


@pytest.mark.parametrize("body", [b"", "", None, b"\xff\xfe garbage", b"[1, 2]", b'{"code": 5}', b"null"])
def test_odd_bodies_still_map(body: object) -> None:
    error = error_from_response(400, body)
    assert type(error) is ValidationError
    assert error.code == "http_400"
    assert error.message


def test_raw_json_bytes_are_parsed() -> None:
    error = error_from_response(409, b'{"code":"series_halted","message":"halted","details":{"symbol":"X"}}')
    assert isinstance(error, RejectedConflictError) and error.details == {"symbol": "X"}


def test_retry_after_is_read_case_insensitively_and_falls_back_to_details() -> None:
    assert error_from_response(429, _body("rate_limited"), {"retry-after": "3"}).retry_after_s == 3.0
    assert error_from_response(503, _body("service_unavailable"), {"RETRY-AFTER": "0.5"}).retry_after_s == 0.5
    assert error_from_response(429, _body("rate_limited"), {"Retry-After": "soon"}).retry_after_s is None
    assert error_from_response(429, _body("rate_limited", details={"retry_after_ms": 1500})).retry_after_s == 1.5


def test_errors_survive_pickling() -> None:
    error = error_from_response(409, _body("insufficient_margin", "need more"), {"Retry-After": "2"})
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is RejectedConflictError
    assert (copy.status, copy.code, copy.message, copy.retry_after_s) == (409, "insufficient_margin", "need more", 2.0)
    network = pickle.loads(pickle.dumps(NetworkError(message="reset", maybe_sent=False)))
    assert type(network) is NetworkError and network.maybe_sent is False and network.message == "reset"


def test_the_client_raises_mapped_errors_for_a_proxy_502_without_retrying() -> None:
    script = Script(steps=[httpx.Response(502, content=b"Bad Gateway", headers={"content-type": "text/plain"})])
    sleeps = Sleeps()
    with (Client(BASE_URL, KEY_ID, SECRET, transport=script.transport(), clock_s=Clock(), sleep=sleeps) as client,
          pytest.raises(ServerError) as caught):
        client.balances()
    assert (caught.value.status, caught.value.code, caught.value.message) == (502, "http_502", "Bad Gateway")
    assert len(script.requests) == 1


def test_a_success_that_is_not_a_json_object_is_a_server_error() -> None:
    script = Script(steps=[httpx.Response(200, content=b"<html>"), httpx.Response(200, content=b"")])
    with Client(BASE_URL, KEY_ID, SECRET, transport=script.transport(), sleep=Sleeps()) as client:
        with pytest.raises(ServerError) as caught:
            client.balances()
        assert caught.value.code == "invalid_response"
        assert client.balances() == {}


def test_a_client_error_passes_through_the_retry_loop_unchanged() -> None:
    script = Script(steps=[error_response(403, "forbidden_scope", "needs trade")])
    with (Client(BASE_URL, KEY_ID, SECRET, transport=script.transport(), sleep=Sleeps()) as client,
          pytest.raises(ForbiddenError, match="needs trade")):
        client.cancel_all()
