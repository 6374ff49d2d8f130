"""Every rule of the contract files: a modified copy of contracts/ fails with a CatalogError that names
the file, the field path and the rule broken."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from exchange.catalog import CatalogError, load_catalog
from exchange.catalog.models import ProductEntry

from .conftest import set_in_table, set_line

GENERATIONS, PRODUCTS, EXCHANGE = "generations.toml", "products.toml", "exchange.toml"
# Indexes in the shipped files.
H100, H200, RUBIN = 1, 2, 5  # [[generation]]
A100_M35, H100_M40, H100_M45, RUBIN_M30 = 0, 4, 5, 15  # [[product]]


def load_error(contracts: Path) -> CatalogError:
    with pytest.raises(CatalogError) as raised:
        load_catalog(contracts)
    return raised.value


def assert_single_problem(error: CatalogError, file: str, field: str, rule: str) -> None:
    """Exactly one problem, whose message is `<path>/<file>: <field>: ...<rule>...`."""
    assert len(error.problems) == 1, str(error)
    assert error.file.endswith(f"contracts/{file}")
    assert error.field == field
    assert rule in error.rule
    assert str(error).startswith(f"{error.file}: {field}: ")


# (file, table, index, key, TOML value or None to delete the key) -> (field path, rule)
TABLE_EDITS = {
    # products.toml
    "unknown generation": (
        (PRODUCTS, "product", H100_M40, "generation", '"H101"'),
        ("product[4] (H101-M40).generation",
         "unknown generation 'H101'; generations.toml defines: A100, H100, H200, B200, GB200, Rubin"),
    ),
    "MFU 0": (
        (PRODUCTS, "product", H100_M40, "grade", "0.0"),
        ("product[4] (H100).grade", "an MFU grade must be strictly between 0 and 1, got 0.0"),
    ),
    "MFU 1": (
        (PRODUCTS, "product", H100_M40, "grade", "1"),
        ("product[4] (H100).grade", "an MFU grade must be strictly between 0 and 1, got 1"),
    ),
    "MFU 1.2": (
        (PRODUCTS, "product", H100_M40, "grade", "1.2"),
        ("product[4] (H100).grade", "an MFU grade must be strictly between 0 and 1, got 1.2"),
    ),
    "MFU negative": (
        (PRODUCTS, "product", H100_M40, "grade", "-0.40"),
        ("product[4] (H100).grade", "strictly between 0 and 1"),
    ),
    "MFU not a whole percent": (
        (PRODUCTS, "product", H100_M40, "grade", "0.405"),
        ("product[4] (H100).grade",
         "must be a whole percent (0.01 steps) because product codes are M<2 digits>, got 0.405"),
    ),
    "MFU as a string": (
        (PRODUCTS, "product", H100_M40, "grade", '"0.40"'),
        ("product[4] (H100).grade", "must be a number (written without quotes), got '0.40'"),
    ),
    "MFU with more digits than Decimal keeps": (
        (PRODUCTS, "product", H100_M40, "grade", "0.4000000000000000000000000000001"),
        ("product[4] (H100).grade", "at most 12 decimal places"),
    ),
    "duplicate product": (
        (PRODUCTS, "product", H100_M45, "grade", "0.40"),
        ("product[5] (H100-M40).grade",
         "duplicate product H100-M40: product[4] has the same generation and grade"),
    ),
    "duplicate product with another spelling of the grade": (
        (PRODUCTS, "product", H100_M45, "grade", "0.4"),
        ("product[5] (H100-M40).grade", "duplicate product H100-M40"),
    ),
    "product reference price off the tick": (
        (PRODUCTS, "product", H100_M45, "reference_price", "2.503"),
        ("product[5] (H100-M45).reference_price",
         "reference_price 2.503 is not a multiple of the tick 0.005"),
    ),
    "product reference price zero": (
        (PRODUCTS, "product", H100_M45, "reference_price", "0"),
        ("product[5] (H100-M45).reference_price", "must be positive, got 0"),
    ),
    "product of a generation without peak listed": (
        (PRODUCTS, "product", RUBIN_M30, "listed", None),  # listed defaults to true
        ("product[15] (Rubin-M30).listed",
         "a product cannot be listed while its generation Rubin has no dense BF16 peak (peak_tflops)"),
    ),
    "product unknown key": (
        (PRODUCTS, "product", A100_M35, "price", "1.15"),
        ("product[0] (A100-M35).price", "unknown key"),
    ),
    "product listed not a boolean": (
        (PRODUCTS, "product", A100_M35, "listed", '"yes"'),
        ("product[0] (A100-M35).listed", "Input should be a valid boolean, got 'yes'"),
    ),
    # generations.toml
    "sparse peak": (
        (GENERATIONS, "generation", H100, "peak_precision", '"bf16_sparse"'),
        ("generation[1] (H100).peak_precision",
         "MFU is always measured against the dense BF16 peak, so peak_precision must be 'bf16_dense', "
         "not 'bf16_sparse'"),
    ),
    "FP8 peak": (
        (GENERATIONS, "generation", H100, "peak_precision", '"fp8"'),
        ("generation[1] (H100).peak_precision", "not 'fp8' (a sparse or FP8 peak is invalid)"),
    ),
    "peak precision missing": (
        (GENERATIONS, "generation", H100, "peak_precision", None),
        ("generation[1] (H100).peak_precision", "required key is missing"),
    ),
    "peak zero": (
        (GENERATIONS, "generation", H100, "peak_tflops", "0"),
        ("generation[1] (H100).peak_tflops", "must be positive, got 0"),
    ),
    "peak negative": (
        (GENERATIONS, "generation", H100, "peak_tflops", "-989"),
        ("generation[1] (H100).peak_tflops", "must be positive, got -989"),
    ),
    "peak infinite": (
        (GENERATIONS, "generation", H100, "peak_tflops", "inf"),
        ("generation[1] (H100).peak_tflops", "must be a finite number"),
    ),
    "listed generation without a peak": (
        (GENERATIONS, "generation", H100, "peak_tflops", None),
        ("generation[1] (H100).listed",
         "a generation cannot be listed without a dense BF16 peak (peak_tflops)"),
    ),
    "generation name not usable in symbols": (
        (GENERATIONS, "generation", H200, "name", '"H-200"'),
        ("generation[2] (H-200).name", "must be an upper-case letter followed by up to 15 letters or digits"),
    ),
    "gpus per lot zero": (
        (GENERATIONS, "generation", H100, "gpus_per_lot", "0"),
        ("generation[1] (H100).gpus_per_lot", "must be positive, got 0"),
    ),
    "gpus per lot a string": (
        (GENERATIONS, "generation", H100, "gpus_per_lot", '"8"'),
        ("generation[1] (H100).gpus_per_lot", "Input should be a valid integer, got '8'"),
    ),
    "gpus per lot fractional": (
        (GENERATIONS, "generation", H100, "gpus_per_lot", "8.5"),
        ("generation[1] (H100).gpus_per_lot", "Input should be a valid integer, got 8.5"),
    ),
    "gpus per lot misspelt": (
        (GENERATIONS, "generation", H100, "gpu_per_lot", "8"),
        ("generation[1] (H100).gpu_per_lot", "unknown key"),
    ),
    "generation reference price off the tick": (
        (GENERATIONS, "generation", H100, "reference_price", "2.401"),
        ("generation[1] (H100).reference_price", "reference_price 2.401 is not a multiple of the tick 0.005"),
    ),
    "generation reference price negative": (
        (GENERATIONS, "generation", H100, "reference_price", "-2.40"),
        ("generation[1] (H100).reference_price", "must be positive, got -2.40"),
    ),
}


@pytest.mark.parametrize(("edit", "expected"), TABLE_EDITS.values(), ids=TABLE_EDITS.keys())
def test_table_rule(
    contracts: Path, edit: tuple[str, str, int, str, str | None], expected: tuple[str, str]
) -> None:
    file, table, index, key, value = edit
    set_in_table(contracts / file, table, index, key, value)
    assert_single_problem(load_error(contracts), file, *expected)


# exchange.toml: (key, TOML value) -> (field path, rule)
EXCHANGE_EDITS = {
    "tick zero": (("tick", "0"), ("tick", "must be positive, got 0")),
    "tick negative": (("tick", "-0.005"), ("tick", "must be positive, got -0.005")),
    "tick finer than a micro-dollar": (
        ("tick", "0.0000005"),
        ("tick", "tick 5E-7 has more precision than one micro-dollar (0.000001)"),
    ),
    "price band 100%": (("price_band", "1.0"), ("price_band", "must be at least 0 and below 1, got 1.0")),
    "negative taker fee": (("taker_fee_rate", "-0.0002"), ("taker_fee_rate", "must be at least 0")),
    "fee finer than a ppm": (
        ("maker_fee_rate", "0.0000001"),
        ("maker_fee_rate", "rate 1E-7 is finer than one part per million"),
    ),
    "no initial margin": (("initial_margin_rate", "0"),
        ("initial_margin_rate", "must be above 0 and at most 1")),
    "initial margin above 100%": (("initial_margin_rate", "1.5"),
        ("initial_margin_rate", "at most 1, got 1.5")),
    "max order lots zero": (("max_order_lots", "0"), ("max_order_lots", "must be positive, got 0")),
    "max position lots a float": (
        ("max_position_lots", "5000.0"),
        ("max_position_lots", "Input should be a valid integer, got 5000.0"),
    ),
    "open orders negative": (
        ("max_open_orders_per_account", "-1"),
        ("max_open_orders_per_account", "must be positive, got -1"),
    ),
    "trading end hour 24": (("trading_end_hour_utc", "24"), ("trading_end_hour_utc", "0 to 23, got 24")),
    "no monthly series": (("monthly", "0"), ("listing.monthly", "must be positive, got 0")),
    "no daily series": (("daily", "-7"), ("listing.daily", "must be positive, got -7")),
    "settlement hour negative": (
        ("daily_settlement_hour_utc", "-1"),
        ("settlement.daily_settlement_hour_utc", "0 to 23, got -1"),
    ),
    "VWAP window zero": (("vwap_window_seconds", "0"), ("settlement.vwap_window_seconds", "positive")),
    "margin call ratio zero": (("margin_call_ratio", "0"), ("settlement.margin_call_ratio", "above 0")),
    "deadband 100%": (("mfu_deadband", "1"), ("settlement.mfu_deadband", "below 1, got 1")),
    "floor offset negative": (("mfu_floor_offset", "-0.05"), ("settlement.mfu_floor_offset", "at least 0")),
    "shortfall tolerance a string": (
        ("shortfall_tolerance", '"2%"'),
        ("settlement.shortfall_tolerance", "must be a number (written without quotes), got '2%'"),
    ),
    "damages premium negative": (
        ("damages_premium", "-0.25"),
        ("settlement.damages_premium", "must not be negative, got -0.25"),
    ),
    "default threshold above 1": (
        ("default_threshold", "1.5"),
        ("settlement.default_threshold", "must be above 0 and at most 1, got 1.5"),
    ),
    "unknown settlement key": (
        ("default_threshold", "0.5\nsurprise = 1"),
        ("settlement.surprise", "unknown key"),
    ),
    "tick as a string": (
        ("tick", '"0.005"'),
        ("tick", "must be a number (written without quotes), got '0.005'"),
    ),
}


@pytest.mark.parametrize(("edit", "expected"), EXCHANGE_EDITS.values(), ids=EXCHANGE_EDITS.keys())
def test_exchange_rule(contracts: Path, edit: tuple[str, str], expected: tuple[str, str]) -> None:
    set_line(contracts / EXCHANGE, *edit)
    assert_single_problem(load_error(contracts), EXCHANGE, *expected)


@pytest.mark.parametrize(("name", "rule"), [
    ("H100", "duplicate generation: generation[1] is already H100"),
    ("Gb200", "duplicate generation: generation[4] is already GB200"),  # names differing only in case
])
def test_duplicate_generation(contracts: Path, name: str, rule: str) -> None:
    path = contracts / GENERATIONS
    block = f"""
[[generation]]
name = "{name}"
description = "a second definition"
peak_tflops = 989
peak_precision = "bf16_dense"
gpus_per_lot = 8
listed = true
reference_price = 2.40
"""
    path.write_text(path.read_text() + block)
    assert_single_problem(load_error(contracts), GENERATIONS, f"generation[6] ({name}).name", rule)


def test_rubin_listed_without_peak(contracts: Path) -> None:
    set_in_table(contracts / GENERATIONS, "generation", RUBIN, "listed", "true")
    error = load_error(contracts)
    assert str(error) == (
        f"{contracts / GENERATIONS}: generation[5] (Rubin).listed: "
        "a generation cannot be listed without a dense BF16 peak (peak_tflops)"
    )


def test_rubin_can_be_listed_once_it_has_a_peak(contracts: Path) -> None:
    set_in_table(contracts / GENERATIONS, "generation", RUBIN, "listed", "true")
    set_in_table(contracts / GENERATIONS, "generation", RUBIN, "peak_tflops", "5000")
    set_in_table(contracts / GENERATIONS, "generation", RUBIN, "reference_price", "9.00")
    for index in (15, 16, 17):
        set_in_table(contracts / PRODUCTS, "product", index, "listed", None)
    spec = load_catalog(contracts).series_spec("Rubin-M35-Z26")
    assert (spec.gpus_per_lot, spec.reference_price_ticks) == (72, 1800)


@pytest.mark.parametrize(
    ("file", "key", "broken"),
    [
        (GENERATIONS, "gpus_per_lot", "gpus_per_lot = = 8"),
        (PRODUCTS, "grade", 'grade = "0.35'),
        (EXCHANGE, "tick", "tick = 0.005 0.010"),
    ],
)
def test_malformed_toml_reports_file_line_and_column(
    contracts: Path, file: str, key: str, broken: str
) -> None:
    path = contracts / file
    lines = path.read_text().splitlines()
    line_number = next(n for n, line in enumerate(lines, start=1) if line.startswith(f"{key} ="))
    lines[line_number - 1] = broken
    path.write_text("\n".join(lines) + "\n")
    error = load_error(contracts)
    assert len(error.problems) == 1 and error.file == str(path) and error.field == ""
    assert str(error).startswith(f"{path}: malformed TOML: ")
    assert f"(at line {line_number}, column " in str(error)


def test_file_that_is_not_utf8(contracts: Path) -> None:
    path = contracts / EXCHANGE
    path.write_bytes(b"# caf\xe9\n" + path.read_bytes())
    assert str(load_error(contracts)) == f"{path}: not UTF-8 text: invalid continuation byte at byte 5"


def test_missing_file(contracts: Path) -> None:
    (contracts / PRODUCTS).unlink()
    assert str(load_error(contracts)) == f"{contracts / PRODUCTS}: file not found"


def test_missing_directory(tmp_path: Path) -> None:
    error = load_error(tmp_path / "nowhere")
    assert [problem.rule for problem in error.problems] == ["file not found"] * 3


def test_problems_in_several_files_are_reported_together(contracts: Path) -> None:
    set_line(contracts / EXCHANGE, "tick", "0")
    set_in_table(contracts / GENERATIONS, "generation", H100, "peak_precision", '"fp8"')
    set_in_table(contracts / PRODUCTS, "product", H100_M40, "grade", "1.2")
    error = load_error(contracts)
    assert [(Path(p.file).name, p.field) for p in error.problems] == [
        (EXCHANGE, "tick"),
        (GENERATIONS, "generation[1] (H100).peak_precision"),
        (PRODUCTS, "product[4] (H100).grade"),
    ]
    assert len(str(error).splitlines()) == 3


def test_toml_floats_are_read_as_exact_decimals(contracts: Path) -> None:
    # 2.405 and 0.1 have no exact binary float; read as floats they would be off the tick grid.
    set_in_table(contracts / PRODUCTS, "product", H100_M45, "reference_price", "2.405")
    set_line(contracts / EXCHANGE, "taker_fee_rate", "0.0003")
    catalog = load_catalog(contracts)
    price = catalog.products["H100-M45"].reference_price
    assert type(price) is Decimal and str(price) == "2.405"
    assert catalog.series_spec("H100-M45-Z26").reference_price_ticks == 481
    assert catalog.rules.taker_fee_ppm == 300
    assert type(catalog.rules.tick) is Decimal and str(catalog.rules.tick) == "0.005"


def test_schema_refuses_binary_floats() -> None:
    with pytest.raises(ValidationError, match=r"binary float 0\.4 is not exact; use a Decimal"):
        ProductEntry.model_validate({"generation": "H100", "grade": 0.4})


def test_listed_product_needs_a_reference_price(contracts: Path) -> None:
    # H100-M40 has no override; without the generation's default it has no reference price at all.
    set_in_table(contracts / GENERATIONS, "generation", H100, "reference_price", None)
    assert_single_problem(
        load_error(contracts),
        PRODUCTS,
        "product[4] (H100-M40).reference_price",
        "a listed product needs a reference price, here or on generation H100",
    )
