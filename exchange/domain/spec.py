"""Immutable specs of what the core trades: one `SeriesSpec` per listed series.

The catalog (`exchange.catalog`) builds these from the data files in `contracts/`; the core never
reads files. A spec is carried inside the `ListSeries` command so that a journal replay does not
depend on the catalog files still being the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from exchange.domain.units import NS_PER_HOUR, PPM, div_half_even


class PeriodKind(StrEnum):
    MONTHLY = "monthly"
    WEEKLY = "weekly"
    DAILY = "daily"


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    """Everything the core needs to trade one series, in exact integer units."""

    symbol: str                  # "H100-M40-Z26"
    product: str                 # "H100-M40"
    generation: str              # "H100"
    mfu_grade: Decimal           # minimum probe MFU, 0.40 for M40
    period: PeriodKind
    gpus_per_lot: int            # GPUs delivered for every hour of the period per lot
    delivery_start_ns: int       # UTC, inclusive
    delivery_end_ns: int         # UTC, exclusive
    trading_end_ns: int          # trading terminates here; resting orders are cancelled
    tick_micros: int             # micro-dollars per GPU-hour per tick (0.005 USD = 5_000)
    reference_price_ticks: int   # centre of the price band and the margin price
    price_band_ppm: int          # ±band around the reference price (100_000 = ±10%)
    max_order_lots: int
    max_position_lots: int       # max |net position| per account
    initial_margin_ppm: int      # of one lot's notional at the reference price
    taker_fee_ppm: int
    maker_fee_ppm: int

    def __post_init__(self) -> None:
        # Specs are built by the catalog, which validates with friendly messages; these asserts are
        # the core's own last line of defence against a spec that would break its arithmetic.
        assert self.delivery_start_ns < self.delivery_end_ns, self.symbol
        assert (self.delivery_end_ns - self.delivery_start_ns) % NS_PER_HOUR == 0, self.symbol
        assert self.trading_end_ns <= self.delivery_start_ns, self.symbol
        assert self.gpus_per_lot > 0 and self.tick_micros > 0, self.symbol
        assert self.reference_price_ticks > 0, self.symbol
        assert 0 <= self.price_band_ppm < PPM, self.symbol
        assert self.max_order_lots > 0 and self.max_position_lots > 0, self.symbol
        assert 0 <= self.initial_margin_ppm <= PPM, self.symbol
        assert 0 <= self.taker_fee_ppm < PPM and 0 <= self.maker_fee_ppm < PPM, self.symbol

    @property
    def delivery_hours(self) -> int:
        return (self.delivery_end_ns - self.delivery_start_ns) // NS_PER_HOUR

    @property
    def lot_gpu_hours(self) -> int:
        """GPU-hours in one lot: GPUs per lot × hours of the delivery period."""
        return self.gpus_per_lot * self.delivery_hours

    def price_band_ticks(self, reference_price_ticks: int) -> tuple[int, int]:
        """(lowest, highest) allowed price around a reference price: inclusive, snapped inwards
        to whole ticks."""
        low = -((-reference_price_ticks * (PPM - self.price_band_ppm)) // PPM)
        high = (reference_price_ticks * (PPM + self.price_band_ppm)) // PPM
        return low, high

    def initial_margin_per_lot_micros(self, reference_price_ticks: int) -> int:
        """Initial margin of one lot at a reference price (rulebook §5), rounded half-to-even."""
        return div_half_even(reference_price_ticks * self.lot_tick_value_micros * self.initial_margin_ppm, PPM)

    @property
    def lot_tick_value_micros(self) -> int:
        """Notional of one lot per tick of price, in micro-dollars."""
        return self.tick_micros * self.lot_gpu_hours
