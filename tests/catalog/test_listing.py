"""The listing calendar: which series each listed product has open for trading at a UTC instant."""

from __future__ import annotations

import calendar
from collections import Counter
from pathlib import Path

import pytest

from exchange.catalog import LISTING_ORDER, Catalog, load_catalog
from exchange.domain.spec import PeriodKind, SeriesSpec
from exchange.domain.units import NS_PER_SECOND

from .conftest import set_line


def utc_ns(year: int, month: int, day: int, hour: int = 0) -> int:
    return calendar.timegm((year, month, day, hour, 0, 0)) * NS_PER_SECOND


AT = utc_ns(2026, 11, 27, 12)  # Friday 2026-11-27T12:00Z


def periods(specs: list[SeriesSpec], product: str, kind: PeriodKind) -> list[str]:
    """The period codes ("Z26") of one product's series of one kind, in listing order."""
    return [s.symbol.removeprefix(f"{product}-") for s in specs if s.product == product and s.period is kind]


def test_every_listed_product_has_6_monthly_4_weekly_7_daily(shipped: Catalog) -> None:
    specs = shipped.listed_series(AT)
    counts = Counter((s.product, s.period) for s in specs)
    products = sorted(p.code for p in shipped.listed_products())
    assert len(products) == 15
    assert counts == {
        (product, kind): n
        for product in products
        for kind, n in ((PeriodKind.MONTHLY, 6), (PeriodKind.WEEKLY, 4), (PeriodKind.DAILY, 7))
    }
    assert len(specs) == 15 * 17


def test_series_listed_on_2026_11_27_noon(shipped: Catalog) -> None:
    specs = shipped.listed_series(AT)
    # December's trading ends 2026-11-30 16:00, so December is still the front month.
    assert periods(specs, "H100-M40", PeriodKind.MONTHLY) == ["Z26", "F27", "G27", "H27", "J27", "K27"]
    # Week 48 (from Monday 23 Nov) is delivering; week 49's trading ends Sunday 29 Nov 16:00.
    assert periods(specs, "H100-M40", PeriodKind.WEEKLY) == ["26W49", "26W50", "26W51", "26W52"]
    # Tomorrow's daily trades until today 16:00.
    assert periods(specs, "H100-M40", PeriodKind.DAILY) == [
        "261128", "261129", "261130", "261201", "261202", "261203", "261204",
    ]  # fmt: skip


def test_listed_series_are_full_specs_still_trading(shipped: Catalog) -> None:
    for spec in shipped.listed_series(AT):
        assert spec == shipped.series_spec(spec.symbol)
        assert spec.trading_end_ns > AT


def test_order_is_product_then_kind_then_delivery_start(shipped: Catalog) -> None:
    specs = shipped.listed_series(AT)
    key = [(s.product, LISTING_ORDER.index(s.period), s.delivery_start_ns) for s in specs]
    assert key == sorted(key) and len(set(key)) == len(key)
    assert specs[0].symbol == "A100-M35-Z26" and specs[-1].symbol == "H200-M45-261204"


def test_deterministic(shipped: Catalog) -> None:
    assert shipped.listed_series(AT) == shipped.listed_series(AT)


def test_rubin_is_not_listed(shipped: Catalog) -> None:
    assert not [s for s in shipped.listed_series(AT) if s.generation == "Rubin"]


@pytest.mark.parametrize(
    ("product", "kind", "trading_end", "fronts"),  # fronts: first listed before, then at trading_end
    [
        # At exactly the trading end a series is gone; one nanosecond before, it is listed.
        ("H100-M40", PeriodKind.DAILY, utc_ns(2026, 11, 27, 16), ("261128", "261129")),
        ("H100-M40", PeriodKind.WEEKLY, utc_ns(2026, 11, 29, 16), ("26W49", "26W50")),
        ("H100-M40", PeriodKind.MONTHLY, utc_ns(2026, 11, 30, 16), ("Z26", "F27")),
        ("GB200-M30", PeriodKind.WEEKLY, utc_ns(2026, 12, 27, 16), ("26W53", "27W01")),
        ("GB200-M30", PeriodKind.MONTHLY, utc_ns(2026, 12, 31, 16), ("F27", "G27")),
    ],
)
def test_series_stops_being_listed_at_its_trading_end(
    shipped: Catalog, product: str, kind: PeriodKind, trading_end: int, fronts: tuple[str, str]
) -> None:
    first, next_first = fronts
    assert shipped.series_spec(f"{product}-{first}").trading_end_ns == trading_end
    before = periods(shipped.listed_series(trading_end - 1), product, kind)
    at = periods(shipped.listed_series(trading_end), product, kind)
    assert before[0] == first
    assert at[0] == next_first
    assert at[:-1] == before[1:]  # the window slides by one


def test_weekly_listing_across_the_year_end(shipped: Catalog) -> None:
    specs = shipped.listed_series(utc_ns(2026, 12, 27, 12))
    assert periods(specs, "H100-M40", PeriodKind.WEEKLY) == ["26W53", "27W01", "27W02", "27W03"]


def test_listing_counts_and_trading_end_hour_come_from_exchange_toml(contracts: Path) -> None:
    set_line(contracts / "exchange.toml", "monthly", "2")
    set_line(contracts / "exchange.toml", "daily", "1")
    set_line(contracts / "exchange.toml", "trading_end_hour_utc", "0")
    catalog = load_catalog(contracts)
    specs = catalog.listed_series(AT)
    assert periods(specs, "H100-M40", PeriodKind.MONTHLY) == ["Z26", "F27"]
    # Tomorrow's daily stopped trading at 00:00 today.
    assert periods(specs, "H100-M40", PeriodKind.DAILY) == ["261129"]
    assert catalog.series_spec("H100-M40-261129").trading_end_ns == utc_ns(2026, 11, 28, 0)
