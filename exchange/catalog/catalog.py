"""The immutable product catalog: generations, products and exchange rules, and the series they list.

Built (and validated) by `load_catalog`; after that nothing here can fail on bad data, and nothing
reads a clock: the listing calendar takes the instant as an argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from exchange.catalog.errors import SymbolError
from exchange.catalog.period import NS_PER_DAY, DeliveryPeriod, ns_to_date
from exchange.catalog.symbol import SeriesSymbol, grade_code, grade_to_mfu, parse_symbol, product_code
from exchange.domain.engine import EngineLimits
from exchange.domain.spec import PeriodKind, SeriesSpec
from exchange.domain.units import NS_PER_HOUR, price_to_ticks

# The order of series of one product in the listing calendar.
LISTING_ORDER = (PeriodKind.MONTHLY, PeriodKind.WEEKLY, PeriodKind.DAILY)


@dataclass(frozen=True, slots=True)
class Generation:
    name: str                         # "H100"
    description: str
    peak_tflops: Decimal | None       # dense BF16 peak per GPU; None until published (then not listable)
    gpus_per_lot: int
    listed: bool
    reference_price: Decimal | None   # default for its products, USD per GPU-hour


@dataclass(frozen=True, slots=True)
class Product:
    generation: Generation
    grade_percent: int                # 40 for M40
    listed: bool                      # the product's own flag and its generation's, both
    reference_price: Decimal | None   # the product's override, else its generation's; set when listed

    @property
    def code(self) -> str:
        """"H100-M40"."""
        return product_code(self.generation.name, self.grade_percent)

    @property
    def grade_code(self) -> str:
        """"M40"."""
        return grade_code(self.grade_percent)

    @property
    def mfu_grade(self) -> Decimal:
        """Decimal("0.40") for M40."""
        return grade_to_mfu(self.grade_percent)


@dataclass(frozen=True, slots=True)
class ListingRules:
    """How many series of each period kind a listed product has open at any moment."""

    monthly: int
    weekly: int
    daily: int

    def count(self, kind: PeriodKind) -> int:
        if kind is PeriodKind.MONTHLY:
            return self.monthly
        if kind is PeriodKind.WEEKLY:
            return self.weekly
        return self.daily


@dataclass(frozen=True, slots=True)
class SettlementRules:
    """Parameters of the settlement jobs (rulebook §6-§8), as exact decimals."""

    daily_settlement_hour_utc: int
    vwap_window_seconds: int
    margin_call_ratio: Decimal
    mfu_deadband: Decimal
    mfu_floor_offset: Decimal
    shortfall_tolerance: Decimal
    damages_premium: Decimal
    default_threshold: Decimal
    telemetry_deadline_hours: int


@dataclass(frozen=True, slots=True)
class ExchangeRules:
    """Exchange-wide rules, in the core's integer units."""

    tick: Decimal                     # USD per GPU-hour, as written (0.005)
    tick_micros: int                  # the same in micro-dollars (5_000)
    price_band_ppm: int
    max_order_lots: int
    max_position_lots: int
    max_open_orders_per_account: int
    initial_margin_ppm: int
    taker_fee_ppm: int
    maker_fee_ppm: int
    trading_end_hour_utc: int         # trading ends at this hour on the day before delivery starts
    listing: ListingRules
    settlement: SettlementRules

    def engine_limits(self) -> EngineLimits:
        """The exchange-wide limits the core enforces (per-series ones travel in each SeriesSpec)."""
        return EngineLimits(max_open_orders_per_account=self.max_open_orders_per_account)


@dataclass(frozen=True, slots=True)
class Catalog:
    generations: Mapping[str, Generation]  # by name, in file order
    products: Mapping[str, Product]        # by product code ("H100-M40"), in file order
    rules: ExchangeRules

    def __post_init__(self) -> None:
        # Read-only views of private copies, so neither the caller nor a user of the catalog can
        # change it afterwards.
        object.__setattr__(self, "generations", MappingProxyType(dict(self.generations)))
        object.__setattr__(self, "products", MappingProxyType(dict(self.products)))

    def series_spec(self, symbol: str | SeriesSymbol) -> SeriesSpec:
        """The spec of one series; SymbolError if the symbol is malformed or its product not listed.

        Any well-formed period is accepted; whether the series is in the listing calendar at some
        instant is `listed_series`'s question.
        """
        parsed = parse_symbol(symbol) if isinstance(symbol, str) else symbol
        return self._spec(self._listed_product(parsed), parsed.delivery)

    def listed_series(self, at_ns: int) -> list[SeriesSpec]:
        """The listing calendar at the UTC instant `at_ns` (nanoseconds since the Unix epoch).

        For every listed product, the next `rules.listing` monthly, weekly and daily series whose
        trading has not terminated (trading_end_ns > at_ns); ordered by product code, then period
        kind (monthly, weekly, daily), then delivery start.
        """
        at_day = ns_to_date(at_ns)
        specs: list[SeriesSpec] = []
        for product in sorted(self.listed_products(), key=lambda p: p.code):
            for kind in LISTING_ORDER:
                # The period delivering today has terminated already (its trading ended no later
                # than yesterday); step forward to the first one still trading.
                period = DeliveryPeriod.containing(kind, at_day)
                while self.trading_end_ns(period) <= at_ns:
                    period = period.next()
                for _ in range(self.rules.listing.count(kind)):
                    specs.append(self._spec(product, period))
                    period = period.next()
        return specs

    def listed_products(self) -> list[Product]:
        """Listed products, in file order."""
        return [product for product in self.products.values() if product.listed]

    def trading_end_ns(self, period: DeliveryPeriod) -> int:
        """Trading terminates at `trading_end_hour_utc` on the day before the delivery period starts."""
        return period.start_ns - NS_PER_DAY + self.rules.trading_end_hour_utc * NS_PER_HOUR

    def _listed_product(self, symbol: SeriesSymbol) -> Product:
        generation = self.generations.get(symbol.generation)
        if generation is None:
            known = ", ".join(self.generations)
            raise SymbolError(f"unknown generation {symbol.generation!r} in {str(symbol)!r}; known: {known}")
        product = self.products.get(symbol.product_code)
        if product is None:
            siblings = ", ".join(p.code for p in self.products.values() if p.generation == generation)
            raise SymbolError(
                f"unknown product {symbol.product_code} in {str(symbol)!r}; {generation.name} products: "
                f"{siblings or 'none'}"
            )
        if not product.listed:
            why = "its generation is not listed" if not generation.listed else "it is marked listed = false"
            raise SymbolError(f"product {product.code} in {str(symbol)!r} is not listed: {why}")
        return product

    def _spec(self, product: Product, period: DeliveryPeriod) -> SeriesSpec:
        rules = self.rules
        # The loader guarantees a listed product has a reference price on the tick.
        assert product.reference_price is not None, product.code
        symbol = SeriesSymbol(product.generation.name, product.grade_percent, period)
        return SeriesSpec(
            symbol=str(symbol),
            product=product.code,
            generation=product.generation.name,
            mfu_grade=product.mfu_grade,
            period=period.kind,
            gpus_per_lot=product.generation.gpus_per_lot,
            delivery_start_ns=period.start_ns,
            delivery_end_ns=period.end_ns,
            trading_end_ns=self.trading_end_ns(period),
            tick_micros=rules.tick_micros,
            reference_price_ticks=price_to_ticks(product.reference_price, rules.tick_micros),
            price_band_ppm=rules.price_band_ppm,
            max_order_lots=rules.max_order_lots,
            max_position_lots=rules.max_position_lots,
            initial_margin_ppm=rules.initial_margin_ppm,
            taker_fee_ppm=rules.taker_fee_ppm,
            maker_fee_ppm=rules.maker_fee_ppm,
        )
