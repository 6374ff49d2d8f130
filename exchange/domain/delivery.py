"""Delivery assignment and goodput-adjusted delivery settlement (rulebook §7 and §8).

Pure and exact: integers, `Fraction` and `Decimal` (converted exactly to `Fraction`) only; no clock,
no I/O, nothing rounded until the very end. The delivery job reads and validates the probe
telemetry (`exchange.telemetry`) and passes the accepted records in; these functions only compute.

Units: cash in integer micro-dollars, prices in integer ticks (`tick_micros` micro-dollars per
GPU-hour per tick), quantities of GPU-hours exact as `Fraction` and, where reported, quantized to
integer micro-GPU-hours (0.000001 GPU-hour).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Protocol

from exchange.domain.units import div_half_even

MICRO_GPUH_PER_GPUH = 1_000_000  # E is quantized to 0.000001 GPU-hour (rulebook §8)


class DeliveryRules(Protocol):
    """The §8 parameters; `exchange.catalog.SettlementRules` (catalog.rules.settlement) fits."""

    @property
    def mfu_deadband(self) -> Decimal: ...          # δ, 0.03
    @property
    def mfu_floor_offset(self) -> Decimal: ...      # m_g − m_f, 0.05
    @property
    def shortfall_tolerance(self) -> Decimal: ...   # 0.02
    @property
    def damages_premium(self) -> Decimal: ...       # 0.25
    @property
    def default_threshold(self) -> Decimal: ...     # 0.5


# -- §7 assignment ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Allocation:
    """One delivery (rulebook §7): `seller` delivers `lots` to `buyer`; id `<series>/<n>`."""

    delivery_id: str
    seller: int
    buyer: int
    lots: int


def assign_deliveries(symbol: str, positions: Mapping[int, int]) -> list[Allocation]:
    """Turn the open positions of a terminated series into deliveries (rulebook §7).

    `positions` maps account id -> signed net lots (long > 0); flat accounts are skipped. Shorts
    and longs are each taken in ascending account id and lots are allocated greedily: the first
    short to the first long until one is exhausted, then on to the next. Ids are `<symbol>/<n>`,
    n = 1, 2, ... in allocation order. Positions of a series always net to zero; anything else is
    a caller bug and raises `ValueError`.
    """
    if sum(positions.values()) != 0:
        raise ValueError(f"positions of {symbol} do not net to zero: {sum(positions.values())}")
    shorts = [[account, -lots] for account, lots in sorted(positions.items()) if lots < 0]
    longs = [[account, lots] for account, lots in sorted(positions.items()) if lots > 0]
    allocations: list[Allocation] = []
    i = j = 0
    while i < len(shorts) and j < len(longs):
        short, long = shorts[i], longs[j]
        lots = min(short[1], long[1])
        allocations.append(Allocation(f"{symbol}/{len(allocations) + 1}", short[0], long[0], lots))
        short[1] -= lots
        long[1] -= lots
        if short[1] == 0:
            i += 1
        if long[1] == 0:
            j += 1
    return allocations


# -- §8 quality and quantity ------------------------------------------------------------------------

def quality_factor(probe_mfu: Decimal, grade: Decimal, deadband: Decimal, floor_offset: Decimal) -> Fraction:
    """Quality factor φ of one node-hour (rulebook §8), with p = probe_mfu / m_g and
    m_f = m_g − floor_offset:

    - φ = 0 if probe_mfu < m_f (not good delivery);
    - φ = 1 if p ≥ 1 − δ;
    - φ = p otherwise (m_f ≤ probe_mfu and p < 1 − δ).

    The floor is tested first: should parameters ever put the deadband below the floor
    ((1 − δ) × m_g < m_f), a node-hour under the floor is still not good delivery.
    """
    if grade <= 0:
        raise ValueError(f"MFU grade {grade} must be positive")
    mfu = Fraction(probe_mfu)
    m_g = Fraction(grade)
    if mfu < m_g - Fraction(floor_offset):
        return Fraction(0)
    p = mfu / m_g
    if p >= 1 - Fraction(deadband):
        return Fraction(1)
    return p


@dataclass(frozen=True, slots=True)
class EffectiveQuantity:
    """Exact effective quantity E of a delivery and its hour-by-hour terms e_h (rulebook §8)."""

    total: Fraction                 # E = Σ_h e_h, GPU-hours, exact
    hourly: tuple[Fraction, ...]    # e_h for every hour of the period, in the order asked for


ProbeRecord = tuple[int, Decimal, Decimal]  # (gpus, available, probe_mfu) of one node in one hour


def effective_quantity(
    records_by_hour: Mapping[int, Sequence[ProbeRecord]],
    hours: Sequence[int],
    contracted_gpus: int,
    grade: Decimal,
    rules: DeliveryRules,
) -> EffectiveQuantity:
    """E for one delivery (rulebook §8): for each hour h of the period,
    `e_h = min(G, Σ_records of h: gpus × available × φ)`, a missing hour counting as zero;
    `E = Σ_h e_h`, exact.

    `hours` are the hour starts (ns) of the whole delivery period; `records_by_hour` maps an hour
    start to the accepted probe records of that hour. Capping each hour at G means over-delivery in
    one hour never offsets a shortfall in another (ratable delivery). A record for an hour outside
    `hours`, or with a value out of range, raises `ValueError`: the telemetry reader rejects those
    with a reason, so reaching here would mean a record silently dropped.
    """
    if contracted_gpus <= 0:
        raise ValueError(f"contracted GPUs {contracted_gpus} must be positive")
    if len(set(hours)) != len(hours):
        raise ValueError("hours of the period must be distinct")
    stray = set(records_by_hour) - set(hours)
    if stray:
        raise ValueError(f"records for hours outside the period: {sorted(stray)[:5]}")
    cap = Fraction(contracted_gpus)
    hourly: list[Fraction] = []
    for hour in hours:
        delivered = Fraction(0)
        for gpus, available, probe_mfu in records_by_hour.get(hour, ()):
            if gpus < 0 or not 0 <= available <= 1 or not 0 <= probe_mfu <= 1:
                raise ValueError(f"probe record out of range: gpus={gpus} available={available} "
                                 f"probe_mfu={probe_mfu}")
            phi = quality_factor(probe_mfu, grade, rules.mfu_deadband, rules.mfu_floor_offset)
            delivered += gpus * Fraction(available) * phi
        hourly.append(min(cap, delivered))
    return EffectiveQuantity(sum(hourly, Fraction(0)), tuple(hourly))


def quantize_gpuh(gpu_hours: Fraction) -> int:
    """Exact GPU-hours -> integer micro-GPU-hours (0.000001 GPU-hour), half-to-even."""
    return div_half_even(gpu_hours.numerator * MICRO_GPUH_PER_GPUH, gpu_hours.denominator)


# -- §8 cash ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The settlement of one delivery (rulebook §8). Quantities in GPU-hours or micro-GPU-hours,
    cash in micro-dollars (invoice: buyer -> seller; damages: seller -> buyer)."""

    contracted_gpus: int                # G
    contracted_gpuh: int                # Q = G × hours of the period
    effective_micro_gpuh: int           # E quantized to 0.000001 GPU-hour
    invoice_micros: int                 # FSP × E
    shortfall_micro_gpuh: int           # S = max(0, (1 − tolerance) × Q − E), quantized for reports
    damages_micros: int                 # LD = S × (max(0, RRP − FSP) + premium × FSP)
    default: bool                       # E < default_threshold × Q
    hourly: tuple[Fraction, ...]        # e_h, exact, for statements


def _round_micros(amount: Fraction) -> int:
    return div_half_even(amount.numerator, amount.denominator)


def settle_delivery(
    fsp_ticks: int,
    rrp_ticks: int | None,
    tick_micros: int,
    contracted_gpus: int,
    period_hours: int,
    e_by_hour: Sequence[Fraction],
    rules: DeliveryRules,
) -> DeliveryResult:
    """Invoice, shortfall, liquidated damages and default of one delivery (rulebook §8).

    `e_by_hour` are the exact e_h of every hour of the period (`EffectiveQuantity.hourly`). E is
    their exact sum quantized to 0.000001 GPU-hour, and that quantized E is the E of every formula
    below (so anyone can recompute the cash from the reported E):

    - invoice = FSP × E;
    - S = max(0, (1 − tolerance) × Q − E), exact;
    - LD = S × (max(0, RRP − FSP) + premium × FSP), RRP = FSP when none is published (None);
    - default = E < threshold × Q.

    Cash is rounded to the micro-dollar, half-to-even, only at the end.
    """
    if fsp_ticks <= 0 or tick_micros <= 0 or contracted_gpus <= 0 or period_hours <= 0:
        raise ValueError("FSP, tick, contracted GPUs and period hours must be positive")
    if rrp_ticks is not None and rrp_ticks <= 0:
        raise ValueError(f"replacement reference price {rrp_ticks} must be positive")
    if len(e_by_hour) != period_hours:
        raise ValueError(f"{len(e_by_hour)} hourly quantities for a period of {period_hours} hours")
    for e_h in e_by_hour:
        if not 0 <= e_h <= contracted_gpus:
            raise ValueError(f"hourly quantity {e_h} outside [0, {contracted_gpus}]")
    q_gpuh = contracted_gpus * period_hours
    e_micro = quantize_gpuh(sum(e_by_hour, Fraction(0)))
    e = Fraction(e_micro, MICRO_GPUH_PER_GPUH)
    fsp_micros = fsp_ticks * tick_micros               # micro-dollars per GPU-hour
    rrp_micros = fsp_micros if rrp_ticks is None else rrp_ticks * tick_micros
    shortfall = max(Fraction(0), (1 - Fraction(rules.shortfall_tolerance)) * q_gpuh - e)
    damages_rate = max(0, rrp_micros - fsp_micros) + Fraction(rules.damages_premium) * fsp_micros
    return DeliveryResult(
        contracted_gpus=contracted_gpus,
        contracted_gpuh=q_gpuh,
        effective_micro_gpuh=e_micro,
        invoice_micros=div_half_even(fsp_micros * e_micro, MICRO_GPUH_PER_GPUH),
        shortfall_micro_gpuh=quantize_gpuh(shortfall),
        damages_micros=_round_micros(shortfall * damages_rate),
        default=e < Fraction(rules.default_threshold) * q_gpuh,
        hourly=tuple(e_by_hour),
    )
