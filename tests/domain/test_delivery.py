"""Delivery assignment (rulebook §7) and goodput-adjusted delivery settlement (rulebook §8).

Golden cases worked by hand in the comments; M40 grade (m_g = 0.40) with the shipped parameters:
δ = 0.03 (full credit from p = probe_mfu / 0.40 ≥ 0.97, i.e. probe_mfu ≥ 0.388), floor
m_f = 0.40 − 0.05 = 0.35, tolerance 2%, damages premium 25%, default below 50%.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.catalog.catalog import SettlementRules
from exchange.domain.delivery import (
    Allocation,
    DeliveryResult,
    ProbeRecord,
    assign_deliveries,
    effective_quantity,
    quality_factor,
    quantize_gpuh,
    settle_delivery,
)
from exchange.domain.units import NS_PER_HOUR

D = Decimal
RULES = SettlementRules(
    daily_settlement_hour_utc=16, vwap_window_seconds=120, margin_call_ratio=D("0.75"),
    mfu_deadband=D("0.03"), mfu_floor_offset=D("0.05"), shortfall_tolerance=D("0.02"),
    damages_premium=D("0.25"), default_threshold=D("0.5"), telemetry_deadline_hours=48,
)
M40 = D("0.40")
H0 = 1_796_256_000 * 10**9  # 2026-12-01T00:00:00Z
TICK = 5_000                 # $0.005 per GPU-hour per tick
FSP = 480                    # $2.40 per GPU-hour = 2,400,000 µ$


def test_shipped_contract_parameters_are_the_ones_worked_here() -> None:
    from exchange.catalog import load_catalog
    assert load_catalog().rules.settlement == RULES


# -- §7 assignment ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("positions", "expected"), [
    # shorts ascending: 1 (5), 3 (2); longs ascending: 2 (3), 4 (4)
    ({4: 4, 3: -2, 2: 3, 1: -5}, [
        Allocation("H100-M40-Z26/1", seller=1, buyer=2, lots=3),  # long 2 exhausted, short 1 has 2 left
        Allocation("H100-M40-Z26/2", seller=1, buyer=4, lots=2),  # short 1 exhausted, long 4 wants 2 more
        Allocation("H100-M40-Z26/3", seller=3, buyer=4, lots=2),  # both exhausted
    ]),
    # one short against three longs, flat account 5 skipped
    ({10: -6, 11: 1, 12: 2, 13: 3, 5: 0}, [
        Allocation("H100-M40-Z26/1", 10, 11, 1),
        Allocation("H100-M40-Z26/2", 10, 12, 2),
        Allocation("H100-M40-Z26/3", 10, 13, 3),
    ]),
    # three shorts against one long
    ({7: 6, 3: -1, 2: -4, 9: -1}, [
        Allocation("H100-M40-Z26/1", 2, 7, 4),
        Allocation("H100-M40-Z26/2", 3, 7, 1),
        Allocation("H100-M40-Z26/3", 9, 7, 1),
    ]),
    ({1: -1, 2: 1}, [Allocation("H100-M40-Z26/1", 1, 2, 1)]),
    ({1: 0, 2: 0}, []),   # all flat: no deliveries
    ({}, []),
])
def test_assign_deliveries(positions: dict[int, int], expected: list[Allocation]) -> None:
    assert assign_deliveries("H100-M40-Z26", positions) == expected


def test_positions_must_net_to_zero() -> None:
    with pytest.raises(ValueError, match="do not net to zero"):
        assign_deliveries("H100-M40-Z26", {1: -2, 2: 1})


@given(st.lists(st.tuples(st.integers(1, 20), st.integers(1, 20), st.integers(1, 100)), max_size=15))
def test_assignment_delivers_every_open_lot(moves: list[tuple[int, int, int]]) -> None:
    positions: dict[int, int] = {}
    for long, short, lots in moves:
        positions[long] = positions.get(long, 0) + lots
        positions[short] = positions.get(short, 0) - lots
    allocations = assign_deliveries("X", positions)
    delivered: dict[int, int] = {}
    for allocation in allocations:
        assert allocation.lots > 0
        delivered[allocation.seller] = delivered.get(allocation.seller, 0) - allocation.lots
        delivered[allocation.buyer] = delivered.get(allocation.buyer, 0) + allocation.lots
    assert delivered == {a: lots for a, lots in positions.items() if lots}
    assert [a.delivery_id for a in allocations] == [f"X/{n}" for n in range(1, len(allocations) + 1)]


# -- §8 quality factor ------------------------------------------------------------------------------

@pytest.mark.parametrize(("probe_mfu", "grade", "phi"), [
    ("0.40", M40, Fraction(1)),                       # p = 1
    ("0.55", M40, Fraction(1)),                       # p > 1 is still 1: no credit above the grade
    ("0.388", M40, Fraction(1)),                      # p = 0.388 / 0.40 = 0.97 = 1 − δ exactly: deadband
    ("0.387999", M40, Fraction(387_999, 400_000)),    # p = 0.9699975 < 0.97: pro-rata, φ = p
    ("0.38", M40, Fraction(19, 20)),                  # p = 0.95
    ("0.35", M40, Fraction(7, 8)),                    # probe_mfu = m_f exactly: pro-rata, p = 0.875
    ("0.349999", M40, Fraction(0)),                   # just below the floor: not good delivery
    ("0", M40, Fraction(0)),
    ("0.30", D("0.35"), Fraction(6, 7)),              # M35: floor 0.30 exactly, p = 0.30 / 0.35 = 6/7
    ("0.2999", D("0.35"), Fraction(0)),
])
def test_quality_factor(probe_mfu: str, grade: Decimal, phi: Fraction) -> None:
    assert quality_factor(D(probe_mfu), grade, RULES.mfu_deadband, RULES.mfu_floor_offset) == phi


def test_floor_wins_if_the_deadband_reaches_below_it() -> None:
    # δ = 0.20: full credit from p ≥ 0.80 (0.32), but the floor is 0.35; 0.33 is under the floor -> 0.
    assert quality_factor(D("0.33"), M40, D("0.20"), D("0.05")) == 0
    assert quality_factor(D("0.35"), M40, D("0.20"), D("0.05")) == 1


# -- §8 effective quantity --------------------------------------------------------------------------

def hours(n: int) -> list[int]:
    return [H0 + i * NS_PER_HOUR for i in range(n)]


FULL: ProbeRecord = (8, D("1"), D("0.40"))   # an 8-GPU node, fully available, at grade: 8 GPU-hours


@pytest.mark.parametrize(("case", "records", "total", "hourly"), [
    # G = 16 GPUs (2 lots), 3 hours: Q = 48 GPU-hours.
    ("full", {0: [FULL, FULL], 1: [FULL, FULL], 2: [FULL, FULL]}, 48, [16, 16, 16]),
    ("over-delivery capped per hour", {0: [FULL, FULL, FULL], 1: [FULL], 2: [FULL, FULL]}, 40, [16, 8, 16]),
    #   hour 0: 24 capped to 16; the extra 8 does not fill hour 1's gap: 16 + 8 + 16 = 40, not 48
    ("missing hour", {0: [FULL, FULL], 2: [FULL, FULL]}, 32, [16, 0, 16]),
    ("pro-rata", {0: [(8, D("0.9"), D("0.38")), FULL]}, Fraction("14.84"), [Fraction("14.84"), 0, 0]),
    #   8 × 0.9 × 0.95 = 6.84, + 8 = 14.84
    ("below the floor", {0: [(8, D("1"), D("0.349999")), FULL]}, 8, [8, 0, 0]),
    ("whole node under the floor", {0: [(8, D("1"), D("0.30"))]}, 0, [0, 0, 0]),    # 0.30 < 0.35: φ = 0
    ("no records", {}, 0, [0, 0, 0]),
])
def test_effective_quantity(case: str, records: dict[int, list[ProbeRecord]], total: Fraction | int,
                            hourly: list[Fraction | int]) -> None:
    by_hour = {H0 + h * NS_PER_HOUR: recs for h, recs in records.items()}
    result = effective_quantity(by_hour, hours(3), 16, M40, RULES)
    assert result.total == total, case
    assert list(result.hourly) == hourly, case


def test_records_outside_the_period_are_an_error_not_dropped() -> None:
    with pytest.raises(ValueError, match="outside the period"):
        effective_quantity({H0 + 3 * NS_PER_HOUR: [FULL]}, hours(3), 16, M40, RULES)
    with pytest.raises(ValueError, match="out of range"):
        effective_quantity({H0: [(8, D("1.01"), D("0.40"))]}, hours(3), 16, M40, RULES)


@pytest.mark.parametrize(("gpu_hours", "micro"), [
    (Fraction(1), 1_000_000),
    (Fraction(1, 3), 333_333),                 # 0.3333333 -> 0.333333
    (Fraction(2, 3), 666_667),
    (Fraction(1, 2_000_000), 0),               # 0.0000005: tie -> even (0)
    (Fraction(3, 2_000_000), 2),               # 0.0000015: tie -> even (2)
])
def test_quantize_gpuh(gpu_hours: Fraction, micro: int) -> None:
    assert quantize_gpuh(gpu_hours) == micro


# -- §8 cash ----------------------------------------------------------------------------------------
# One lot of 8 GPUs over a 10-hour period: G = 8, Q = 80 GPU-hours; 0.98 Q = 78.4, 0.5 Q = 40.
# FSP $2.40: a full invoice is 80 × 2.40 = $192; the damages rate at RRP ≤ FSP is 0.25 × 2.40 = $0.60.

def spread(e_gpuh: str, period: int = 10, gpus: int = 8) -> list[Fraction]:
    """Hourly e_h adding up to `e_gpuh`: full hours, then the remainder, then zeros."""
    left = Fraction(e_gpuh)
    hourly = []
    for _ in range(period):
        e_h = min(Fraction(gpus), left)
        hourly.append(e_h)
        left -= e_h
    assert left == 0
    return hourly


@pytest.mark.parametrize(("case", "e_gpuh", "rrp", "invoice", "shortfall", "damages", "default"), [
    ("full delivery", "80", None, 192_000_000, 0, 0, False),
    ("tolerance edge", "78.4", None, 188_160_000, 0, 0, False),
    #   E = 0.98 Q exactly: S = 0; invoice 78.4 × 2.40 = 188.16
    ("just below tolerance", "78.399999", None, 188_159_998, 1, 1, False),
    #   invoice 78.399999 × 2.40 = 188.1599976 -> 188.159998; S = 0.000001; LD = 0.000001 × 0.60 = 0.0000006 -> 1 µ$
    ("shortfall, no RRP", "70", None, 168_000_000, 8_400_000, 5_040_000, False),
    #   S = 78.4 − 70 = 8.4; LD = 8.4 × 0.60 = 5.04
    ("RRP below FSP", "70", 470, 168_000_000, 8_400_000, 5_040_000, False),
    #   max(0, 2.35 − 2.40) = 0: same as no RRP
    ("RRP equal to FSP", "70", 480, 168_000_000, 8_400_000, 5_040_000, False),
    ("RRP above FSP", "70", 520, 168_000_000, 8_400_000, 6_720_000, False),
    #   LD = 8.4 × ((2.60 − 2.40) + 0.60) = 8.4 × 0.80 = 6.72
    ("default edge: not a default", "40", None, 96_000_000, 38_400_000, 23_040_000, False),
    #   E = 0.5 Q exactly; S = 38.4; LD = 38.4 × 0.60 = 23.04
    ("just below half: default", "39.999999", None, 95_999_998, 38_400_001, 23_040_001, True),
    #   invoice 39.999999 × 2.40 = 95.9999976 -> 95.999998; S = 38.400001; LD × 0.60 = 23.0400006 -> 23.040001
    ("nothing delivered", "0", 520, 0, 78_400_000, 62_720_000, True),
    #   S = 78.4; LD = 78.4 × 0.80 = 62.72
])
def test_settle_delivery(case: str, e_gpuh: str, rrp: int | None, invoice: int, shortfall: int, damages: int,
                         default: bool) -> None:
    result = settle_delivery(FSP, rrp, TICK, 8, 10, spread(e_gpuh), RULES)
    assert result == DeliveryResult(
        contracted_gpus=8, contracted_gpuh=80, effective_micro_gpuh=quantize_gpuh(Fraction(e_gpuh)),
        invoice_micros=invoice, shortfall_micro_gpuh=shortfall, damages_micros=damages, default=default,
        hourly=tuple(spread(e_gpuh)),
    ), case


def test_rounding_happens_once_at_the_end() -> None:
    # FSP = 1 tick ($0.005 = 5,000 µ$/GPU-hour); each of 10 hours delivers 0.0001 GPU-hour.
    # Per hour the invoice would be 0.0001 × 5,000 = 0.5 µ$ -> 0 (half-even), 0 in all;
    # at the end E = 0.001 GPU-hour and the invoice is 0.001 × 5,000 = 5 µ$.
    result = settle_delivery(1, None, TICK, 8, 10, [Fraction(1, 10_000)] * 10, RULES)
    assert result.effective_micro_gpuh == 1_000
    assert result.invoice_micros == 5


def test_e_is_quantized_after_summing_the_hours() -> None:
    # Three hours of 1/3 GPU-hour: E = 1 exactly (1,000,000 µGPU-h), not 3 × 333,333 = 999,999.
    result = settle_delivery(FSP, None, TICK, 8, 3, [Fraction(1, 3)] * 3, RULES)
    assert result.effective_micro_gpuh == 1_000_000
    assert result.invoice_micros == 2_400_000


@pytest.mark.parametrize(("e_gpuh", "damages"), [
    # FSP 1 tick: damages rate 0.25 × 5,000 = 1,250 µ$ per GPU-hour of shortfall.
    ("78.3996", 0),   # S = 0.0004: 0.0004 × 1,250 = 0.5 µ$ -> 0 (tie to even)
    ("78.3988", 2),   # S = 0.0012: 0.0012 × 1,250 = 1.5 µ$ -> 2 (tie to even)
    ("78.398", 2),    # S = 0.002: 2.5 µ$ -> 2
])
def test_damages_round_half_even(e_gpuh: str, damages: int) -> None:
    assert settle_delivery(1, None, TICK, 8, 10, spread(e_gpuh), RULES).damages_micros == damages


def test_from_probe_records_to_cash() -> None:
    # G = 8, 2 hours (Q = 16). Hour 0: one node at grade, 90% available: 8 × 0.9 × 1 = 7.2.
    # Hour 1: two 4-GPU nodes: 4 × 1 × 0.95 (0.38 / 0.40) = 3.8 and 4 × 0.5 × 0 (0.30 < floor) = 0.
    # E = 11.0; 0.98 Q = 15.68 -> S = 4.68; invoice 11 × 2.40 = 26.40; LD 4.68 × 0.60 = 2.808.
    # E = 11 ≥ 0.5 Q = 8: not a default.
    records = {H0: [(8, D("0.9"), D("0.41"))], H0 + NS_PER_HOUR: [(4, D("1"), D("0.38")), (4, D("0.5"), D("0.30"))]}
    quantity = effective_quantity(records, hours(2), 8, M40, RULES)
    assert quantity.total == 11
    result = settle_delivery(FSP, None, TICK, 8, 2, quantity.hourly, RULES)
    assert (result.effective_micro_gpuh, result.invoice_micros, result.shortfall_micro_gpuh,
            result.damages_micros, result.default) == (11_000_000, 26_400_000, 4_680_000, 2_808_000, False)


@pytest.mark.parametrize(("args", "message"), [
    ((FSP, None, TICK, 8, 10, [Fraction(0)] * 9), "9 hourly quantities"),
    ((FSP, None, TICK, 8, 1, [Fraction(9)]), "outside"),
    ((FSP, None, TICK, 8, 1, [Fraction(-1)]), "outside"),
    ((0, None, TICK, 8, 1, [Fraction(0)]), "must be positive"),
    ((FSP, 0, TICK, 8, 1, [Fraction(0)]), "replacement reference price"),
])
def test_bad_settlement_arguments(args: tuple[int, int | None, int, int, int, list[Fraction]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settle_delivery(*args, RULES)


# -- §8 properties ----------------------------------------------------------------------------------

UNIT = st.decimals(min_value=0, max_value=1, places=4, allow_nan=False, allow_infinity=False)
GRADES = st.sampled_from([D("0.30"), D("0.35"), D("0.40"), D("0.45")])


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[int, int, dict[int, list[ProbeRecord]]]:
    """(G, hours, records by hour): up to 6 hours, up to 4 node records per hour, possibly too many GPUs."""
    gpus = draw(st.sampled_from([8, 16, 72]))
    n_hours = draw(st.integers(1, 6))
    records: dict[int, list[ProbeRecord]] = {}
    for h in draw(st.sets(st.integers(0, n_hours - 1))):
        records[H0 + h * NS_PER_HOUR] = draw(st.lists(
            st.tuples(st.integers(1, gpus), UNIT, UNIT), min_size=1, max_size=4))
    return gpus, n_hours, records


@given(deliveries(), GRADES)
def test_e_never_exceeds_q(delivery: tuple[int, int, dict[int, list[ProbeRecord]]], grade: Decimal) -> None:
    gpus, n_hours, records = delivery
    quantity = effective_quantity(records, hours(n_hours), gpus, grade, RULES)
    assert 0 <= quantity.total <= gpus * n_hours
    assert all(0 <= e_h <= gpus for e_h in quantity.hourly)


@given(deliveries(), GRADES, st.integers(1, 5_000), st.none() | st.integers(1, 5_000))
def test_invoice_never_exceeds_fsp_times_q(delivery: tuple[int, int, dict[int, list[ProbeRecord]]],
                                           grade: Decimal, fsp: int, rrp: int | None) -> None:
    gpus, n_hours, records = delivery
    quantity = effective_quantity(records, hours(n_hours), gpus, grade, RULES)
    result = settle_delivery(fsp, rrp, TICK, gpus, n_hours, quantity.hourly, RULES)
    assert 0 <= result.invoice_micros <= fsp * TICK * gpus * n_hours
    assert result.effective_micro_gpuh <= gpus * n_hours * 1_000_000
    assert result.damages_micros >= 0


@given(deliveries(), GRADES, st.integers(0, 5), st.integers(1, 72), UNIT)
def test_a_record_with_zero_quality_adds_nothing(delivery: tuple[int, int, dict[int, list[ProbeRecord]]],
                                                 grade: Decimal, hour: int, gpus: int, available: Decimal) -> None:
    g, n_hours, records = delivery
    start = H0 + (hour % n_hours) * NS_PER_HOUR
    below_floor = grade - RULES.mfu_floor_offset - D("0.0001")    # φ = 0
    before = effective_quantity(records, hours(n_hours), g, grade, RULES).total
    more = {**records, start: [*records.get(start, []), (min(gpus, g), available, below_floor)]}
    assert effective_quantity(more, hours(n_hours), g, grade, RULES).total == before


@given(deliveries(), GRADES, st.data())
def test_e_is_monotone_in_availability(delivery: tuple[int, int, dict[int, list[ProbeRecord]]], grade: Decimal,
                                       data: st.DataObject) -> None:
    g, n_hours, records = delivery
    if not records:
        return
    start = data.draw(st.sampled_from(sorted(records)))
    index = data.draw(st.integers(0, len(records[start]) - 1))
    gpus, available, mfu = records[start][index]
    higher = data.draw(st.decimals(min_value=available, max_value=1, places=4))
    raised = list(records[start])
    raised[index] = (gpus, higher, mfu)
    before = effective_quantity(records, hours(n_hours), g, grade, RULES).total
    after = effective_quantity({**records, start: raised}, hours(n_hours), g, grade, RULES).total
    assert after >= before
