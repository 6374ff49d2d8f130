"""The settlement calendar (`exchange.jobs.scheduler.due_jobs`): which jobs are due when, pure."""

from __future__ import annotations

from exchange.catalog import load_catalog
from exchange.domain.commands import CreateAccount, ListSeries
from exchange.domain.engine import Engine
from exchange.jobs.scheduler import DueJob, due_jobs, latest_cut_ns, retry_delay_s
from exchange.testing.specs import DELIVERY_START_NS, T0_NS, make_spec

H = 3_600 * 10**9
DAY = 24 * H
S = 10**9
RULES = load_catalog().rules
SYMBOL = "H100-M40-261203"


def _engine() -> Engine:
    engine = Engine(RULES.engine_limits())
    engine.apply(CreateAccount(1), T0_NS)
    engine.apply(ListSeries(make_spec(SYMBOL)), T0_NS)
    return engine


def test_the_daily_job_is_due_after_each_cut_once() -> None:
    engine = _engine()
    cut = latest_cut_ns(T0_NS + DAY, 16)
    assert cut % DAY == 16 * H and cut <= T0_NS + DAY < cut + DAY
    before = due_jobs(engine, RULES, cut + 4 * S, 5 * S, set(), started_ns=cut - H)
    assert [j.key for j in before] == [f"daily:{_day(cut - DAY)}"]   # the grace has not passed: the previous cut
    jobs = due_jobs(engine, RULES, cut + 6 * S, 5 * S, set(), started_ns=cut - H)
    assert jobs == [DueJob("daily", f"daily:{_day(cut)}", ("daily", "--date", _day(cut)), "schedule")]
    assert due_jobs(engine, RULES, cut + 6 * S, 5 * S, {f"daily:{_day(cut)}"}, started_ns=cut - H) == []


def test_a_cut_passed_before_the_start_is_caught_up() -> None:
    engine = _engine()
    cut = latest_cut_ns(T0_NS, 16)
    (job,) = due_jobs(engine, RULES, cut + 3 * H, 5 * S, set(), started_ns=cut + 3 * H)
    assert (job.key, job.trigger) == (f"daily:{_day(cut)}", "catch-up")


def test_nothing_is_due_on_an_exchange_without_series() -> None:
    assert due_jobs(Engine(RULES.engine_limits()), RULES, T0_NS, 0, set(), T0_NS) == []


def test_retries_back_off_to_a_limit() -> None:
    assert [retry_delay_s(n, 300) for n in range(7)] == [0, 10, 20, 40, 80, 160, 300]
    assert retry_delay_s(10_000, 900) == 900


def test_deliveries_are_due_at_their_telemetry_deadline() -> None:
    engine = _engine()
    engine.deliveries["X/1"] = _FakeDelivery("X/1", SYMBOL)  # type: ignore[assignment]
    deadline = DELIVERY_START_NS + 24 * H + RULES.settlement.telemetry_deadline_hours * H
    done = {f"daily:{_day(latest_cut_ns(deadline + 10 * S, 16))}"}
    assert due_jobs(engine, RULES, deadline - S, 0, done, T0_NS) == []
    (job,) = due_jobs(engine, RULES, deadline + 10 * S, 5 * S, done, T0_NS)
    assert job.kind == "delivery" and job.args == ("delivery", "--inbox", "--delivery", "X/1")
    assert job.trigger == "schedule"


class _FakeDelivery:
    def __init__(self, delivery_id: str, symbol: str) -> None:
        self.delivery_id, self.symbol, self.settlement = delivery_id, symbol, None


def _day(cut_ns: int) -> str:
    from datetime import UTC, datetime
    return datetime.fromtimestamp(cut_ns // S, UTC).strftime("%Y-%m-%d")
