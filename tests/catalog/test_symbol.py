"""The symbol grammar: every valid symbol round-trips; every malformed one is refused with a reason."""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.catalog import DeliveryPeriod, SeriesSymbol, SymbolError, format_symbol, parse_symbol
from exchange.catalog.period import iso_weeks_in_year
from exchange.domain.spec import PeriodKind
from exchange.domain.units import NS_PER_SECOND

MONTHLY, WEEKLY, DAILY = PeriodKind.MONTHLY, PeriodKind.WEEKLY, PeriodKind.DAILY


@pytest.mark.parametrize(
    ("text", "parts", "delivery"),  # parts: generation, grade, kind; delivery: start, end
    [
        ("H100-M40-Z26", ("H100", 40, MONTHLY), (date(2026, 12, 1), date(2027, 1, 1))),
        ("A100-M35-F27", ("A100", 35, MONTHLY), (date(2027, 1, 1), date(2027, 2, 1))),
        ("B200-M30-G28", ("B200", 30, MONTHLY), (date(2028, 2, 1), date(2028, 3, 1))),
        ("GB200-M40-F00", ("GB200", 40, MONTHLY), (date(2000, 1, 1), date(2000, 2, 1))),
        ("GB200-M40-Z99", ("GB200", 40, MONTHLY), (date(2099, 12, 1), date(2100, 1, 1))),
        ("H100-M40-26W49", ("H100", 40, WEEKLY), (date(2026, 11, 30), date(2026, 12, 7))),
        ("H100-M40-26W53", ("H100", 40, WEEKLY), (date(2026, 12, 28), date(2027, 1, 4))),  # 2026 has 53
        ("H100-M40-26W01", ("H100", 40, WEEKLY), (date(2025, 12, 29), date(2026, 1, 5))),  # starts in 2025
        ("H200-M45-27W01", ("H200", 45, WEEKLY), (date(2027, 1, 4), date(2027, 1, 11))),
        ("H100-M40-261203", ("H100", 40, DAILY), (date(2026, 12, 3), date(2026, 12, 4))),
        ("H100-M40-281231", ("H100", 40, DAILY), (date(2028, 12, 31), date(2029, 1, 1))),
        ("H100-M40-280229", ("H100", 40, DAILY), (date(2028, 2, 29), date(2028, 3, 1))),  # leap day
        ("Rubin-M01-261203", ("Rubin", 1, DAILY), (date(2026, 12, 3), date(2026, 12, 4))),
        ("X9-M99-260101", ("X9", 99, DAILY), (date(2026, 1, 1), date(2026, 1, 2))),
    ],
)
def test_valid_symbols_round_trip(
    text: str, parts: tuple[str, int, PeriodKind], delivery: tuple[date, date]
) -> None:
    start, end = delivery
    symbol = parse_symbol(text)
    assert (symbol.generation, symbol.grade_percent, symbol.period) == parts
    assert symbol.delivery.start == start and symbol.delivery.end == end
    assert symbol.delivery_start == datetime(start.year, start.month, start.day, tzinfo=UTC)
    assert symbol.delivery_start_ns == calendar.timegm(start.timetuple()) * NS_PER_SECOND
    assert symbol.delivery_end_ns == calendar.timegm(end.timetuple()) * NS_PER_SECOND
    assert format_symbol(symbol) == str(symbol) == text


def test_2026_has_53_iso_weeks() -> None:
    assert date.fromisocalendar(2026, 53, 1) == date(2026, 12, 28)
    assert iso_weeks_in_year(2026) == 53
    assert iso_weeks_in_year(2025) == 52
    with pytest.raises(ValueError):
        date.fromisocalendar(2025, 53, 1)


def test_symbol_parts() -> None:
    symbol = parse_symbol("H100-M40-Z26")
    assert symbol.mfu_grade == Decimal("0.40") and str(symbol.mfu_grade) == "0.40"
    assert str(parse_symbol("H100-M05-Z26").mfu_grade) == "0.05"
    assert symbol.grade_code == "M40"
    assert symbol.product_code == "H100-M40"
    assert symbol.delivery.code == "Z26"
    assert symbol == SeriesSymbol.monthly("H100", 40, 2026, 12)
    assert parse_symbol("H100-M40-26W49") == SeriesSymbol.weekly("H100", 40, 2026, 49)
    assert parse_symbol("H100-M40-261203") == SeriesSymbol.daily("H100", 40, date(2026, 12, 3))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("H100", "expected 3 parts <generation>-M<grade>-<period> (e.g. H100-M40-Z26), found 1"),
        ("H100-M40", "found 2"),
        ("H100-M40-Z26-X", "found 4"),
        ("H100--Z26", "grade '' must be 'M' and two digits"),
        ("H100-M40-", "period '' is none of"),
        ("-M40-Z26", "generation '' must be an upper-case letter"),
        (" H100-M40-Z26", "no spaces"),
        ("H100-M40-Z26\n", "no spaces"),
        ("H100-M40-Z２6", "only ASCII"),
        # case
        ("h100-m40-z26", "generation 'h100' must be an upper-case letter"),
        ("H100-m40-Z26", "grade 'm40' must be upper case (M40)"),
        ("H100-M40-z26", "month code 'z' must be upper case (Z)"),
        ("H100-M40-26w49", "must use an upper-case W (26W49)"),
        # grade
        ("H100-M4-Z26", "grade 'M4' must be 'M' and two digits"),
        ("H100-M400-Z26", "grade 'M400' must be 'M' and two digits"),
        ("H100-40-Z26", "grade '40' must be 'M' and two digits"),
        ("H100-MXX-Z26", "grade 'MXX' must be 'M' and two digits"),
        ("H100-M00-Z26", "grade M00 would be 0% MFU; grades run from M01 to M99"),
        # monthly
        ("H100-M40-A26", "'A' is not a month code; month codes are F G H J K M N Q U V X Z"),
        ("H100-M40-I26", "'I' is not a month code"),
        ("H100-M40-Z2026", "is none of"),
        ("H100-M40-Z6", "is none of"),
        # weekly
        ("H100-M40-25W53", "week 53 does not exist: ISO year 2025 has weeks 01 to 52"),
        ("H100-M40-26W54", "week 54 does not exist: ISO year 2026 has weeks 01 to 53"),
        ("H100-M40-26W00", "week 00 does not exist"),
        ("H100-M40-26W9", "is none of"),
        ("H100-M40-2026W49", "is none of"),
        # daily
        ("H100-M40-260230", "'260230' is not a real date (2026-02-30"),
        ("H100-M40-270229", "'270229' is not a real date (2027-02-29"),
        ("H100-M40-261301", "'261301' is not a real date (2026-13-01"),
        ("H100-M40-261200", "'261200' is not a real date"),
        ("H100-M40-20261203", "is none of"),
        ("H100-M40-2612", "is none of"),
        # generation
        ("H-100-M40-Z26", "found 4"),
        ("1H00-M40-Z26", "generation '1H00' must be an upper-case letter"),
        ("H_100-M40-Z26", "generation 'H_100'"),
        ("ABCDEFGHIJKLMNOPQ-M40-Z26", "up to 15 letters or digits"),
    ],
)
def test_malformed_symbols(text: str, reason: str) -> None:
    with pytest.raises(SymbolError) as raised:
        parse_symbol(text)
    message = str(raised.value)
    assert message.startswith(f"invalid symbol {text!r}: ")
    assert reason in message


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: SeriesSymbol.monthly("h100", 40, 2026, 12), "generation 'h100'"),
        (lambda: SeriesSymbol.monthly("H100", 0, 2026, 12), "grade 0%"),
        (lambda: SeriesSymbol.monthly("H100", 100, 2026, 12), "grade 100%"),
        (lambda: SeriesSymbol.monthly("H100", 40, 2100, 1), "two-digit years name 2000-2099 only"),
        (lambda: SeriesSymbol.daily("H100", 40, date(1999, 12, 31)), "has year 1999"),
        (lambda: SeriesSymbol.weekly("H100", 40, 1999, 52), "has year 1999"),
    ],
)
def test_series_symbol_refuses_what_it_cannot_spell(build: Callable[[], SeriesSymbol], reason: str) -> None:
    with pytest.raises(SymbolError, match=reason):
        build()


@pytest.mark.parametrize(
    ("kind", "start", "reason"),
    [
        (MONTHLY, date(2026, 12, 2), "a monthly period starts on the 1st"),
        (WEEKLY, date(2026, 12, 1), "a weekly period starts on a Monday"),
    ],
)
def test_delivery_period_must_be_aligned(kind: PeriodKind, start: date, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        DeliveryPeriod(kind, start)


@pytest.mark.parametrize(
    ("period", "following"),
    [
        (DeliveryPeriod.monthly(2026, 12), DeliveryPeriod.monthly(2027, 1)),
        (DeliveryPeriod.weekly(2026, 53), DeliveryPeriod.weekly(2027, 1)),
        (DeliveryPeriod.daily(date(2028, 2, 28)), DeliveryPeriod.daily(date(2028, 2, 29))),
    ],
)
def test_next_period(period: DeliveryPeriod, following: DeliveryPeriod) -> None:
    assert period.next() == following
    assert period.end == following.start


# --- property: any (generation, grade, period) formats and parses back to itself

generations = st.from_regex(r"[A-Z][A-Za-z0-9]{0,15}", fullmatch=True)
grades = st.integers(min_value=1, max_value=99)
years = st.integers(min_value=2000, max_value=2099)
monthly = st.builds(DeliveryPeriod.monthly, years, st.integers(min_value=1, max_value=12))
weekly = years.flatmap(
    lambda year: st.builds(
        DeliveryPeriod.weekly, st.just(year), st.integers(min_value=1, max_value=iso_weeks_in_year(year))
    )
)
daily = st.builds(DeliveryPeriod.daily, st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)))


@given(generation=generations, grade=grades, delivery=st.one_of(monthly, weekly, daily))
def test_format_then_parse_is_identity(generation: str, grade: int, delivery: DeliveryPeriod) -> None:
    symbol = SeriesSymbol(generation, grade, delivery)
    text = format_symbol(symbol)
    assert parse_symbol(text) == symbol
    assert format_symbol(parse_symbol(text)) == text
    assert symbol.delivery_start_ns < symbol.delivery_end_ns
