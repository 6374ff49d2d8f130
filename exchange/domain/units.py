"""Exact units: integer micro-dollars for cash, integer ticks for prices, integer lots for size.

Names carry their unit last (`price_ticks`, `cash_micros`, `qty_lots`, `rate_ppm`) so a mix-up shows
in review. Conversions to and from `Decimal` live here and nowhere else.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Final

MICROS_PER_USD: Final = 1_000_000
PPM: Final = 1_000_000  # rates are parts per million: 12% = 120_000 ppm, 2 bps = 200 ppm
NS_PER_SECOND: Final = 1_000_000_000
NS_PER_HOUR: Final = 3_600_000_000_000

_MICRO = Decimal("0.000001")


class UnitError(ValueError):
    """A decimal value that cannot be represented exactly in the unit asked for."""


def div_half_even(numerator: int, denominator: int) -> int:
    """Integer division rounded half-to-even (the rulebook's rounding), exact for any ints."""
    assert denominator > 0, "denominator must be positive"
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient & 1):
        quotient += 1
    return quotient


def apply_ppm(amount: int, rate_ppm: int) -> int:
    """`amount × rate`, rounded half-to-even to the unit of `amount`."""
    return div_half_even(amount * rate_ppm, PPM)


def to_decimal(value: object, what: str) -> Decimal:
    """Parse a decimal given as str/int/Decimal; floats are refused because they are not exact."""
    if isinstance(value, (bool, float)):
        raise UnitError(f"{what} must be an exact decimal (a string like \"2.405\"), not {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | str):
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise UnitError(f"{what} is not a decimal number: {value!r}") from None
    else:
        raise UnitError(f"{what} must be a decimal number, not {type(value).__name__}")
    if not result.is_finite():
        raise UnitError(f"{what} must be finite, not {value!r}")
    return result


def _scaled_int(amount: Decimal, places: int) -> int | None:
    """`amount × 10**places` as an int, or None if that is not a whole number.

    Integer arithmetic on the decimal's digits: Decimal multiplication would round silently past
    the context's 28 significant digits.
    """
    sign, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)  # finite, checked by to_decimal
    coefficient = int("".join(map(str, digits)) or "0")
    shift = exponent + places
    if shift >= 0:
        scaled = coefficient * 10**shift
    else:
        scaled, remainder = divmod(coefficient, 10**-shift)
        if remainder:
            return None
    return int(-scaled if sign else scaled)


def usd_to_micros(value: object, what: str = "amount") -> int:
    """Decimal USD -> integer micro-dollars; more than 6 decimal places is an error, never rounded."""
    amount = to_decimal(value, what)
    micros = _scaled_int(amount, 6)
    if micros is None:
        raise UnitError(f"{what} {amount} has more precision than one micro-dollar (0.000001)")
    return micros


def micros_to_usd(micros: int) -> Decimal:
    """Integer micro-dollars -> Decimal USD with exactly 6 decimal places."""
    return (Decimal(micros) / MICROS_PER_USD).quantize(_MICRO)


def rate_to_ppm(value: object, what: str = "rate") -> int:
    """Decimal fraction (0.12) -> parts per million (120000); finer than 1 ppm is an error."""
    rate = to_decimal(value, what)
    ppm = _scaled_int(rate, 6)
    if ppm is None:
        raise UnitError(f"{what} {rate} is finer than one part per million")
    return ppm


def price_to_ticks(value: object, tick_micros: int, what: str = "price") -> int:
    """Decimal USD/GPU-hour -> integer ticks; a price off the tick grid is an error, never rounded."""
    micros = usd_to_micros(value, what)
    ticks, remainder = divmod(micros, tick_micros)
    if remainder:
        raise UnitError(
            f"{what} {to_decimal(value, what)} is not a multiple of the tick {micros_to_usd(tick_micros)}"
        )
    return ticks


def ticks_to_price(price_ticks: int, tick_micros: int) -> Decimal:
    """Integer ticks -> Decimal USD/GPU-hour, normalised to the tick's decimal places."""
    return micros_to_usd(price_ticks * tick_micros).normalize().quantize(
        micros_to_usd(tick_micros).normalize()
    )


def usd_text(micros: int) -> str:
    """Integer micro-dollars as a person reads them: "$8,349.696", "-$0.09", "$5,000.00". Exact: at least
    cents, and every further digit there is (a message must not round money away)."""
    amount = micros_to_usd(abs(micros)).normalize()
    if amount.as_tuple().exponent > -2:  # type: ignore[operator]  # finite: an int's value
        amount = amount.quantize(Decimal("0.01"))
    return f"{'-' if micros < 0 else ''}${amount:,f}"
