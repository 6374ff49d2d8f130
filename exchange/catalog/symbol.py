"""The series symbol grammar: `<generation>-M<grade>-<period>`, parsed and formatted both ways.

    H100-M40-Z26      monthly, December 2026
    H100-M40-26W49    weekly, ISO week 49 of 2026
    H100-M40-261203   daily, 3 December 2026

`format_symbol(parse_symbol(s)) == s` for every valid `s`: there is exactly one spelling per series
(upper-case month codes and `W`, zero-padded numbers). No I/O here; whether a symbol names a listed
product is the catalog's question (`Catalog.series_spec`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from exchange.catalog.errors import SymbolError
from exchange.catalog.period import DeliveryPeriod, parse_period
from exchange.domain.spec import PeriodKind

# Generation names are the first part of every symbol: no '-', and upper case first so that a
# lower-cased symbol is refused rather than read as an unknown generation.
GENERATION_PATTERN = re.compile(r"[A-Z][A-Za-z0-9]{0,15}")
_GRADE = re.compile(r"[Mm]([0-9]{2})")


def grade_code(grade_percent: int) -> str:
    """40 -> "M40"."""
    return f"M{grade_percent:02d}"


def product_code(generation: str, grade_percent: int) -> str:
    """("H100", 40) -> "H100-M40"."""
    return f"{generation}-{grade_code(grade_percent)}"


def grade_to_mfu(grade_percent: int) -> Decimal:
    """40 -> Decimal("0.40"), always with two decimal places."""
    return Decimal(grade_percent).scaleb(-2)


@dataclass(frozen=True, slots=True)
class SeriesSymbol:
    """A parsed symbol: generation, MFU grade and delivery period. `str()` gives the symbol back."""

    generation: str         # "H100"
    grade_percent: int      # 40 for M40: minimum probe MFU in whole percent, 1..99
    delivery: DeliveryPeriod

    def __post_init__(self) -> None:
        if not GENERATION_PATTERN.fullmatch(self.generation):
            raise SymbolError(
                f"generation {self.generation!r} must be an upper-case letter followed by up to 15 "
                "letters or digits"
            )
        if not 1 <= self.grade_percent <= 99:
            raise SymbolError(f"grade {self.grade_percent}% must be a whole percent from 1 to 99")
        _ = self.delivery.code  # raises SymbolError for a year that a two-digit code cannot name

    @classmethod
    def monthly(cls, generation: str, grade_percent: int, year: int, month: int) -> SeriesSymbol:
        return cls(generation, grade_percent, DeliveryPeriod.monthly(year, month))

    @classmethod
    def weekly(cls, generation: str, grade_percent: int, iso_year: int, week: int) -> SeriesSymbol:
        return cls(generation, grade_percent, DeliveryPeriod.weekly(iso_year, week))

    @classmethod
    def daily(cls, generation: str, grade_percent: int, day: date) -> SeriesSymbol:
        return cls(generation, grade_percent, DeliveryPeriod.daily(day))

    @property
    def grade_code(self) -> str:
        """"M40"."""
        return grade_code(self.grade_percent)

    @property
    def mfu_grade(self) -> Decimal:
        """Decimal("0.40") for M40."""
        return grade_to_mfu(self.grade_percent)

    @property
    def product_code(self) -> str:
        """"H100-M40"."""
        return product_code(self.generation, self.grade_percent)

    @property
    def period(self) -> PeriodKind:
        return self.delivery.kind

    @property
    def delivery_start_ns(self) -> int:
        """UTC, inclusive."""
        return self.delivery.start_ns

    @property
    def delivery_end_ns(self) -> int:
        """UTC, exclusive."""
        return self.delivery.end_ns

    @property
    def delivery_start(self) -> datetime:
        return self.delivery.start_utc

    @property
    def delivery_end(self) -> datetime:
        return self.delivery.end_utc

    def __str__(self) -> str:
        return f"{self.product_code}-{self.delivery.code}"


def format_symbol(symbol: SeriesSymbol) -> str:
    """The one spelling of `symbol`, e.g. "H100-M40-Z26"."""
    return str(symbol)


def parse_symbol(text: str) -> SeriesSymbol:
    """Parse `<generation>-M<2-digit grade>-<period>`; SymbolError explains any malformation."""
    try:
        return _parse(text)
    except SymbolError as exc:
        raise SymbolError(f"invalid symbol {text!r}: {exc}") from None


def _parse(text: str) -> SeriesSymbol:
    if not text:
        raise SymbolError("empty")
    if not text.isascii() or not text.isprintable() or any(c.isspace() for c in text):
        raise SymbolError("only ASCII letters, digits and '-' are allowed (no spaces)")
    parts = text.split("-")
    if len(parts) != 3:
        raise SymbolError(
            f"expected 3 parts <generation>-M<grade>-<period> (e.g. H100-M40-Z26), found {len(parts)}"
        )
    generation, grade, period = parts

    if not GENERATION_PATTERN.fullmatch(generation):
        raise SymbolError(
            f"generation {generation!r} must be an upper-case letter followed by up to 15 letters "
            "or digits (e.g. H100)"
        )

    match = _GRADE.fullmatch(grade)
    if match is None:
        raise SymbolError(f"grade {grade!r} must be 'M' and two digits (e.g. M40 for 40% MFU)")
    if grade[0] == "m":
        raise SymbolError(f"grade {grade!r} must be upper case ({grade.upper()})")
    grade_percent = int(match.group(1))
    if grade_percent == 0:
        raise SymbolError("grade M00 would be 0% MFU; grades run from M01 to M99")

    return SeriesSymbol(generation, grade_percent, parse_period(period))
