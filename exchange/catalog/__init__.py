"""The product catalog: loads and validates `contracts/*.toml` into immutable specs, lists series.

    catalog = load_catalog()                       # or load_catalog(Path("contracts"))
    spec = catalog.series_spec("H100-M40-Z26")     # a domain SeriesSpec, in exact integer units
    specs = catalog.listed_series(at_ns)           # the listing calendar at a UTC instant
"""

from exchange.catalog.catalog import (
    LISTING_ORDER,
    Catalog,
    ExchangeRules,
    Generation,
    ListingRules,
    Product,
    SettlementRules,
)
from exchange.catalog.errors import CatalogError, Problem, SymbolError
from exchange.catalog.loader import CONTRACTS_DIR_ENV, DEFAULT_CONTRACTS_DIR, contracts_dir, load_catalog
from exchange.catalog.period import DeliveryPeriod, date_to_ns, ns_to_date, parse_period
from exchange.catalog.symbol import SeriesSymbol, format_symbol, parse_symbol

__all__ = [
    "CONTRACTS_DIR_ENV",
    "DEFAULT_CONTRACTS_DIR",
    "LISTING_ORDER",
    "Catalog",
    "CatalogError",
    "DeliveryPeriod",
    "ExchangeRules",
    "Generation",
    "ListingRules",
    "Problem",
    "Product",
    "SeriesSymbol",
    "SettlementRules",
    "SymbolError",
    "contracts_dir",
    "date_to_ns",
    "format_symbol",
    "load_catalog",
    "ns_to_date",
    "parse_period",
    "parse_symbol",
]
