"""Delivery settlement rules of rulebook v2 and the job's input hygiene, through the real service.

One account sells 4 lots (32 GPUs, a daily series: 24 hours, Q = 768 GPU-hours) to another at 480
ticks ($2.40); the series settles and expires into delivery <symbol>/1 (see test_lifecycle)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from exchange.catalog import load_catalog
from exchange.jobs.daily import run_daily
from exchange.jobs.delivery import run_delivery
from exchange.store import Store
from exchange.telemetry import FIELDS, sign
from exchange.testing.settlement_scenario import archived_statements
from exchange.testing.specs import DELIVERY_START_NS, T0_NS
from tests.jobs.test_lifecycle import DAY, SYMBOL, H, _engine_after, _through_expiry

DELIVERY = f"{SYMBOL}/1"
G, Q = 32, 32 * 24
FSP_USD = Fraction(240, 100)
DEADLINE_NS = DELIVERY_START_NS + 24 * H + 48 * H


def _hour(i: int) -> str:
    return datetime.fromtimestamp((DELIVERY_START_NS + i * H) // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _csv(path: Path, key: bytes, rows: list[tuple[str, int, int, str, str]],
         columns: tuple[str, ...] = FIELDS) -> Path:
    """(node, hour index, gpus, available, mfu) rows, signed, with the columns in the given order."""
    lines = [",".join(columns)]
    for node, hour, gpus, available, mfu in rows:
        values = [DELIVERY, node, _hour(hour), str(gpus), available, mfu]
        record = dict(zip(FIELDS, [*values, sign(key, values)], strict=True))
        lines.append(",".join(record[c] for c in columns))
    path.write_text("\n".join(lines) + "\n")
    return path


def _cash(settings: object, clock: object) -> dict[int, int]:
    engine = _engine_after(settings, clock)  # type: ignore[arg-type]
    return {a: engine.cash_micros(a) for a in (1, 2)}


def test_a_silent_seller_is_settled_at_the_deadline_with_nothing_delivered(tmp_path: Path) -> None:
    settings, clock = _through_expiry(tmp_path)
    before = _cash(settings, clock)
    clock.now_ns = DEADLINE_NS - 1
    early = asyncio.run(run_delivery(settings, load_catalog(), [], clock_ns=clock))
    assert early.outcomes == [] and early.without_telemetry == [DELIVERY]   # not yet: telemetry may still come
    clock.now_ns = DEADLINE_NS
    report = asyncio.run(run_delivery(settings, load_catalog(), [], clock_ns=clock))
    (outcome,) = report.outcomes
    assert outcome.status == "posted"
    r = outcome.result
    # By hand (rulebook §8): E = 0, no invoice, shortfall 0.98 Q, damages = S × (max(0, RRP - FSP) + 0.25 FSP).
    damages = round(Fraction(98, 100) * Q * (Fraction(25, 100) * FSP_USD) * 10**6)
    assert (r.effective_micro_gpuh, r.invoice_micros, r.damages_micros, r.default) == (0, 0, damages, True)
    after = _cash(settings, clock)
    assert (after[1] - before[1], after[2] - before[2]) == (-damages, damages)   # seller pays the buyer
    again = asyncio.run(run_delivery(settings, load_catalog(), [], clock_ns=clock))
    assert again.outcomes == [] and _cash(settings, clock) == after   # settled once


def test_records_after_the_deadline_are_late_unless_amended(tmp_path: Path) -> None:
    settings, clock = _through_expiry(tmp_path)
    key = settings.load_probe_key()
    path = _csv(tmp_path / "late.csv", key, [(f"n{n}", h, 8, "1", "0.40") for n in range(4) for h in range(24)])
    clock.now_ns = DEADLINE_NS + H
    report = asyncio.run(run_delivery(settings, load_catalog(), [path], clock_ns=clock))
    assert report.summary.accepted == 0 and dict(report.summary.reasons()) == {"late": 96}
    (outcome,) = report.outcomes
    assert (outcome.result.effective_micro_gpuh, outcome.result.default) == (0, True)
    amended = asyncio.run(run_delivery(settings, load_catalog(), [path], amend=True, clock_ns=clock))
    (outcome,) = amended.outcomes
    assert (outcome.status, outcome.result.effective_micro_gpuh, outcome.result.default) == ("amended", Q * 10**6,
                                                                                             False)


def test_a_node_may_report_more_gpus_than_the_delivery_and_the_hour_is_capped(tmp_path: Path) -> None:
    settings, clock = _through_expiry(tmp_path)
    key = settings.load_probe_key()
    # Hour 0: one node of 72 GPUs (more than G = 32): e_0 = min(32, 72) = 32. Hour 1: 20 GPUs at half
    # availability: 10. Every other hour: nothing.
    path = _csv(tmp_path / "big.csv", key, [("rack-1", 0, 72, "1", "0.40"), ("rack-1", 1, 20, "0.5", "0.40")])
    report = asyncio.run(run_delivery(settings, load_catalog(), [path], clock_ns=clock))
    assert report.summary.rejected == 0 and report.summary.accepted == 2
    (outcome,) = report.outcomes
    assert outcome.result.effective_micro_gpuh == (32 + 10) * 10**6


def test_rejected_records_count_against_their_delivery_whatever_the_column_order(tmp_path: Path) -> None:
    settings, clock = _through_expiry(tmp_path)
    key = settings.load_probe_key()
    columns = ("signature", "probe_mfu", "node_id", "hour_start", "available", "gpus", "delivery_id")
    path = _csv(tmp_path / "shuffled.csv", key, [("n1", 0, 8, "1", "0.40"), ("n2", 0, 73, "1", "0.40"),
                                                 ("n3", 0, 8, "1.5", "0.40")], columns)
    report = asyncio.run(run_delivery(settings, load_catalog(), [path], clock_ns=clock))
    (outcome,) = report.outcomes
    assert (outcome.input.accepted, outcome.input.rejected_count) == (1, 2)
    statement = json.loads((settings.data_dir / "statements" / "delivery" / SYMBOL / "delivery-1.json").read_text())
    assert statement["records"] == {"accepted": 1, "rejected": 2}


@pytest.mark.parametrize(("rrp", "message"), [
    ({"NOPE-M40-261203": Decimal("2.5")}, "no assigned delivery of that series"),
    ({SYMBOL: Decimal("0")}, "must be positive"),
    ({SYMBOL: Decimal("-1")}, "must be positive"),
])
def test_a_bad_rrp_is_an_error_before_anything_is_posted(tmp_path: Path, rrp: dict[str, Decimal],
                                                         message: str) -> None:
    settings, clock = _through_expiry(tmp_path)
    key = settings.load_probe_key()
    path = _csv(tmp_path / "p.csv", key, [("n1", 0, 8, "1", "0.40")])
    before = _cash(settings, clock)
    with pytest.raises(ValueError, match=message):
        asyncio.run(run_delivery(settings, load_catalog(), [path], rrp=rrp, clock_ns=clock))
    assert _cash(settings, clock) == before
    assert not (settings.data_dir / "statements" / "delivery").exists()


def test_a_dry_run_or_a_refused_run_never_overwrites_the_statement_of_record(tmp_path: Path) -> None:
    settings, clock = _through_expiry(tmp_path)
    key = settings.load_probe_key()
    first = _csv(tmp_path / "first.csv", key, [(f"n{n}", h, 8, "1", "0.40") for n in range(4) for h in range(24)])
    asyncio.run(run_delivery(settings, load_catalog(), [first], clock_ns=clock))
    record = settings.data_dir / "statements" / "delivery" / SYMBOL
    kept = {p.name: p.read_bytes() for p in record.iterdir()}
    other = _csv(tmp_path / "other.csv", key, [("n1", 0, 8, "1", "0.40")])
    dry = asyncio.run(run_delivery(settings, load_catalog(), [other], dry_run=True, clock_ns=clock))
    assert dry.statements and all("dry-run" in p.parts for p in dry.statements)
    assert json.loads(next(p for p in dry.statements if p.suffix == ".json").read_text())["dry_run"] is True
    assert "DRY RUN" in next(p for p in dry.statements if p.suffix == ".html").read_text()
    refused = asyncio.run(run_delivery(settings, load_catalog(), [other], clock_ns=clock))
    assert refused.outcomes[0].status.startswith("refused")
    assert {p.name: p.read_bytes() for p in record.iterdir()} == kept


def test_a_daily_dry_run_writes_its_statements_elsewhere(tmp_path: Path) -> None:
    settings, clock = _through_expiry(tmp_path)

    def of_record() -> dict[str, str]:
        store = Store(settings.store_url())
        try:
            return archived_statements(store)
        finally:
            store.close()
    kept = of_record()
    assert kept and not (settings.data_dir / "statements" / "daily").exists()
    report = asyncio.run(run_daily(settings, load_catalog(), T0_NS + 2 * DAY - 16 * H, clock, dry_run=True,
                                   amend=True))
    assert report.statements and all("dry-run" in p.parts for p in report.statements)
    assert of_record() == kept


def test_the_csv_statement_has_totals_and_cash_lines(tmp_path: Path) -> None:
    settings, clock = _through_expiry(tmp_path)
    key = settings.load_probe_key()
    path = _csv(tmp_path / "p.csv", key, [("n1", h, 8, "1", "0.40") for h in range(24)])
    asyncio.run(run_delivery(settings, load_catalog(), [path], clock_ns=clock))
    text = (settings.data_dir / "statements" / "delivery" / SYMBOL / "delivery-1.csv").read_text()
    lines = [line.split(",") for line in text.splitlines()]
    kinds = [line[0] for line in lines[1:]]
    assert kinds == ["hour"] * 24 + ["total", "shortfall", "delivery_invoice", "delivery_damages"]
    total = next(line for line in lines if line[0] == "total")
    assert (total[2], total[3]) == ("192.000000", "32")
    invoice = next(line for line in lines if line[0] == "delivery_invoice")
    assert (invoice[4], invoice[5], invoice[6]) == ("460.800000", "2", "1")   # 192 GPU-h × $2.40, buyer to seller
