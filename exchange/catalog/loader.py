"""Reads `contracts/*.toml`, validates them, and builds the immutable `Catalog`.

Every problem becomes a `CatalogError` that names the file, the field path and the rule broken. All
problems of the schema pass (types, unknown keys, ranges) in all three files are reported together;
the cross-file rules run only once the three files are individually valid.
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from exchange.catalog.catalog import (
    Catalog,
    ExchangeRules,
    Generation,
    ListingRules,
    Product,
    SettlementRules,
)
from exchange.catalog.errors import CatalogError, Problem
from exchange.catalog.models import ExchangeFile, GenerationsFile, ProductsFile
from exchange.catalog.symbol import product_code
from exchange.domain.units import UnitError, price_to_ticks, rate_to_ppm, usd_to_micros

CONTRACTS_DIR_ENV = "EXCHANGE_CONTRACTS_DIR"
DEFAULT_CONTRACTS_DIR = Path(__file__).resolve().parents[2] / "contracts"
GENERATIONS_FILE = "generations.toml"
PRODUCTS_FILE = "products.toml"
EXCHANGE_FILE = "exchange.toml"

_Model = TypeVar("_Model", bound=BaseModel)


def contracts_dir() -> Path:
    """`$EXCHANGE_CONTRACTS_DIR` if set, else the repository's `contracts/`."""
    configured = os.environ.get(CONTRACTS_DIR_ENV)
    return Path(configured) if configured else DEFAULT_CONTRACTS_DIR


def load_catalog(directory: Path | None = None) -> Catalog:
    """Load and validate the contract files in `directory` (default: `contracts_dir()`)."""
    directory = contracts_dir() if directory is None else directory
    paths = {name: directory / name for name in (EXCHANGE_FILE, GENERATIONS_FILE, PRODUCTS_FILE)}

    problems: list[Problem] = []
    exchange = _load(paths[EXCHANGE_FILE], ExchangeFile, problems)
    generations = _load(paths[GENERATIONS_FILE], GenerationsFile, problems)
    products = _load(paths[PRODUCTS_FILE], ProductsFile, problems)
    if exchange is None or generations is None or products is None:
        raise CatalogError(problems)
    return _build(exchange, generations, products, paths)


# --- reading and schema validation


def _load(path: Path, model: type[_Model], problems: list[Problem]) -> _Model | None:
    """Parse and schema-check one file; on failure add its problems and return None."""
    file = str(path)
    try:
        with path.open("rb") as stream:
            # parse_float=Decimal: a TOML float such as 2.405 becomes Decimal("2.405"), exactly.
            data = tomllib.load(stream, parse_float=Decimal)
    except FileNotFoundError:
        problems.append(Problem(file, "", "file not found"))
        return None
    except OSError as exc:
        problems.append(Problem(file, "", f"cannot read the file: {exc.strerror}"))
        return None
    except UnicodeDecodeError as exc:
        problems.append(Problem(file, "", f"not UTF-8 text: {exc.reason} at byte {exc.start}"))
        return None
    except tomllib.TOMLDecodeError as exc:
        # The parser's message ends with the position, e.g. "(at line 3, column 7)".
        problems.append(Problem(file, "", f"malformed TOML: {exc}"))
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            problems.append(Problem(file, _field_path(error["loc"], data), _rule(error)))
        return None


def _field_path(loc: tuple[int | str, ...], data: Any) -> str:
    """("generation", 5, "listed") -> "generation[5] (Rubin).listed", labelling list items by name."""
    parts: list[str] = []
    node: Any = data
    for key in loc:
        if isinstance(key, int):
            node = node[key] if isinstance(node, list) and 0 <= key < len(node) else None
            label = _item_label(node)
            step = f"[{key}]" + (f" ({label})" if label else "")
            if parts:
                parts[-1] += step
            else:
                parts.append(step)
        else:
            node = node.get(key) if isinstance(node, dict) else None
            parts.append(key)
    return ".".join(parts)


def _item_label(item: Any) -> str:
    """A generation's name, or a product's code (its generation alone if the grade is unusable)."""
    if not isinstance(item, dict):
        return ""
    if isinstance(item.get("name"), str):
        return str(item["name"])
    generation, grade = item.get("generation"), item.get("grade")
    if not isinstance(generation, str):
        return ""
    if isinstance(grade, Decimal) and grade.is_finite() and 0 < grade < 1 and grade == round(grade, 2):
        return product_code(generation, int(grade.scaleb(2)))
    return generation


def _rule(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key (not part of this file's schema; check the spelling)"
    if kind == "value_error":
        # Our own validators: their message is the rule.
        return str(error.get("ctx", {}).get("error", error["msg"]))
    return f"{error['msg']}, got {_describe(error['input'])}"


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    return repr(value)


# --- cross-field and cross-file rules, and building the catalog


def _build(
    exchange: ExchangeFile,
    generations_file: GenerationsFile,
    products_file: ProductsFile,
    paths: dict[str, Path],
) -> Catalog:
    rules = _rules(exchange)
    problems: list[Problem] = []
    generations = _generations(generations_file, str(paths[GENERATIONS_FILE]), rules, problems)
    products = _products(products_file, str(paths[PRODUCTS_FILE]), generations, rules, problems)
    if problems:
        raise CatalogError(problems)
    return Catalog(generations=generations, products=products, rules=rules)


def _generations(
    file: GenerationsFile, path: str, rules: ExchangeRules, problems: list[Problem]
) -> dict[str, Generation]:
    generations: dict[str, Generation] = {}
    first_index: dict[str, int] = {}  # by case-folded name: "GB200" and "Gb200" would be confusable
    for index, g in enumerate(file.generation):
        where = f"generation[{index}] ({g.name})"
        key = g.name.casefold()
        if key in first_index:
            earlier = first_index[key]
            rule = f"duplicate generation: generation[{earlier}] is already {file.generation[earlier].name}"
            problems.append(Problem(path, f"{where}.name", rule))
            continue
        first_index[key] = index
        if g.listed and g.peak_tflops is None:
            rule = "a generation cannot be listed without a dense BF16 peak (peak_tflops)"
            problems.append(Problem(path, f"{where}.listed", rule))
        if g.reference_price is not None and (rule := _off_tick(g.reference_price, rules)):
            problems.append(Problem(path, f"{where}.reference_price", rule))
        generations[g.name] = Generation(
            name=g.name,
            description=g.description,
            peak_tflops=g.peak_tflops,
            gpus_per_lot=g.gpus_per_lot,
            listed=g.listed,
            reference_price=g.reference_price,
        )
    return generations


def _products(
    file: ProductsFile,
    path: str,
    generations: dict[str, Generation],
    rules: ExchangeRules,
    problems: list[Problem],
) -> dict[str, Product]:
    products: dict[str, Product] = {}
    first_index: dict[str, int] = {}
    for index, p in enumerate(file.product):
        grade_percent = int(p.grade.scaleb(2))  # exact: the grade is a validated whole percent
        code = product_code(p.generation, grade_percent)
        where = f"product[{index}] ({code})"
        generation = generations.get(p.generation)
        if generation is None:
            known = ", ".join(generations) or "none"
            rule = f"unknown generation {p.generation!r}; {GENERATIONS_FILE} defines: {known}"
            problems.append(Problem(path, f"{where}.generation", rule))
            continue
        if code in first_index:
            rule = f"duplicate product {code}: product[{first_index[code]}] has the same generation and grade"
            problems.append(Problem(path, f"{where}.grade", rule))
            continue
        first_index[code] = index
        if p.reference_price is not None and (rule := _off_tick(p.reference_price, rules)):
            problems.append(Problem(path, f"{where}.reference_price", rule))
        # (A listed generation without a peak is reported once, on the generation, not per product.)
        if p.listed and generation.peak_tflops is None and not generation.listed:
            rule = (
                f"a product cannot be listed while its generation {generation.name} has no dense BF16 peak "
                "(peak_tflops); set listed = false"
            )
            problems.append(Problem(path, f"{where}.listed", rule))
        listed = p.listed and generation.listed
        reference_price = p.reference_price if p.reference_price is not None else generation.reference_price
        if listed and reference_price is None:
            rule = f"a listed product needs a reference price, here or on generation {generation.name}"
            problems.append(Problem(path, f"{where}.reference_price", rule))
        products[code] = Product(
            generation=generation,
            grade_percent=grade_percent,
            listed=listed,
            reference_price=reference_price,
        )
    return products


def _off_tick(price: Decimal, rules: ExchangeRules) -> str:
    """Why `price` is not a whole number of ticks, or "" when it is."""
    try:
        price_to_ticks(price, rules.tick_micros, "reference_price")
    except UnitError as exc:
        return str(exc)
    return ""


def _rules(exchange: ExchangeFile) -> ExchangeRules:
    """Exchange rules in integer units; the schema has already checked every conversion is exact."""
    settlement = exchange.settlement
    return ExchangeRules(
        tick=exchange.tick,
        tick_micros=usd_to_micros(exchange.tick, "tick"),
        price_band_ppm=rate_to_ppm(exchange.price_band, "price_band"),
        max_order_lots=exchange.max_order_lots,
        max_position_lots=exchange.max_position_lots,
        max_open_orders_per_account=exchange.max_open_orders_per_account,
        initial_margin_ppm=rate_to_ppm(exchange.initial_margin_rate, "initial_margin_rate"),
        taker_fee_ppm=rate_to_ppm(exchange.taker_fee_rate, "taker_fee_rate"),
        maker_fee_ppm=rate_to_ppm(exchange.maker_fee_rate, "maker_fee_rate"),
        trading_end_hour_utc=exchange.trading_end_hour_utc,
        listing=ListingRules(
            monthly=exchange.listing.monthly,
            weekly=exchange.listing.weekly,
            daily=exchange.listing.daily,
        ),
        settlement=SettlementRules(
            daily_settlement_hour_utc=settlement.daily_settlement_hour_utc,
            vwap_window_seconds=settlement.vwap_window_seconds,
            margin_call_ratio=settlement.margin_call_ratio,
            mfu_deadband=settlement.mfu_deadband,
            mfu_floor_offset=settlement.mfu_floor_offset,
            shortfall_tolerance=settlement.shortfall_tolerance,
            damages_premium=settlement.damages_premium,
            default_threshold=settlement.default_threshold,
            telemetry_deadline_hours=settlement.telemetry_deadline_hours,
        ),
    )
