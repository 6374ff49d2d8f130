"""Small hand-made series specs for tests and benchmarks (the catalog builds the real ones)."""

from __future__ import annotations

from decimal import Decimal

from exchange.domain.spec import PeriodKind, SeriesSpec
from exchange.domain.units import NS_PER_HOUR

# 2026-12-03 00:00 UTC, the delivery day of the test series; trading ends 16:00 the day before.
DELIVERY_START_NS = 1_796_256_000 * 1_000_000_000
TRADING_END_NS = DELIVERY_START_NS - 8 * NS_PER_HOUR
T0_NS = TRADING_END_NS - 48 * NS_PER_HOUR  # a time when the test series trade


def make_spec(
    symbol: str = "H100-M40-261203",
    *,
    reference_price_ticks: int = 480,
    price_band_ppm: int = 100_000,
    max_order_lots: int = 500,
    max_position_lots: int = 5_000,
    initial_margin_ppm: int = 120_000,
    taker_fee_ppm: int = 200,
    maker_fee_ppm: int = 0,
    gpus_per_lot: int = 8,
    trading_end_ns: int = TRADING_END_NS,
) -> SeriesSpec:
    """A daily series (24 delivery hours, so one lot of 8 GPUs is 192 GPU-hours) with the rulebook's
    defaults unless overridden; tick $0.005, reference 480 ticks = $2.40."""
    generation, grade, _ = symbol.split("-")
    return SeriesSpec(
        symbol=symbol, product=f"{generation}-{grade}", generation=generation,
        mfu_grade=Decimal(grade[1:]) / 100, period=PeriodKind.DAILY, gpus_per_lot=gpus_per_lot,
        delivery_start_ns=DELIVERY_START_NS, delivery_end_ns=DELIVERY_START_NS + 24 * NS_PER_HOUR,
        trading_end_ns=trading_end_ns, tick_micros=5_000, reference_price_ticks=reference_price_ticks,
        price_band_ppm=price_band_ppm, max_order_lots=max_order_lots, max_position_lots=max_position_lots,
        initial_margin_ppm=initial_margin_ppm, taker_fee_ppm=taker_fee_ppm, maker_fee_ppm=maker_fee_ppm,
    )
