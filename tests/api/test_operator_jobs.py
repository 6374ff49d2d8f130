"""The operator endpoints settlement jobs use (`POST /v1/admin/commands`, `GET /v1/admin/jobs`,
`PUT /v1/admin/telemetry/{name}`) and the statements owners read (`GET /v1/statements`)."""

from __future__ import annotations

import hashlib

import httpx

from exchange.api.job_schemas import command_json
from exchange.domain.commands import AdvanceTime, AssignDeliveries, SettleDaily
from exchange.jobs.inbox import inbox_dir
from exchange.store.job_log import JobLog
from exchange.store.statement_archive import StatementArchive
from tests.api.conftest import SYMBOL, Api


def test_a_settlement_command_is_sequenced_and_answered_with_its_seq(api: Api) -> None:
    response = api.call("operator", "POST", "/v1/admin/commands", {"command": command_json(AdvanceTime())})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["seq"] > 0 and answer["events"] == []
    response = api.call("operator", "POST", "/v1/admin/commands", {"command": command_json(AssignDeliveries(SYMBOL))})
    assert response.status_code == 200 and answer["seq"] < response.json()["seq"]
    assert response.json()["events"] == ["Rejected"]   # not terminated: the core's answer, in the journal


def test_only_settlement_commands_are_taken(api: Api) -> None:
    for command in ({"kind": "deposit", "account_id": 1, "amount_micros": 10**6}, [2, 1, 10**6],
                    {"kind": "settle_daily", "symbol": SYMBOL, "date_ns": 0, "price_ticks": 0, "postings": [],
                     "digest": "0" * 64}):
        response = api.call("operator", "POST", "/v1/admin/commands", {"command": command})
        assert (response.status_code, response.json()["code"]) == (422, "validation_error"), command


def test_the_command_endpoint_refuses_a_trader_before_reading_a_large_body(api: Api) -> None:
    command = command_json(SettleDaily(SYMBOL, 0, 1, tuple((a, 1) for a in range(1, 3_000)), "d" * 64))
    response = api.call("alice", "POST", "/v1/admin/commands", {"command": command})
    assert (response.status_code, response.json()["code"]) == (403, "forbidden_scope")
    # The operator may send it (60 KB: more than the 16 KB other bodies may have).
    response = api.call("operator", "POST", "/v1/admin/commands", {"command": command})
    assert response.status_code == 200, response.text


def test_job_runs_are_listed_newest_first_with_pages(api: Api) -> None:
    log = JobLog(api.client.app.state.runtime.store)   # type: ignore[attr-defined]
    first = log.start("daily", "daily:2026-12-01", "schedule", 1, 10)
    log.finish(first, "failed", 20, {}, "boom")
    second = log.start("daily", "daily:2026-12-01", "retry", 2, 30)
    log.progress(second, 3, 4)
    page = api.call("operator", "GET", "/v1/admin/jobs?limit=1").json()
    assert [r["run_id"] for r in page["items"]] == [second] and page["next_cursor"] == str(second)
    assert page["items"][0]["progress"] == {"done": 3, "total": 4} and page["items"][0]["state"] == "running"
    older = api.call("operator", "GET", f"/v1/admin/jobs?limit=1&cursor={page['next_cursor']}").json()
    assert older["items"][0]["error"] == "boom" and older["items"][0]["duration_ms"] == 0
    assert older["next_cursor"] is None
    assert api.call("alice", "GET", "/v1/admin/jobs").status_code == 403


def test_a_telemetry_upload_is_checked_then_put_in_the_inbox(api: Api) -> None:
    body = b"delivery_id,node_id\n" * 5_000
    path = "/v1/admin/telemetry/probe-1.csv"
    response = _put(api, path, body)
    assert response.status_code == 200 and response.json()["created"] is True, response.text
    assert response.json()["sha256"] == hashlib.sha256(body).hexdigest()
    assert (inbox_dir(api.settings.data_dir) / "probe-1.csv").read_bytes() == body
    assert _put(api, path, body).json()["created"] is False            # the same again: idempotent
    response = _put(api, path, b"other\n")
    assert (response.status_code, response.json()["code"]) == (409, "upload_exists")
    # Signed for one body, sent with another: refused, and nothing enters the inbox.
    response = _put(api, "/v1/admin/telemetry/probe-2.csv", b"tampered", signed_body=body)
    assert (response.status_code, response.json()["code"]) == (401, "auth_bad_signature")
    assert not (inbox_dir(api.settings.data_dir) / "probe-2.csv").exists()
    assert not [p for p in inbox_dir(api.settings.data_dir).iterdir() if p.name.startswith(".")]
    response = _put(api, "/v1/admin/telemetry/..%2Fescape.csv", body)
    assert response.status_code in (404, 422)
    trader = _put(api, "/v1/admin/telemetry/probe-3.csv", body, who="alice")
    assert (trader.status_code, trader.json()["code"]) == (403, "forbidden_scope")


def _put(api: Api, path: str, body: bytes, signed_body: bytes | None = None, who: str = "operator",
         ) -> httpx.Response:
    from exchange.testing.api_harness import signed_headers

    headers = signed_headers(api.keys[who], "PUT", path, body if signed_body is None else signed_body,
                             api.clock.now_ns // 1_000_000_000)
    response: httpx.Response = api.client.request("PUT", path, content=body, headers=headers)
    return response


def test_statements_are_each_owners_only(api: Api) -> None:
    archive = StatementArchive(api.client.app.state.runtime.store)   # type: ignore[attr-defined]
    day = 86_400 * 10**9
    for n in range(3):
        archive.write("daily", f"2026-12-0{n + 1}", [(1, n * day, {"account_id": 1, "date": f"2026-12-0{n + 1}",
                                                                  "currency": "USD", "lines": [],
                                                                  "total_variation_margin": "0"}),
                                                    (2, n * day, {"account_id": 2, "lines": []})], 1)
    page = api.call("alice", "GET", "/v1/statements?limit=2").json()
    assert [s["ref"] for s in page["items"]] == ["2026-12-03", "2026-12-02"]
    rest = api.call("alice", "GET", f"/v1/statements?limit=2&cursor={page['next_cursor']}").json()
    assert [s["ref"] for s in rest["items"]] == ["2026-12-01"] and rest["next_cursor"] is None
    assert api.call("alice", "GET", "/v1/statements/daily/2026-12-02").json()["account_id"] == 1
    assert api.call("carol_broke", "GET", "/v1/statements/daily/2026-12-02").status_code == 404
    csv = api.call("alice", "GET", "/v1/statements/daily/2026-12-02?format=csv")
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.splitlines()[-1] == "total,,,,,0"


def test_a_deposit_retried_after_its_answer_was_lost_moves_cash_once(api: Api) -> None:
    """The crash window: the deposit is durable in the journal but its Idempotency-Key answer was never
    stored (the process died in between). The retry runs the action again; the core recognises the
    reference (the key) and moves nothing."""
    from sqlalchemy import delete

    from exchange.store.models import IdempotencyRecord

    runtime = api.client.app.state.runtime   # type: ignore[attr-defined]
    before = runtime.engine.cash_micros(2)
    headers = {"Idempotency-Key": "wire-2026-12-05-001"}
    first = api.call("operator", "POST", "/v1/admin/accounts/2/deposits", {"amount": "100.00"}, headers=headers)
    assert first.status_code == 200, first.text
    with runtime.store.transaction(write=True) as conn:
        assert conn.execute(delete(IdempotencyRecord)).rowcount == 1   # the stored answer is lost
    api.clock.advance_s(1)
    retry = api.call("operator", "POST", "/v1/admin/accounts/2/deposits", {"amount": "100.00"}, headers=headers)
    assert retry.status_code == 200 and retry.json() == first.json(), retry.text
    assert runtime.engine.cash_micros(2) == before + 100_000_000
    other = api.call("operator", "POST", "/v1/admin/accounts/2/deposits", {"amount": "100.00"},
                     headers={"Idempotency-Key": "wire-2026-12-05-002"})
    assert other.status_code == 200 and runtime.engine.cash_micros(2) == before + 200_000_000
