"""The schema of the three contract files, as strict pydantic models.

These check what one field can check alone: types (no string where a number belongs, no unknown
keys), signs, ranges and exactness. Rules that span fields or files (a listed generation needs a peak,
a product's generation must exist, prices on the tick, duplicates) are checked by the loader, which
also turns every failure into a `CatalogError` naming file, field and rule.

Numbers: the loader parses TOML with `parse_float=Decimal`, so a TOML float arrives as an exact
`Decimal` and a TOML integer as an `int`; a binary float never gets here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from exchange.catalog.symbol import GENERATION_PATTERN
from exchange.domain.units import rate_to_ppm, usd_to_micros

BF16_DENSE = "bf16_dense"

# Bounds on every decimal in the files. Within them a value has at most 24 significant digits, so
# Decimal arithmetic on it (default precision 28) is exact: an absurd value cannot be silently
# rounded on its way to integer micro-dollars or ppm.
_MAX_DECIMAL_PLACES = 12
_MAX_MAGNITUDE = Decimal(10) ** 12

_Number = TypeVar("_Number", int, Decimal)


# --- single-field rules; a ValueError (UnitError is one) becomes a "value_error" with the field's path


def _exact_decimal(value: object) -> Decimal:
    if isinstance(value, float):
        raise ValueError(f"binary float {value!r} is not exact; use a Decimal")
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError(f"must be a number (written without quotes), got {value!r}")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"must be a finite number, got {value}")
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # finite, so not 'n', 'N' or 'F'
    if -exponent > _MAX_DECIMAL_PLACES or abs(number) >= _MAX_MAGNITUDE:
        raise ValueError(
            f"must have at most {_MAX_DECIMAL_PLACES} decimal places and be below 10^12, got {number}"
        )
    return number


def _positive(value: _Number) -> _Number:
    if value <= 0:
        raise ValueError(f"must be positive, got {value}")
    return value


def _non_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")
    return value


def _below_one(value: Decimal) -> Decimal:
    """A fraction in [0, 1)."""
    if not 0 <= value < 1:
        raise ValueError(f"must be at least 0 and below 1, got {value}")
    return value


def _up_to_one(value: Decimal) -> Decimal:
    """A fraction in (0, 1]."""
    if not 0 < value <= 1:
        raise ValueError(f"must be above 0 and at most 1, got {value}")
    return value


def _whole_ppm(value: Decimal) -> Decimal:
    rate_to_ppm(value, "rate")  # the core keeps rates in integer parts per million
    return value


def _whole_micro_dollars(value: Decimal) -> Decimal:
    usd_to_micros(value, "tick")  # the core keeps the tick in integer micro-dollars
    return value


def _hour(value: int) -> int:
    if not 0 <= value <= 23:
        raise ValueError(f"must be an hour of the day, 0 to 23, got {value}")
    return value


def _generation_name(value: str) -> str:
    if not GENERATION_PATTERN.fullmatch(value):
        raise ValueError(
            f"must be an upper-case letter followed by up to 15 letters or digits (it starts every "
            f"symbol), got {value!r}"
        )
    return value


def _dense_bf16(value: str) -> str:
    if value != BF16_DENSE:
        raise ValueError(
            f"MFU is always measured against the dense BF16 peak, so peak_precision must be "
            f"{BF16_DENSE!r}, not {value!r} (a sparse or FP8 peak is invalid)"
        )
    return value


def _mfu_grade(value: Decimal) -> Decimal:
    if not 0 < value < 1:
        raise ValueError(f"an MFU grade must be strictly between 0 and 1, got {value}")
    if value.quantize(Decimal("0.01")) != value:
        raise ValueError(
            f"an MFU grade must be a whole percent (0.01 steps) because product codes are M<2 digits>, "
            f"got {value}"
        )
    return value


ExactDecimal = Annotated[Decimal, BeforeValidator(_exact_decimal)]
PositiveDecimal = Annotated[ExactDecimal, AfterValidator(_positive)]
NonNegativeDecimal = Annotated[ExactDecimal, AfterValidator(_non_negative)]
FractionBelowOne = Annotated[ExactDecimal, AfterValidator(_below_one)]             # [0, 1)
FractionUpToOne = Annotated[ExactDecimal, AfterValidator(_up_to_one)]              # (0, 1]
PpmFraction = Annotated[FractionBelowOne, AfterValidator(_whole_ppm)]              # [0, 1), whole ppm
PpmFractionUpToOne = Annotated[FractionUpToOne, AfterValidator(_whole_ppm)]        # (0, 1], whole ppm
Tick = Annotated[PositiveDecimal, AfterValidator(_whole_micro_dollars)]
MfuGrade = Annotated[ExactDecimal, AfterValidator(_mfu_grade)]
PositiveInt = Annotated[int, AfterValidator(_positive)]
HourUtc = Annotated[int, AfterValidator(_hour)]
GenerationName = Annotated[str, AfterValidator(_generation_name)]
PeakPrecision = Annotated[str, AfterValidator(_dense_bf16)]


class _Strict(BaseModel):
    # strict: no coercion ("8" is not 8, true is not 1); forbid: a misspelt key is an error, not ignored.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# --- generations.toml


class GenerationEntry(_Strict):
    name: GenerationName
    description: str
    peak_tflops: PositiveDecimal | None = None  # absent until the vendor publishes a dense BF16 peak
    peak_precision: PeakPrecision
    gpus_per_lot: PositiveInt
    listed: bool
    reference_price: PositiveDecimal | None = None


class GenerationsFile(_Strict):
    generation: list[GenerationEntry]


# --- products.toml


class ProductEntry(_Strict):
    generation: str
    grade: MfuGrade
    reference_price: PositiveDecimal | None = None  # None: the generation's reference price
    listed: bool = True


class ProductsFile(_Strict):
    product: list[ProductEntry]


# --- exchange.toml


class ListingTable(_Strict):
    monthly: PositiveInt
    weekly: PositiveInt
    daily: PositiveInt


class SettlementTable(_Strict):
    daily_settlement_hour_utc: HourUtc
    vwap_window_seconds: PositiveInt
    margin_call_ratio: FractionUpToOne
    mfu_deadband: FractionBelowOne
    mfu_floor_offset: FractionBelowOne
    shortfall_tolerance: FractionBelowOne
    damages_premium: NonNegativeDecimal
    default_threshold: FractionUpToOne
    telemetry_deadline_hours: PositiveInt


class ExchangeFile(_Strict):
    tick: Tick
    price_band: PpmFraction
    max_order_lots: PositiveInt
    max_position_lots: PositiveInt
    max_open_orders_per_account: PositiveInt
    initial_margin_rate: PpmFractionUpToOne
    taker_fee_rate: PpmFraction
    maker_fee_rate: PpmFraction
    trading_end_hour_utc: HourUtc
    listing: ListingTable
    settlement: SettlementTable
