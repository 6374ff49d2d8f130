"""A seeded simulated market that drives a real `Engine` through commands only.

    engine = Engine(catalog.rules.engine_limits())
    sim = MarketSimulator(engine, catalog, seed=7, start_ns=start_ns, symbols=["H100-M40-261128"])
    sim.setup()            # lists the series, creates and funds the accounts
    events = sim.run(500)  # 500 commands, one every `step_ns`

The participants see only what a real client sees: the events their commands return and the public
book (`Engine.book_levels`). Everything they send goes through `Engine.apply`, the path real clients
will use.

- Market makers (accounts 1-4) quote two-sided ladders of GTC post-only limit orders with client
  order ids around a fair value, skewed against their inventory, and requote (amend, or cancel and
  place again) when the fair value moves; now and then one pulls a whole series (mass cancel).
- Takers (11-13) lean towards buying compute: IOC and market orders, FOK, aggressive limits whose
  remainder rests, and passive GTD bids; every self-trade prevention mode.
- Providers (14-16) own GPUs and mostly sell: post-only and GTD asks, IOC sells into the bids,
  amends and cancels (by exchange or client order id), and retries that the engine answers with
  `DuplicateOrder`.

The fair value of each generation is a mean-reverting random walk in whole ticks, kept well inside
every series' price band. No clock and no global random: the simulator owns a `random.Random(seed)`
(fine here: this drives tests and demos, it is not the core), and the n-th command is applied at
`start_ns + n × step_ns`. Same seed and start: the same commands, hence the same events.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from exchange.catalog import Catalog
from exchange.domain.book import BUY, SELL
from exchange.domain.commands import (
    AdvanceTime,
    AmendOrder,
    CancelOrder,
    Command,
    CreateAccount,
    Deposit,
    ListSeries,
    MassCancel,
    PlaceOrder,
)
from exchange.domain.engine import Engine
from exchange.domain.events import (
    DuplicateOrder,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    Rejected,
    Trade,
    TradingTerminated,
)
from exchange.domain.order import OrderType, Side, StpMode, TimeInForce
from exchange.domain.spec import SeriesSpec
from exchange.domain.units import MICROS_PER_USD, NS_PER_SECOND

MARKET_MAKERS: tuple[int, ...] = (1, 2, 3, 4)
TAKERS: tuple[int, ...] = (11, 12, 13)
PROVIDERS: tuple[int, ...] = (14, 15, 16)
ACCOUNTS: tuple[int, ...] = MARKET_MAKERS + TAKERS + PROVIDERS
ROLES: dict[int, str] = {
    **{a: "market maker" for a in MARKET_MAKERS},
    **{a: "taker" for a in TAKERS},
    **{a: "provider" for a in PROVIDERS},
}

DEPOSIT_MICROS = 500_000_000 * MICROS_PER_USD  # $500M each: margin never binds in the demo
DEFAULT_STEP_NS = 50_000_000                    # 50 ms of market time per command

_LADDER_ORDERS_PER_ACCOUNT = 300  # a market maker's ladders stay far below the open-order limit
_MAX_LEVELS = 3
_TAKER_OPEN_MAX = 6
_PROVIDER_OPEN_MAX = 12
_PROVIDER_SOFT_SHORT = 300  # lots: a provider this short buys some back
_RECENT_MAX = 32
_STP_MODES = tuple(StpMode)
_CID_PREFIX = {"market maker": "mm", "taker": "tk", "provider": "pv"}


@dataclass
class SimStats:
    """Counters over everything the simulator applied (setup included)."""

    commands: int = 0
    events: int = 0
    trades: int = 0
    volume_lots: int = 0
    volume_gpu_hours: int = 0
    notional_micros: int = 0
    fees_micros: int = 0
    duplicates: int = 0
    expired: int = 0
    commands_by_type: Counter[str] = field(default_factory=Counter)
    rejects: Counter[str] = field(default_factory=Counter)  # by reject code value

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())


@dataclass(slots=True)
class SimOrder:
    """The simulator's view of one of its live orders, kept from events only."""

    order_id: int
    account_id: int
    symbol: str
    side: int
    price_ticks: int | None
    remaining_lots: int
    client_order_id: str | None


_Slot = tuple[int, str, int, int]  # (market maker, symbol, side, level)


class MarketSimulator:
    def __init__(self, engine: Engine, catalog: Catalog, seed: int, start_ns: int,
                 symbols: Sequence[str] | None = None, step_ns: int = DEFAULT_STEP_NS) -> None:
        if step_ns <= 0:
            raise ValueError(f"step_ns must be positive, not {step_ns}")
        self.engine = engine
        self.catalog = catalog
        self.seed = seed
        self.start_ns = start_ns
        self.step_ns = step_ns
        self.now_ns = start_ns
        self.rng = random.Random(seed)
        self.stats = SimStats()
        self._requested = list(dict.fromkeys(symbols)) if symbols is not None else None
        self.specs: dict[str, SeriesSpec] = {}
        self.symbols: list[str] = []
        self.terminated: set[str] = set()
        self.offsets: dict[str, int] = {}       # generation -> fair value offset from reference, ticks
        self._offset_bound: dict[str, int] = {}
        self.levels_per_side = _MAX_LEVELS
        self.orders: dict[int, SimOrder] = {}
        self.by_account: dict[int, dict[int, SimOrder]] = {a: {} for a in ACCOUNTS}  # oldest first
        self.positions: dict[tuple[int, str], int] = {}
        self._quotes: dict[_Slot, int] = {}     # market maker ladder slot -> order id
        self._slot_of: dict[int, _Slot] = {}
        self._pending_slots: dict[str, _Slot] = {}  # client order id -> slot, until accepted
        self._recent: deque[PlaceOrder] = deque(maxlen=_RECENT_MAX)
        self._cid_seq = 0
        # Per market maker: half spread and gap between levels, in ticks.
        self._half_spread = {mm: 1 + i % 3 for i, mm in enumerate(MARKET_MAKERS)}
        self._gap = {mm: 1 + i % 2 for i, mm in enumerate(MARKET_MAKERS)}
        self._set_up = False

    # -- public API --------------------------------------------------------------------------
    def setup(self) -> list[Event]:
        """List the series and create and fund the accounts, all at `start_ns`."""
        if self._set_up:
            raise RuntimeError("setup() already ran")
        if self._requested is None:
            specs = self.catalog.listed_series(self.start_ns)
        else:
            specs = [self.catalog.series_spec(symbol) for symbol in self._requested]
        if not specs:
            raise ValueError("no series to simulate")
        events: list[Event] = []
        for spec in specs:
            listed = self._apply(ListSeries(spec), self.start_ns)
            for event in listed:
                if isinstance(event, Rejected):
                    raise ValueError(f"cannot list {spec.symbol}: {event.message}")
            events += listed
            self.specs[spec.symbol] = spec
            self.symbols.append(spec.symbol)
        for account_id in ACCOUNTS:
            for command in (CreateAccount(account_id), Deposit(account_id, DEPOSIT_MICROS)):
                result = self._apply(command, self.start_ns)
                for event in result:
                    if isinstance(event, Rejected):
                        raise ValueError(f"cannot set up account {account_id}: {event.message}")
                events += result
        for spec in specs:
            series = self.engine.series[spec.symbol]
            half_band = min(series.band_high_ticks - series.reference_price_ticks,
                            series.reference_price_ticks - series.band_low_ticks)
            bound = max(0, half_band // 2)
            previous = self._offset_bound.get(spec.generation)
            self._offset_bound[spec.generation] = bound if previous is None else min(previous, bound)
            self.offsets.setdefault(spec.generation, 0)
        self.levels_per_side = max(1, min(_MAX_LEVELS, _LADDER_ORDERS_PER_ACCOUNT // (2 * len(specs))))
        self._set_up = True
        return events

    def step(self) -> list[Event]:
        """Produce one command and apply it `step_ns` after the previous one."""
        if not self._set_up:
            raise RuntimeError("call setup() before step()")
        self.now_ns += self.step_ns
        self._drift()
        return self._apply(self._next_command(), self.now_ns)

    def run(self, n: int) -> list[Event]:
        events: list[Event] = []
        for _ in range(n):
            events += self.step()
        return events

    def active_symbols(self) -> list[str]:
        return [s for s in self.symbols if s not in self.terminated]

    def fair_ticks(self, symbol: str) -> int:
        """The current fair value of a series in ticks (reference price plus its generation's walk)."""
        spec = self.specs[symbol]
        return self.engine.series[symbol].reference_price_ticks + self.offsets[spec.generation]

    # -- applying and observing --------------------------------------------------------------
    def _apply(self, command: Command, ts_ns: int) -> list[Event]:
        events = self.engine.apply(command, ts_ns)
        stats = self.stats
        stats.commands += 1
        stats.commands_by_type[type(command).__name__] += 1
        stats.events += len(events)
        for event in events:
            self._observe(event)
        return events

    def _observe(self, event: Event) -> None:
        stats = self.stats
        if isinstance(event, Trade):
            spec = self.specs[event.symbol]
            stats.trades += 1
            stats.volume_lots += event.qty_lots
            stats.volume_gpu_hours += event.qty_lots * spec.lot_gpu_hours
            stats.notional_micros += event.price_ticks * event.qty_lots * spec.lot_tick_value_micros
            stats.fees_micros += event.maker_fee_micros + event.taker_fee_micros
            signed = event.qty_lots if event.aggressor_side == BUY else -event.qty_lots
            for account_id, delta in ((event.taker_account_id, signed), (event.maker_account_id, -signed)):
                key = (account_id, event.symbol)
                self.positions[key] = self.positions.get(key, 0) + delta
            self._set_remaining(event.maker_order_id, event.maker_remaining_lots)
            self._set_remaining(event.taker_order_id, event.taker_remaining_lots)
        elif isinstance(event, OrderAccepted):
            order = SimOrder(event.order_id, event.account_id, event.symbol, event.side, event.price_ticks,
                             event.qty_lots, event.client_order_id)
            self.orders[order.order_id] = order
            self.by_account.setdefault(order.account_id, {})[order.order_id] = order
            if event.client_order_id is not None:
                slot = self._pending_slots.pop(event.client_order_id, None)
                if slot is not None:
                    self._quotes[slot] = order.order_id
                    self._slot_of[order.order_id] = slot
        elif isinstance(event, OrderCancelled):
            self._set_remaining(event.order_id, event.remaining_lots)
        elif isinstance(event, OrderAmended):
            known = self.orders.get(event.order_id)
            if known is not None:
                known.price_ticks = event.price_ticks
                known.remaining_lots = event.remaining_lots
        elif isinstance(event, OrderExpired):
            stats.expired += 1
            self._set_remaining(event.order_id, 0)
        elif isinstance(event, Rejected):
            stats.rejects[str(event.code)] += 1
            if event.client_order_id is not None:
                self._pending_slots.pop(event.client_order_id, None)
        elif isinstance(event, DuplicateOrder):
            stats.duplicates += 1
        elif isinstance(event, TradingTerminated):
            self.terminated.add(event.symbol)

    def _set_remaining(self, order_id: int, remaining_lots: int) -> None:
        order = self.orders.get(order_id)
        if order is None:
            return
        order.remaining_lots = remaining_lots
        if remaining_lots == 0:
            del self.orders[order_id]
            del self.by_account[order.account_id][order_id]
            slot = self._slot_of.pop(order_id, None)
            if slot is not None:
                del self._quotes[slot]

    # -- the market --------------------------------------------------------------------------
    def _drift(self) -> None:
        """Each generation's fair value: a mean-reverting random walk in whole ticks."""
        rng = self.rng
        for generation, offset in self.offsets.items():
            if rng.random() < 0.04:
                bound = self._offset_bound[generation]
                if bound == 0:
                    continue
                # Up with probability (bound - offset) / (2 × bound): pulled back towards zero.
                up = rng.randrange(2 * bound) >= bound + offset
                self.offsets[generation] = max(-bound, min(bound, offset + (1 if up else -1)))

    def _next_command(self) -> Command:
        active = self.active_symbols()
        if not active:
            return AdvanceTime()
        rng = self.rng
        r = rng.random()
        command: Command | None = None
        if r < 0.45:
            command = self._market_maker(rng.choice(MARKET_MAKERS), rng.choice(active))
        elif r < 0.70:
            command = self._taker(rng.choice(TAKERS), rng.choice(active))
        elif r < 0.92:
            command = self._provider(rng.choice(PROVIDERS), rng.choice(active))
        elif r < 0.95:
            command = self._retry()
        elif r < 0.97:
            command = self._cancel_by_client_id(rng.choice(TAKERS + PROVIDERS))
        elif r < 0.98:
            mm = rng.choice(MARKET_MAKERS)
            command = MassCancel(mm, rng.choice(active), rng.choice((None, Side.BUY, Side.SELL)))
        elif r < 0.99:
            command = AdvanceTime()
        else:
            command = MassCancel(rng.choice(PROVIDERS))
        if command is None:
            command = self._taker(rng.choice(TAKERS), rng.choice(active))
        return command

    def _next_cid(self, account_id: int) -> str:
        self._cid_seq += 1
        return f"{_CID_PREFIX[ROLES[account_id]]}{account_id}-{self._cid_seq}"

    def _best(self, symbol: str) -> tuple[int | None, int | None]:
        """Best bid and ask in ticks (None for an empty side), from the public book."""
        bids, asks = self.engine.book_levels(symbol)
        return (bids[0][0] if bids else None), (asks[0][0] if asks else None)

    def _clamp(self, symbol: str, price_ticks: int) -> int:
        series = self.engine.series[symbol]
        return max(series.band_low_ticks, min(series.band_high_ticks, price_ticks))

    def _ladder(self, mm: int, symbol: str) -> dict[tuple[int, int], int]:
        """The price this market maker wants on each (side, level), away from the other side."""
        position = self.positions.get((mm, symbol), 0)
        skew = max(-5, min(5, position // 20))  # long: quote lower, to sell
        centre = self.fair_ticks(symbol) - skew
        half, gap = self._half_spread[mm], self._gap[mm]
        best_bid, best_ask = self._best(symbol)
        wanted: dict[tuple[int, int], int] = {}
        for level in range(self.levels_per_side):
            bid = self._clamp(symbol, centre - half - level * gap)
            ask = self._clamp(symbol, centre + half + level * gap)
            # Post-only: stay strictly behind the other side's best, even our own stale quote.
            if best_ask is not None and bid >= best_ask:
                bid = best_ask - 1
            if best_bid is not None and ask <= best_bid:
                ask = best_bid + 1
            wanted[(BUY, level)] = bid
            wanted[(SELL, level)] = ask
        return wanted

    def _market_maker(self, mm: int, symbol: str) -> Command | None:
        rng = self.rng
        wanted = self._ladder(mm, symbol)
        missing: list[tuple[int, int]] = []
        stale: list[tuple[tuple[int, int], int]] = []
        for (side, level), price in wanted.items():
            order_id = self._quotes.get((mm, symbol, side, level))
            if order_id is None:
                missing.append((side, level))
            elif self.orders[order_id].price_ticks != price:
                stale.append(((side, level), order_id))
        if missing and (not stale or rng.random() < 0.5):
            side, level = rng.choice(missing)
            price = wanted[(side, level)]
            if rng.random() < 0.05:  # acting on a stale view of the book: may be refused
                price += 2 if side == BUY else -2
                price = self._clamp(symbol, price)
            cid = self._next_cid(mm)
            self._pending_slots[cid] = (mm, symbol, side, level)
            gtd = rng.random() < 0.15
            return PlaceOrder(
                mm, symbol, Side(side), rng.randint(2, 10) * (level + 1), price, OrderType.LIMIT,
                TimeInForce.GTD if gtd else TimeInForce.GTC, post_only=True,
                stp=StpMode.CANCEL_OLDEST if rng.random() < 0.5 else StpMode.CANCEL_NEWEST,
                client_order_id=cid,
                expire_ts_ns=self.now_ns + rng.randint(5, 120) * NS_PER_SECOND if gtd else None,
            )
        if stale:
            (side, _level), order_id = rng.choice(stale)
            price = wanted[(side, _level)]
            if rng.random() < 0.75:
                qty = None if rng.random() < 0.7 else rng.randint(2, 12)
                return AmendOrder(mm, order_id, price, qty)
            if rng.random() < 0.5:
                return CancelOrder(mm, order_id=order_id)
            quote_cid = self.orders[order_id].client_order_id
            if quote_cid is not None:
                return CancelOrder(mm, client_order_id=quote_cid)
            return CancelOrder(mm, order_id=order_id)
        if rng.random() < 0.3:
            quotes = [oid for (m, s, _, _), oid in self._quotes.items() if m == mm and s == symbol]
            if quotes:
                order = self.orders[rng.choice(quotes)]
                new_qty = rng.randint(1, 20)
                if new_qty != order.remaining_lots:
                    return AmendOrder(mm, order.order_id, qty_lots=new_qty)  # size refresh
        return None

    def _lean_buy(self, account_id: int, symbol: str, base: int) -> bool:
        """Buy with probability (400 - base - position) / 400, clamped to 10%..90%: the longer the
        account already is, the less it buys."""
        position = self.positions.get((account_id, symbol), 0)
        threshold = max(40, min(360, base + position))
        return self.rng.randrange(400) >= threshold

    def _taker(self, taker: int, symbol: str) -> Command:
        rng = self.rng
        open_orders = self.by_account[taker]
        if len(open_orders) >= _TAKER_OPEN_MAX:
            oldest = next(iter(open_orders.values()))
            return CancelOrder(taker, order_id=oldest.order_id)
        buy = self._lean_buy(taker, symbol, 180)  # takers want compute: a mild buy bias
        side = Side.BUY if buy else Side.SELL
        sign = 1 if buy else -1
        qty = rng.choice((1, 1, 2, 2, 3, 5, 8, 13))
        stp = rng.choice(_STP_MODES)
        best_bid, best_ask = self._best(symbol)
        touch = best_ask if buy else best_bid
        k = rng.random()
        if k < 0.40 and touch is not None:
            price = self._clamp(symbol, touch + sign * rng.randint(0, 2))
            return PlaceOrder(taker, symbol, side, qty, price, OrderType.LIMIT, TimeInForce.IOC, stp=stp)
        if k < 0.60:
            return PlaceOrder(taker, symbol, side, qty, None, OrderType.MARKET, TimeInForce.IOC, stp=stp)
        if k < 0.68:
            if touch is not None and rng.random() < 0.5:
                price = self._clamp(symbol, touch + sign)
                return PlaceOrder(taker, symbol, side, qty, price, OrderType.LIMIT, TimeInForce.FOK, stp=stp)
            return PlaceOrder(taker, symbol, side, qty, None, OrderType.MARKET, TimeInForce.FOK, stp=stp)
        if k < 0.82 and touch is not None:
            # Aggressive limit through the touch: takes what is there, the rest rests.
            price = self._clamp(symbol, touch + sign)
            order = PlaceOrder(taker, symbol, side, qty, price, OrderType.LIMIT, TimeInForce.GTC, stp=stp,
                               client_order_id=self._next_cid(taker))
            self._recent.append(order)
            return order
        # Passive GTD order just inside the fair value.
        price = self._clamp(symbol, self.fair_ticks(symbol) - sign * rng.randint(1, 4))
        return PlaceOrder(taker, symbol, side, qty, price, OrderType.LIMIT, TimeInForce.GTD, stp=stp,
                          expire_ts_ns=self.now_ns + rng.randint(2, 60) * NS_PER_SECOND)

    def _provider(self, provider: int, symbol: str) -> Command:
        rng = self.rng
        open_orders = self.by_account[provider]
        if len(open_orders) >= _PROVIDER_OPEN_MAX:
            oldest = next(iter(open_orders.values()))
            if oldest.client_order_id is not None and rng.random() < 0.5:
                return CancelOrder(provider, client_order_id=oldest.client_order_id)
            return CancelOrder(provider, order_id=oldest.order_id)
        position = self.positions.get((provider, symbol), 0)
        buy = rng.random() < (0.6 if position < -_PROVIDER_SOFT_SHORT else 0.12)
        side = Side.BUY if buy else Side.SELL
        sign = 1 if buy else -1
        fair = self.fair_ticks(symbol)
        best_bid, best_ask = self._best(symbol)
        k = rng.random()
        if k < 0.45:
            # Post-only offer (or bid) a few ticks away from fair, kept behind the other side.
            price = self._clamp(symbol, fair - sign * rng.randint(2, 7))
            if buy and best_ask is not None and price >= best_ask:
                price = best_ask - 1
            if not buy and best_bid is not None and price <= best_bid:
                price = best_bid + 1
            cid = self._next_cid(provider)
            order = PlaceOrder(provider, symbol, side, rng.choice((5, 10, 20, 40)), price, OrderType.LIMIT,
                               TimeInForce.GTC, post_only=True, client_order_id=cid)
            self._recent.append(order)
            return order
        if k < 0.65:
            price = self._clamp(symbol, fair - sign * rng.randint(1, 8))
            return PlaceOrder(provider, symbol, side, rng.choice((5, 10, 20)), price, OrderType.LIMIT,
                              TimeInForce.GTD, stp=rng.choice(_STP_MODES),
                              client_order_id=self._next_cid(provider),
                              expire_ts_ns=self.now_ns + rng.randint(10, 120) * NS_PER_SECOND)
        touch = best_ask if buy else best_bid
        if k < 0.80 and touch is not None:
            price = self._clamp(symbol, touch + sign * rng.randint(0, 1))
            return PlaceOrder(provider, symbol, side, rng.choice((2, 5, 10)), price, OrderType.LIMIT,
                              TimeInForce.IOC, stp=StpMode.DECREMENT)
        mine = [o for o in open_orders.values() if o.symbol == symbol and o.price_ticks is not None]
        if mine:
            target = rng.choice(mine)
            if k < 0.90:
                assert target.price_ticks is not None
                away = 1 if target.side == SELL else -1
                new_price = self._clamp(symbol, target.price_ticks + away * rng.choice((-1, 1, 2)))
                if new_price != target.price_ticks:
                    return AmendOrder(provider, target.order_id, price_ticks=new_price)
                if target.remaining_lots > 1:
                    return AmendOrder(provider, target.order_id, qty_lots=target.remaining_lots // 2)
            return CancelOrder(provider, order_id=target.order_id)
        return PlaceOrder(provider, symbol, side, rng.choice((1, 2, 5)), None, OrderType.MARKET,
                          TimeInForce.IOC)

    def _retry(self) -> Command | None:
        """Resend a recent order unchanged, as a client would after a timeout."""
        candidates = [order for order in self._recent if order.symbol not in self.terminated]
        return self.rng.choice(candidates) if candidates else None

    def _cancel_by_client_id(self, account_id: int) -> Command | None:
        for order in self.by_account[account_id].values():
            if order.client_order_id is not None:
                return CancelOrder(account_id, client_order_id=order.client_order_id)
        return None
