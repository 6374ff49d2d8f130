"""Delivery periods: their UTC boundaries, their codes in symbols, and the period after each.

Pure calendar arithmetic on `datetime.date`, no clock and no time zone other than UTC: a date's
midnight is `days since 1970-01-01 × NS_PER_DAY` nanoseconds since the Unix epoch, exactly.

Codes (the last part of a symbol), years are two digits standing for 20YY:
- monthly `Z26`: CME month code and year, the 1st 00:00 UTC to the next month's 1st 00:00 UTC;
- weekly `26W49`: ISO week-year and week, Monday 00:00 UTC to the next Monday 00:00 UTC;
- daily `261203`: yymmdd, 00:00 to 24:00 UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from exchange.catalog.errors import SymbolError
from exchange.domain.spec import PeriodKind
from exchange.domain.units import NS_PER_HOUR

NS_PER_DAY = 24 * NS_PER_HOUR
MONTH_CODES = "FGHJKMNQUVXZ"  # January .. December (CME)
FIRST_YEAR, LAST_YEAR = 2000, 2099  # what a two-digit year can name

_EPOCH = date(1970, 1, 1)
_MONTHLY = re.compile(r"([A-Za-z])([0-9]{2})")
_WEEKLY = re.compile(r"([0-9]{2})([Ww])([0-9]{2})")
_DAILY = re.compile(r"([0-9]{2})([0-9]{2})([0-9]{2})")


def date_to_ns(day: date) -> int:
    """00:00 UTC of `day`, in nanoseconds since the Unix epoch."""
    return (day - _EPOCH).days * NS_PER_DAY


def ns_to_date(at_ns: int) -> date:
    """The UTC date containing the instant `at_ns` (floor division, so exact before 1970 too)."""
    return _EPOCH + timedelta(days=at_ns // NS_PER_DAY)


def iso_weeks_in_year(iso_year: int) -> int:
    """52 or 53: 28 December always lies in the last ISO week of its year."""
    return date(iso_year, 12, 28).isocalendar().week


@dataclass(frozen=True, slots=True)
class DeliveryPeriod:
    """One delivery period, identified by its kind and its first day (UTC)."""

    kind: PeriodKind
    start: date  # the 1st of the month (monthly), a Monday (weekly), or the day itself (daily)

    def __post_init__(self) -> None:
        if self.kind is PeriodKind.MONTHLY and self.start.day != 1:
            raise ValueError(f"a monthly period starts on the 1st, not on {self.start}")
        if self.kind is PeriodKind.WEEKLY and self.start.weekday() != 0:
            raise ValueError(f"a weekly period starts on a Monday, not on {self.start}")

    @classmethod
    def monthly(cls, year: int, month: int) -> DeliveryPeriod:
        return cls(PeriodKind.MONTHLY, date(year, month, 1))

    @classmethod
    def weekly(cls, iso_year: int, week: int) -> DeliveryPeriod:
        """Raises ValueError if the ISO year has no such week (e.g. week 53 of a 52-week year)."""
        return cls(PeriodKind.WEEKLY, date.fromisocalendar(iso_year, week, 1))

    @classmethod
    def daily(cls, day: date) -> DeliveryPeriod:
        return cls(PeriodKind.DAILY, day)

    @classmethod
    def containing(cls, kind: PeriodKind, day: date) -> DeliveryPeriod:
        """The period of `kind` whose delivery includes `day`."""
        if kind is PeriodKind.MONTHLY:
            return cls(kind, day.replace(day=1))
        if kind is PeriodKind.WEEKLY:
            return cls(kind, day - timedelta(days=day.weekday()))
        return cls(kind, day)

    @property
    def end(self) -> date:
        """The first day after the period (delivery ends at its 00:00 UTC, exclusive)."""
        if self.kind is PeriodKind.MONTHLY:
            year, month = divmod(self.start.year * 12 + self.start.month, 12)  # month after, 0-based
            return date(year, month + 1, 1)
        if self.kind is PeriodKind.WEEKLY:
            return self.start + timedelta(days=7)
        return self.start + timedelta(days=1)

    def next(self) -> DeliveryPeriod:
        """The period of the same kind that starts when this one ends."""
        return DeliveryPeriod(self.kind, self.end)

    @property
    def start_ns(self) -> int:
        return date_to_ns(self.start)

    @property
    def end_ns(self) -> int:
        return date_to_ns(self.end)

    @property
    def start_utc(self) -> datetime:
        return datetime.combine(self.start, time(), tzinfo=UTC)

    @property
    def end_utc(self) -> datetime:
        return datetime.combine(self.end, time(), tzinfo=UTC)

    @property
    def code(self) -> str:
        """`Z26`, `26W49` or `261203`; raises SymbolError outside the years 2000-2099."""
        # A weekly period is named by its ISO week-year, which differs from the calendar year of
        # its Monday around New Year (2026W01 starts on Monday 2025-12-29).
        iso = self.start.isocalendar()
        year = iso.year if self.kind is PeriodKind.WEEKLY else self.start.year
        if not FIRST_YEAR <= year <= LAST_YEAR:
            raise SymbolError(
                f"{self.kind} period starting {self.start} has year {year}; "
                f"two-digit years name {FIRST_YEAR}-{LAST_YEAR} only"
            )
        yy = year % 100
        if self.kind is PeriodKind.MONTHLY:
            return f"{MONTH_CODES[self.start.month - 1]}{yy:02d}"
        if self.kind is PeriodKind.WEEKLY:
            return f"{yy:02d}W{iso.week:02d}"
        return f"{yy:02d}{self.start.month:02d}{self.start.day:02d}"


def parse_period(code: str) -> DeliveryPeriod:
    """Parse a period code (`Z26`, `26W49`, `261203`); SymbolError says what is wrong."""
    if match := _MONTHLY.fullmatch(code):
        letter, yy = match.groups()
        if letter.islower():
            raise SymbolError(f"month code {letter!r} must be upper case ({letter.upper()})")
        if letter not in MONTH_CODES:
            raise SymbolError(f"{letter!r} is not a month code; month codes are {' '.join(MONTH_CODES)}")
        return DeliveryPeriod.monthly(2000 + int(yy), MONTH_CODES.index(letter) + 1)

    if match := _WEEKLY.fullmatch(code):
        yy, w, ww = match.groups()
        if w == "w":
            raise SymbolError(f"week period {code!r} must use an upper-case W ({code.upper()})")
        iso_year, week = 2000 + int(yy), int(ww)
        weeks = iso_weeks_in_year(iso_year)
        if not 1 <= week <= weeks:
            raise SymbolError(f"week {ww} does not exist: ISO year {iso_year} has weeks 01 to {weeks}")
        return DeliveryPeriod.weekly(iso_year, week)

    if match := _DAILY.fullmatch(code):
        yy, mm, dd = match.groups()
        try:
            day = date(2000 + int(yy), int(mm), int(dd))
        except ValueError as exc:
            raise SymbolError(f"{code!r} is not a real date (20{yy}-{mm}-{dd}: {exc})") from None
        return DeliveryPeriod.daily(day)

    raise SymbolError(
        f"period {code!r} is none of: month code and year (Z26), ISO week (26W49), date yymmdd (261203)"
    )
