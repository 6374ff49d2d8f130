"""Exact conversions and half-to-even rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.domain.units import (
    UnitError,
    apply_ppm,
    div_half_even,
    micros_to_usd,
    price_to_ticks,
    rate_to_ppm,
    ticks_to_price,
    usd_to_micros,
)


@pytest.mark.parametrize(("numerator", "denominator", "expected"), [
    (5, 2, 2), (7, 2, 4), (-5, 2, -2), (-7, 2, -4), (1, 3, 0), (2, 3, 1), (10, 5, 2), (0, 7, 0),
])
def test_div_half_even(numerator: int, denominator: int, expected: int) -> None:
    assert div_half_even(numerator, denominator) == expected


@given(st.integers(-10**30, 10**30), st.integers(1, 10**12))
def test_div_half_even_agrees_with_decimal(numerator: int, denominator: int) -> None:
    exact = (Decimal(numerator) / Decimal(denominator))
    from decimal import ROUND_HALF_EVEN, localcontext
    with localcontext() as ctx:
        ctx.prec = 80
        exact = Decimal(numerator) / Decimal(denominator)
        assert div_half_even(numerator, denominator) == int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def test_conversions() -> None:
    assert usd_to_micros("2.405") == 2_405_000
    assert usd_to_micros(Decimal("1E+3")) == 1_000_000_000
    assert micros_to_usd(-1) == Decimal("-0.000001")
    assert rate_to_ppm("0.0002") == 200
    assert apply_ppm(2_304_000_000, 200) == 460_800
    assert price_to_ticks("2.405", 5_000) == 481
    assert str(ticks_to_price(481, 5_000)) == "2.405"


@pytest.mark.parametrize(("value", "message"), [
    (2.4, "not 2.4"), ("abc", "not a decimal"), ("NaN", "finite"), ("1.0000001", "micro-dollar"),
    ("0.0050000000000000000000000000001", "micro-dollar"), (True, "not True"),
])
def test_bad_amounts_are_errors_never_rounded(value: object, message: str) -> None:
    with pytest.raises(UnitError, match=message):
        usd_to_micros(value)


def test_price_off_tick_is_an_error() -> None:
    with pytest.raises(UnitError, match=r"not a multiple of the tick 0\.005"):
        price_to_ticks("2.401", 5_000)
