"""Two clients (two processes, say) sending the same request in the same second must not sign it the same
way: the server accepts an acting signature once, so the second would be refused as a replay. Found by
the operator CLI: `exchange deposit ... --reference R` run twice within a second got `auth_replayed`."""

from __future__ import annotations

from exchange.client import Client
from exchange.client.calls import Call
from exchange.signing import HEADER_SIGNATURE, HEADER_TIMESTAMP


def test_fresh_clients_sign_the_same_request_differently_within_a_second() -> None:
    call = Call.mutation("POST", "/v1/admin/accounts/7/deposits", {"amount": "10"}, idempotency_key="wire-7")
    first = Client("http://127.0.0.1:1", "ak_0123456789abcdef", "secret")._prepare(call).headers
    second = Client("http://127.0.0.1:1", "ak_0123456789abcdef", "secret")._prepare(call).headers
    assert "." in first[HEADER_TIMESTAMP]                       # microseconds, not whole seconds
    assert first[HEADER_SIGNATURE] != second[HEADER_SIGNATURE]
