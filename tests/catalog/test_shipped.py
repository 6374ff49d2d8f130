"""The shipped contracts/ load, and the specs they produce carry the rulebook's numbers."""

from __future__ import annotations

import calendar
from decimal import Decimal
from pathlib import Path

import pytest

from exchange.catalog import CONTRACTS_DIR_ENV, Catalog, SymbolError, load_catalog
from exchange.domain.spec import PeriodKind
from exchange.domain.units import NS_PER_SECOND

from .conftest import set_in_table


def utc_ns(year: int, month: int, day: int, hour: int = 0) -> int:
    """An independent oracle for UTC timestamps."""
    return calendar.timegm((year, month, day, hour, 0, 0)) * NS_PER_SECOND


@pytest.mark.parametrize(
    ("name", "expected"),  # expected: peak_tflops, gpus_per_lot, listed, reference_price
    [
        ("A100", (Decimal(312), 8, True, Decimal("1.20"))),
        ("H100", (Decimal(989), 8, True, Decimal("2.40"))),
        ("H200", (Decimal(989), 8, True, Decimal("3.40"))),
        ("B200", (Decimal(2250), 8, True, Decimal("5.00"))),
        ("GB200", (Decimal(2500), 72, True, Decimal("6.00"))),
        ("Rubin", (None, 72, False, None)),
    ],
)
def test_generations(
    shipped: Catalog, name: str, expected: tuple[Decimal | None, int, bool, Decimal | None]
) -> None:
    g = shipped.generations[name]
    assert (g.peak_tflops, g.gpus_per_lot, g.listed, g.reference_price) == expected


def test_generations_are_in_file_order(shipped: Catalog) -> None:
    assert list(shipped.generations) == ["A100", "H100", "H200", "B200", "GB200", "Rubin"]


def test_default_grades_per_rulebook(shipped: Catalog) -> None:
    assert [p.code for p in shipped.listed_products()] == [
        "A100-M35", "A100-M40", "A100-M45",
        "H100-M35", "H100-M40", "H100-M45",
        "H200-M35", "H200-M40", "H200-M45",
        "B200-M30", "B200-M35", "B200-M40",
        "GB200-M30", "GB200-M35", "GB200-M40",
    ]  # fmt: skip
    assert not any(p.listed for p in shipped.products.values() if p.generation.name == "Rubin")


@pytest.mark.parametrize(
    ("product", "price", "ticks"),
    [
        ("A100-M35", "1.15", 230),
        ("A100-M40", "1.20", 240),   # the generation's default
        ("A100-M45", "1.25", 250),
        ("H100-M35", "2.30", 460),
        ("H100-M40", "2.40", 480),   # the generation's default
        ("H100-M45", "2.50", 500),
        ("H200-M40", "3.40", 680),
        ("B200-M35", "5.00", 1000),
        ("GB200-M35", "6.00", 1200),
        ("GB200-M40", "6.15", 1230),
    ],
)
def test_reference_prices(shipped: Catalog, product: str, price: str, ticks: int) -> None:
    assert shipped.products[product].reference_price == Decimal(price)
    assert shipped.series_spec(f"{product}-Z26").reference_price_ticks == ticks


def test_higher_grades_are_priced_higher(shipped: Catalog) -> None:
    for generation in ("A100", "H100", "H200", "B200", "GB200"):
        prices = [p.reference_price for p in shipped.listed_products() if p.generation.name == generation]
        assert None not in prices and len(set(prices)) == 3, generation
        assert prices == sorted(price for price in prices if price is not None), generation


def test_exchange_rules(shipped: Catalog) -> None:
    rules = shipped.rules
    assert rules.tick == Decimal("0.005") and rules.tick_micros == 5_000
    assert rules.price_band_ppm == 100_000
    assert rules.initial_margin_ppm == 120_000
    assert rules.taker_fee_ppm == 200 and rules.maker_fee_ppm == 0
    assert (rules.max_order_lots, rules.max_position_lots) == (500, 5000)
    assert rules.max_open_orders_per_account == 1000
    assert rules.trading_end_hour_utc == 16
    assert (rules.listing.monthly, rules.listing.weekly, rules.listing.daily) == (6, 4, 7)


def test_settlement_rules_are_exact_decimals(shipped: Catalog) -> None:
    settlement = shipped.rules.settlement
    assert settlement.daily_settlement_hour_utc == 16
    assert settlement.vwap_window_seconds == 120
    decimals = {
        "margin_call_ratio": "0.75",
        "mfu_deadband": "0.03",
        "mfu_floor_offset": "0.05",
        "shortfall_tolerance": "0.02",
        "damages_premium": "0.25",
        "default_threshold": "0.5",
    }
    for name, text in decimals.items():
        value = getattr(settlement, name)
        assert type(value) is Decimal and str(value) == text, name


def test_monthly_spec_h100_m40_z26(shipped: Catalog) -> None:
    spec = shipped.series_spec("H100-M40-Z26")
    assert (spec.symbol, spec.product, spec.generation) == ("H100-M40-Z26", "H100-M40", "H100")
    assert spec.mfu_grade == Decimal("0.40") and str(spec.mfu_grade) == "0.40"
    assert spec.period is PeriodKind.MONTHLY
    assert spec.delivery_start_ns == utc_ns(2026, 12, 1)
    assert spec.delivery_end_ns == utc_ns(2027, 1, 1)
    assert spec.trading_end_ns == utc_ns(2026, 11, 30, 16)
    assert spec.delivery_hours == 744
    assert spec.lot_gpu_hours == 8 * 744 == 5952
    assert (spec.tick_micros, spec.reference_price_ticks) == (5_000, 480)
    assert (spec.price_band_ppm, spec.initial_margin_ppm, spec.taker_fee_ppm, spec.maker_fee_ppm) == (
        100_000, 120_000, 200, 0,
    )  # fmt: skip
    assert (spec.max_order_lots, spec.max_position_lots) == (500, 5000)


@pytest.mark.parametrize(
    ("symbol", "delivery", "trading_end", "gpu_hours"),  # delivery: (start, end) dates
    [
        ("GB200-M35-Z26", ((2026, 12, 1), (2027, 1, 1)), (2026, 11, 30, 16), 72 * 744),
        ("H100-M40-F27", ((2027, 1, 1), (2027, 2, 1)), (2026, 12, 31, 16), 8 * 744),
        ("H100-M40-G28", ((2028, 2, 1), (2028, 3, 1)), (2028, 1, 31, 16), 8 * 29 * 24),  # leap year
        ("H100-M40-26W49", ((2026, 11, 30), (2026, 12, 7)), (2026, 11, 29, 16), 8 * 168),
        ("H100-M40-26W53", ((2026, 12, 28), (2027, 1, 4)), (2026, 12, 27, 16), 8 * 168),
        ("B200-M30-261203", ((2026, 12, 3), (2026, 12, 4)), (2026, 12, 2, 16), 8 * 24),
        ("GB200-M40-270101", ((2027, 1, 1), (2027, 1, 2)), (2026, 12, 31, 16), 72 * 24),
    ],
)
def test_series_boundaries(
    shipped: Catalog,
    symbol: str,
    delivery: tuple[tuple[int, int, int], tuple[int, int, int]],
    trading_end: tuple[int, int, int, int],
    gpu_hours: int,
) -> None:
    start, end = delivery
    spec = shipped.series_spec(symbol)
    assert spec.delivery_start_ns == utc_ns(*start)
    assert spec.delivery_end_ns == utc_ns(*end)
    assert spec.trading_end_ns == utc_ns(*trading_end)
    assert spec.lot_gpu_hours == gpu_hours


@pytest.mark.parametrize(
    ("symbol", "message"),
    [
        ("X100-M40-Z26", "unknown generation 'X100' in 'X100-M40-Z26'; known: A100, H100, H200, B200, GB200"),
        ("H100-M50-Z26", "unknown product H100-M50 in 'H100-M50-Z26'; H100 products: H100-M35, H100-M40"),
        ("B200-M45-Z26", "unknown product B200-M45"),
        ("Rubin-M40-Z26", "product Rubin-M40 in 'Rubin-M40-Z26' is not listed: its generation is not listed"),
        ("Rubin-M50-Z26", "unknown product Rubin-M50"),
        ("H100-M40-Z6", "invalid symbol 'H100-M40-Z6'"),
    ],
)
def test_series_spec_refuses(shipped: Catalog, symbol: str, message: str) -> None:
    with pytest.raises(SymbolError) as raised:
        shipped.series_spec(symbol)
    assert message in str(raised.value)


def test_unlisted_product_of_listed_generation_is_refused(contracts: Path) -> None:
    set_in_table(contracts / "products.toml", "product", 4, "listed", "false")  # H100-M40
    catalog = load_catalog(contracts)
    with pytest.raises(SymbolError, match="H100-M40 in 'H100-M40-Z26' is not listed: it is marked listed"):
        catalog.series_spec("H100-M40-Z26")


def test_catalog_is_immutable(shipped: Catalog) -> None:
    with pytest.raises(TypeError):
        shipped.products["H100-M40"] = shipped.products["H100-M35"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        shipped.rules = shipped.rules  # type: ignore[misc]


def test_environment_variable_selects_the_directory(contracts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_in_table(contracts / "products.toml", "product", 4, "reference_price", "2.45")  # H100-M40
    monkeypatch.setenv(CONTRACTS_DIR_ENV, str(contracts))
    assert load_catalog().products["H100-M40"].reference_price == Decimal("2.45")


def test_default_directory_without_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONTRACTS_DIR_ENV, raising=False)
    assert load_catalog().series_spec("H100-M40-Z26").lot_gpu_hours == 5952
