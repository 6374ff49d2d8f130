"""The live demo market of `exchange serve --demo`: seeded simulated participants trading the listed
series through the same command path as real clients (`Runtime.submit`), so that a newcomer sees
books, trades, candles and the index move within seconds.

- Market makers quote three levels a side of post-only GTC orders around a fair value per GPU
  generation (a mean-reverting random walk in ticks, kept well inside the price band), skewed
  against their inventory, and requote (amend, place, cancel) as it drifts.
- Takers cross the spread now and then with IOC limits and market orders (a mild buy bias: they want
  compute), leaning against their own position.
- Providers own GPUs and mostly sell: post-only offers a few ticks above fair, IOC sells into the
  bids, and they cancel old offers.

The participants' accounts are opened and funded on first start (ids after the highest existing
account; remembered in <data>/demo-market.json, so restarts reuse them). Every decision reads the
engine's live state (books, the accounts' own orders and positions), so the driver needs no memory of
its own and tolerates restarts and real traders alike. It trades the nearest daily series of a few
products, at `rate_per_s` commands per second; errors are logged and never stop the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from exchange.api.runtime import Runtime
from exchange.catalog.nearest import nearest_series
from exchange.domain.commands import AmendOrder, CancelOrder, Command, CreateAccount, Deposit, PlaceOrder
from exchange.domain.engine import Engine
from exchange.domain.events import Rejected, Trade
from exchange.domain.order import OrderType, Side, TimeInForce
from exchange.domain.units import MICROS_PER_USD

log = logging.getLogger(__name__)

DEMO_PRODUCTS = ("H100-M40", "B200-M35", "A100-M40")
STATE_FILE = "demo-market.json"
_LEVELS = 3
_PROVIDER_OPEN_MAX = 8
_RESELECT_EVERY = 1_000                          # commands between re-picking the series


@dataclass(frozen=True)
class DemoConfig:
    seed: int = 7
    rate_per_s: float = 20.0
    products: tuple[str, ...] = DEMO_PRODUCTS
    market_makers: int = 3
    takers: int = 2
    providers: int = 2
    deposit_micros: int = 100_000_000 * MICROS_PER_USD  # margin never binds


@dataclass
class DemoStats:
    commands: int = 0
    trades: int = 0
    errors: int = 0
    rejects: Counter[str] = field(default_factory=Counter)


class DemoMarket:
    def __init__(self, runtime: Runtime, config: DemoConfig | None = None) -> None:
        self.runtime = runtime
        self.config = config or DemoConfig()
        self.rng = random.Random(self.config.seed)
        self.stats = DemoStats()
        self.market_makers: list[int] = []
        self.takers: list[int] = []
        self.providers: list[int] = []
        self.symbols: list[str] = []
        self.offsets: dict[str, int] = {}   # generation -> fair value offset from the reference, ticks
        self._steps = 0

    @property
    def engine(self) -> Engine:
        return self.runtime.engine

    # -- set-up -----------------------------------------------------------------------------
    async def setup(self) -> None:
        """Open and fund the participants' accounts (once) and pick the series."""
        config = self.config
        wanted = config.market_makers + config.takers + config.providers
        ids = self._remembered_accounts(wanted)
        if ids is None:
            first = max(self.engine.accounts, default=0) + 1
            ids = list(range(first, first + wanted))
            self._state_path().write_text(json.dumps({"accounts": ids}) + "\n")
        for account_id in ids:
            if account_id not in self.engine.accounts:
                await self._checked(CreateAccount(account_id))
            cash = self.engine.cash_micros(account_id)
            if cash < config.deposit_micros // 2:
                await self._checked(Deposit(account_id, config.deposit_micros - cash))
        self.market_makers = ids[:config.market_makers]
        self.takers = ids[config.market_makers:config.market_makers + config.takers]
        self.providers = ids[config.market_makers + config.takers:]
        self.select_symbols()
        log.info("demo market: accounts %s, series %s", ids, self.symbols)

    def _state_path(self) -> Path:
        return self.runtime.settings.data_dir / STATE_FILE

    def _remembered_accounts(self, wanted: int) -> list[int] | None:
        path = self._state_path()
        try:
            ids = json.loads(path.read_text())["accounts"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(ids, list) or len(ids) != wanted or not all(isinstance(i, int) for i in ids):
            return None
        return ids

    async def _checked(self, command: Command) -> None:
        for event in await self.runtime.submit(command):
            if isinstance(event, Rejected):
                raise RuntimeError(f"demo market set-up: {type(command).__name__} refused: {event.message}")

    def select_symbols(self) -> None:
        """The nearest daily series of each product that still trades for a while."""
        now = self.runtime.exchange_clock_ns()
        chosen: list[str] = []
        open_specs = [s.spec for s in self.engine.series.values() if not s.halted and not s.terminated]
        for product in self.config.products:
            # The same rule as `exchange series --product P --nearest`, so a newcomer's order meets the demo.
            nearest = nearest_series(open_specs, product, now, daily_only=True)
            if nearest is not None:
                chosen.append(nearest.symbol)
        self.symbols = chosen
        for symbol in chosen:
            self.offsets.setdefault(self.engine.series[symbol].spec.generation, 0)

    # -- the market -------------------------------------------------------------------------
    def _bound(self, symbol: str) -> int:
        series = self.engine.series[symbol]
        return max(0, min(series.band_high_ticks - series.reference_price_ticks,
                          series.reference_price_ticks - series.band_low_ticks) // 2)

    def drift(self) -> None:
        """Each generation's fair value: a mean-reverting random walk in whole ticks."""
        bounds: dict[str, int] = {}
        for symbol in self.symbols:
            generation = self.engine.series[symbol].spec.generation
            bounds[generation] = min(bounds.get(generation, 1 << 62), self._bound(symbol))
        for generation, bound in bounds.items():
            if bound and self.rng.random() < 0.15:
                offset = self.offsets[generation]
                up = self.rng.randrange(2 * bound) >= bound + offset  # pulled back towards zero
                self.offsets[generation] = max(-bound, min(bound, offset + (1 if up else -1)))

    def fair_ticks(self, symbol: str) -> int:
        series = self.engine.series[symbol]
        return series.reference_price_ticks + self.offsets.get(series.spec.generation, 0)

    def _clamp(self, symbol: str, price: int) -> int:
        series = self.engine.series[symbol]
        return max(series.band_low_ticks, min(series.band_high_ticks, price))

    def _best(self, symbol: str) -> tuple[int | None, int | None]:
        bids, asks = self.engine.book_levels(symbol)
        return (bids[0][0] if bids else None), (asks[0][0] if asks else None)

    def _position(self, account_id: int, symbol: str) -> int:
        exposure = self.engine.accounts[account_id].exposures.get(symbol)
        return exposure.position_lots if exposure is not None else 0

    def next_command(self) -> Command | None:
        self._steps += 1
        if self._steps % _RESELECT_EVERY == 0:
            self.select_symbols()
        live = [s for s in self.symbols if s in self.engine.series and not self.engine.series[s].terminated
                and not self.engine.series[s].halted]
        if not live:
            return None
        self.drift()
        rng = self.rng
        symbol = rng.choice(live)
        r = rng.random()
        if r < 0.6:
            return self._market_maker(rng.choice(self.market_makers), symbol)
        if r < 0.85:
            return self._taker(rng.choice(self.takers), symbol)
        return self._provider(rng.choice(self.providers), symbol)

    def _market_maker(self, mm: int, symbol: str) -> Command | None:
        rng = self.rng
        skew = max(-5, min(5, self._position(mm, symbol) // 20))  # long: quote lower, to sell
        centre = self.fair_ticks(symbol) - skew
        half, gap = 1 + mm % 3, 1 + mm % 2
        best_bid, best_ask = self._best(symbol)
        orders = [o for o in self.engine.accounts[mm].orders.values() if o.symbol == symbol]
        work: list[Command] = []
        for side in (Side.BUY, Side.SELL):
            sign = -1 if side == Side.BUY else 1
            wanted: list[int] = []
            for level in range(_LEVELS):
                price = self._clamp(symbol, centre + sign * (half + level * gap))
                if side == Side.BUY and best_ask is not None and price >= best_ask:
                    price = best_ask - 1  # post-only: stay behind the other side
                if side == Side.SELL and best_bid is not None and price <= best_bid:
                    price = best_bid + 1
                if price not in wanted:
                    wanted.append(price)
            mine = [o for o in orders if o.side == side]
            have: set[int] = set()
            stale = []
            for order in mine:
                if order.price_ticks in wanted and order.price_ticks not in have:
                    have.add(order.price_ticks)
                else:
                    stale.append(order)
            missing = [p for p in wanted if p not in have]
            if stale and missing:
                work.append(AmendOrder(mm, stale[0].order_id, price_ticks=missing[0]))
            elif missing:
                level = wanted.index(missing[0])
                work.append(PlaceOrder(mm, symbol, side, rng.randint(2, 10) * (level + 1), missing[0],
                                       OrderType.LIMIT, TimeInForce.GTC, post_only=True))
            elif stale:
                work.append(CancelOrder(mm, order_id=stale[0].order_id))
        if work:
            return rng.choice(work)
        if orders and rng.random() < 0.3:
            order = rng.choice(orders)
            qty = rng.randint(1, 20)
            if qty != order.remaining_lots:
                return AmendOrder(mm, order.order_id, qty_lots=qty)  # size refresh
        return None

    def _taker(self, taker: int, symbol: str) -> Command | None:
        rng = self.rng
        position = self._position(taker, symbol)
        buy_probability = max(0.1, min(0.9, 0.55 - position / 400))
        side = Side.BUY if rng.random() < buy_probability else Side.SELL
        qty = rng.choice((1, 1, 2, 2, 3, 5, 8))
        if rng.random() < 0.25:
            return PlaceOrder(taker, symbol, side, qty, None, OrderType.MARKET, TimeInForce.IOC)
        best_bid, best_ask = self._best(symbol)
        touch = best_ask if side == Side.BUY else best_bid
        if touch is None:
            return None
        sign = 1 if side == Side.BUY else -1
        return PlaceOrder(taker, symbol, side, qty, self._clamp(symbol, touch + sign * rng.randint(0, 2)),
                          OrderType.LIMIT, TimeInForce.IOC)

    def _provider(self, provider: int, symbol: str) -> Command | None:
        rng = self.rng
        open_orders = list(self.engine.accounts[provider].orders.values())
        if len(open_orders) >= _PROVIDER_OPEN_MAX:
            return CancelOrder(provider, order_id=open_orders[0].order_id)
        best_bid, best_ask = self._best(symbol)
        position = self._position(provider, symbol)
        if position < -300 and best_ask is not None:  # too short: buy some back
            return PlaceOrder(provider, symbol, Side.BUY, rng.choice((5, 10)), best_ask, OrderType.LIMIT,
                              TimeInForce.IOC)
        k = rng.random()
        if k < 0.7:
            price = self._clamp(symbol, self.fair_ticks(symbol) + rng.randint(2, 7))
            if best_bid is not None and price <= best_bid:
                price = best_bid + 1
            return PlaceOrder(provider, symbol, Side.SELL, rng.choice((5, 10, 20)), price, OrderType.LIMIT,
                              TimeInForce.GTC, post_only=True)
        if best_bid is None:
            return None
        return PlaceOrder(provider, symbol, Side.SELL, rng.choice((1, 2, 5)), best_bid, OrderType.LIMIT,
                          TimeInForce.IOC)

    # -- running ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Set up, then submit commands at the configured rate until cancelled; never raises."""
        while True:
            try:
                await self.setup()
                break
            except Exception:
                log.exception("demo market: set-up failed; retrying in 5 s")
                await asyncio.sleep(5)
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.config.rate_per_s
        due = loop.time()
        while True:
            try:
                command = self.next_command()
                if command is not None:
                    events = await self.runtime.submit(command)
                    self.stats.commands += 1
                    for event in events:
                        if isinstance(event, Trade):
                            self.stats.trades += 1
                        elif isinstance(event, Rejected):
                            self.stats.rejects[str(event.code)] += 1
                            log.debug("demo market: %s refused: %s", type(command).__name__, event.message)
            except Exception as error:  # e.g. 503 while the sequencer is busy: pause, then go on
                self.stats.errors += 1
                log.warning("demo market: %s: %s", type(error).__name__, error)
                await asyncio.sleep(1.0)
                due = loop.time()
            due += interval
            now = loop.time()
            if due < now - 1.0:  # fell behind (a slow sequencer): do not burst to catch up
                due = now
            await asyncio.sleep(max(0.0, due - now))


def start_demo(runtime: Runtime, config: DemoConfig | None = None) -> tuple[DemoMarket, asyncio.Task[None]]:
    market = DemoMarket(runtime, config)
    return market, asyncio.create_task(market.run(), name="demo-market")


async def stop_demo(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
