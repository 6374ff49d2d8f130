"""The feed hub: market data and private account updates, projected from the committed event stream.

`FeedHub.publish(batch)` is called by the feed gateway's follower (exchange/feeds/app.py) once per
batch of committed journal records its replica of the core applied (so nothing is published that a
crash could undo), with the replica as `engine`. It never awaits and does O(events + changed levels +
subscribers) work: it updates the hub's own view (per-series level-2 book with its book seq, last trade
id, live candles, the index's per-minute aggregates), serialises each message once, and at the end of
the batch queues to each subscriber one frame of the messages of its channels, built once per
distinct set of channels and shared (`_deliver`). A subscriber with more than `queue_max` messages
waiting is slow (its connection is then closed with `slow_consumer`, code 1013): nothing waits for a
socket, whatever the number or speed of the subscribers. Anything raised in the hub is logged and
counted (`errors`), never raised into the follower.

Book: after each batch the hub diffs the engine's levels of every series the batch touched against
the levels it last published; a non-empty difference is one `book_update` (absolute sizes, lots 0
removes the level) and the series' book seq + 1. A subscriber with a depth limit N holds only the top N
levels per side: it gets an update only when its top N changed, carrying the difference between the
top N it holds and the new top N (levels leaving the top N are removed with lots 0), with the series'
current book seq as `seq` and the seq of the last book message it was sent as `prev_seq`, so its chain
stays continuous and applying the updates to its snapshot gives exactly the top N.

Ticker and live candle bars are coalesced: marked dirty on change and flushed every 100 ms by the hub's
task, which also closes candle bars whose interval has passed and publishes the index every minute.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from exchange.api import present
from exchange.domain.engine import Engine
from exchange.domain.events import (
    CashMoved,
    DailySettlement,
    DeliveryAssigned,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    SeriesListed,
    Trade,
    TradingTerminated,
)
from exchange.domain.index import (
    NS_PER_MINUTE,
    WINDOW_NS,
    IndexValue,
    IndexWindow,
    minute_floor,
)
from exchange.domain.order import Side
from exchange.domain.spec import SeriesSpec
from exchange.domain.units import ticks_to_price
from exchange.service.sequencer import Sequenced
from exchange.store.store import TRADES_SCAN_MAX, TradeRow

log = logging.getLogger(__name__)

QUEUE_MAX = 10_000                 # outbound messages per connection before it is a slow consumer
SUBSCRIPTIONS_MAX = 50             # channels per connection
CONNECTIONS_PER_IP_MAX = 50
DEPTH_MAX = 500                    # largest book depth limit
FLUSH_INTERVAL_S = 0.1             # ticker / live candle coalescing
INDEX_GRACE_NS = 500_000_000       # publish minute M's index once the clock is past M + this
INDEX_HISTORY_MAX = 7 * 24 * 60    # minutes of index history kept per product
NS_PER_S = 1_000_000_000
DAY_NS = 86_400 * NS_PER_S
INTERVAL_NS = {"1m": 60 * NS_PER_S, "5m": 300 * NS_PER_S, "1h": 3_600 * NS_PER_S}

Key = tuple[str, ...]              # ("book", S), ("trades", S), ("candles", S, "1m"), ("private", "7") ...
Levels = dict[int, tuple[int, int]]   # price ticks -> (lots, orders)

_ORDER_EVENTS = (OrderAccepted, OrderCancelled, OrderAmended, OrderExpired)


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


class FeedError(Exception):
    """A refused client message: a stable `code` for the error frame."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


class Subscriber:
    """One connection's subscriptions and bounded outbound queue.

    The queue holds frames: one message's text, or (for a batch subscriber, `?batch=1`) a JSON array of
    several, shared with every subscriber of the same channels (built once per publish, not once per
    subscriber). `queued_messages` counts the messages waiting; past `queue_max` the subscriber is slow
    and gets nothing more (its connection is closed with `slow_consumer`)."""

    def __init__(self, ip: str, queue_max: int, batch: bool = False) -> None:
        self.ip = ip
        self.queue_max = queue_max
        self.batch = batch
        self.queue: deque[tuple[str, int]] = deque()    # (frame text, messages in it)
        self.queued_messages = 0
        self.ready = asyncio.Event()                    # set when the queue is not empty
        self.keys: set[Key] = set()
        self.depth: dict[str, int | None] = {}          # book symbol -> depth limit (None: full book)
        self.held: dict[str, tuple[Levels, Levels]] = {}  # depth-limited books: the top N it holds
        self.book_seq: dict[str, int] = {}              # book symbol -> seq of the last book message sent
        self.account_id: int | None = None
        self.slow = False
        self.slow_event = asyncio.Event()

    def put(self, text: str) -> None:
        self.put_frame(text, 1)

    def put_frame(self, text: str, messages: int) -> None:
        if self.slow:
            return
        if self.queued_messages + messages > self.queue_max:
            self.slow = True
            self.slow_event.set()
            return
        self.queue.append((text, messages))
        self.queued_messages += messages
        self.ready.set()

    def put_texts(self, texts: list[str]) -> None:
        """Several messages, in order: one frame for a batch subscriber, else one frame each."""
        if self.batch:
            self.put_frame(texts[0] if len(texts) == 1 else "[" + ",".join(texts) + "]", len(texts))
        else:
            for text in texts:
                self.put_frame(text, 1)

    def take(self, messages_max: int, chars_max: int) -> str | None:
        """The next frame to send (None if nothing is queued). A batch subscriber gets everything
        queued (up to the limits) merged into one JSON array frame, in order."""
        queue = self.queue
        if not queue:
            self.ready.clear()
            return None
        text, count = queue.popleft()
        if self.batch and queue:
            parts = [text[1:-1] if text.startswith("[") else text]
            size = len(text)
            while queue and count < messages_max and size < chars_max:
                more, n = queue.popleft()
                parts.append(more[1:-1] if more.startswith("[") else more)
                count += n
                size += len(more)
            text = "[" + ",".join(parts) + "]"
        self.queued_messages -= count
        if not queue:
            self.ready.clear()
        return text


@dataclass
class Bar:
    start_ns: int
    open: int
    high: int
    low: int
    close: int
    volume: int = 0
    trades: int = 0

    def add(self, price: int, lots: int) -> None:
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price
        self.volume += lots
        self.trades += 1


@dataclass
class SeriesState:
    spec: SeriesSpec
    bids: Levels = field(default_factory=dict)
    asks: Levels = field(default_factory=dict)
    book_seq: int = 0
    trade_id: int = 0
    last_ticks: int | None = None
    bars: dict[str, Bar | None] = field(default_factory=lambda: dict.fromkeys(INTERVAL_NS))
    minutes: deque[Bar] = field(default_factory=deque)   # closed 1m bars of the last 24 h (the ticker)
    dirty_candles: set[str] = field(default_factory=set)
    dirty_ticker: bool = False


def _diff(old: Levels, new: Levels) -> list[tuple[int, int, int]]:
    changed = [(p, lots, n) for p, (lots, n) in new.items() if old.get(p) != (lots, n)]
    changed.extend((p, 0, 0) for p in old if p not in new)
    return changed


class FeedHub:
    def __init__(self, engine: Engine, clock_ns: Callable[[], int], *, queue_max: int = QUEUE_MAX,
                 subscriptions_max: int = SUBSCRIPTIONS_MAX,
                 connections_per_ip_max: int = CONNECTIONS_PER_IP_MAX) -> None:
        self.engine = engine
        self.clock_ns = clock_ns
        self.queue_max = queue_max
        self.subscriptions_max = subscriptions_max
        self.connections_per_ip_max = connections_per_ip_max
        self.series: dict[str, SeriesState] = {}
        self.subs: dict[Key, set[Subscriber]] = {}
        self.connections: dict[str, int] = {}
        self.index_windows: dict[str, IndexWindow] = {}
        self.index_history: dict[str, deque[IndexValue]] = {}
        self.index_minute = minute_floor(clock_ns())   # the last minute published
        self.engine_seq = engine.stamp.seq
        self.engine_ts_ns = engine.stamp.ts_ns
        self.errors = 0
        self.slow_consumers = 0
        # While publishing: the messages, in order, as (channel key, None, text, full_only) for everyone
        # subscribed to the key (full_only: a full-depth book update, not for depth-limited subscribers)
        # or (None, subscriber, text, False) for one subscriber; delivered at the end (`_deliver`).
        self._outbox: list[tuple[Key | None, Subscriber | None, str, bool]] | None = None
        self._task: asyncio.Task[None] | None = None
        for symbol, series in engine.series.items():
            self._add_series(series.spec)
            state = self.series[symbol]
            bids, asks = engine.book_levels(symbol)
            state.bids = {p: (lots, n) for p, lots, n in bids}
            state.asks = {p: (lots, n) for p, lots, n in asks}

    # -- start-up and the periodic task ------------------------------------------------------
    def seed(self, trades_between: Callable[[str, int, int, int], list[TradeRow]], up_to_seq: int) -> None:
        """Load the last 24 h of trades (at most TRADES_SCAN_MAX per series, the newest hour first
        when there are more) into the candles, the ticker and the index; publishes nothing. Only trades
        of journal seq <= `up_to_seq` (where the engine is): later ones arrive through `publish`."""
        now = self.clock_ns()
        for symbol in self.series:
            rows = trades_between(symbol, now - DAY_NS, now + 1, TRADES_SCAN_MAX)
            if len(rows) >= TRADES_SCAN_MAX:
                log.warning("feeds: more than %d trades of %s in 24 h: seeding the last hour only",
                            TRADES_SCAN_MAX, symbol)
                rows = trades_between(symbol, now - WINDOW_NS, now + 1, TRADES_SCAN_MAX)
            for row in rows:
                if row.seq > up_to_seq:
                    break   # oldest first by trade id, and trade ids grow with the seq
                self._record_trade(symbol, row.trade_id, row.ts_ns, row.price_ticks, row.qty_lots, publish=False)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="feeds")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self.flush()

    def flush(self) -> None:
        """Coalesced ticker and live candles, time-based candle closes, the index each minute."""
        self._outbox = []
        try:
            self._flush()
        except Exception:
            self.errors += 1
            log.exception("feeds: flush failed")
        finally:
            self._deliver()

    # -- connections and subscriptions --------------------------------------------------------
    def connect(self, ip: str, batch: bool = False) -> Subscriber | None:
        """A new connection's subscriber; None if the IP already has the maximum of connections."""
        if self.connections.get(ip, 0) >= self.connections_per_ip_max:
            return None
        self.connections[ip] = self.connections.get(ip, 0) + 1
        return Subscriber(ip, self.queue_max, batch)

    def disconnect(self, sub: Subscriber) -> None:
        for key in list(sub.keys):
            self._unsubscribe_key(sub, key)
        left = self.connections.get(sub.ip, 1) - 1
        if left > 0:
            self.connections[sub.ip] = left
        else:
            self.connections.pop(sub.ip, None)
        if sub.slow:
            self.slow_consumers += 1

    def parse_channel(self, raw: object) -> tuple[Key, dict[str, Any], int | None]:
        """A client's channel object -> (key, canonical channel, book depth). Raises FeedError."""
        if not isinstance(raw, dict):
            raise FeedError("invalid_subscription", "a channel must be a JSON object")
        name = raw.get("channel")
        allowed = {"book": {"symbol", "depth"}, "trades": {"symbol"}, "ticker": {"symbol"},
                   "candles": {"symbol", "interval"}, "settlement": set(), "index": {"product"}, "private": set()}
        if not isinstance(name, str) or name not in allowed:
            raise FeedError("unknown_channel", f"unknown channel {name!r}", {"channels": list(allowed)})
        extra = set(raw) - allowed[name] - {"channel"}
        if extra:
            raise FeedError("invalid_subscription", f"unexpected field(s) for {name}: {', '.join(sorted(extra))}")
        if name in ("settlement", "private"):
            return (name,), {"channel": name}, None
        if name == "index":
            product = raw.get("product")
            known = {s.spec.product for s in self.series.values()} | set(self.index_history)
            if not isinstance(product, str) or product not in known:
                raise FeedError("unknown_product", f"no listed product {product!r}")
            return ("index", product), {"channel": "index", "product": product}, None
        symbol = raw.get("symbol")
        if not isinstance(symbol, str):
            raise FeedError("invalid_subscription", f"{name} needs a symbol")
        if symbol not in self.series:
            raise FeedError("unknown_series", f"no listed series {symbol!r}")
        if name == "candles":
            interval = raw.get("interval")
            if not isinstance(interval, str) or interval not in INTERVAL_NS:
                raise FeedError("invalid_subscription", "interval must be one of 1m, 5m, 1h")
            return ("candles", symbol, interval), {"channel": "candles", "symbol": symbol, "interval": interval}, None
        if name == "book":
            depth = raw.get("depth")
            if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool)
                                      or not 1 <= depth <= DEPTH_MAX):
                raise FeedError("invalid_subscription", f"depth must be an integer in 1..{DEPTH_MAX}")
            channel: dict[str, Any] = {"channel": "book", "symbol": symbol}
            if depth is not None:
                channel["depth"] = depth
            return ("book", symbol), channel, depth
        return (name, symbol), {"channel": name, "symbol": symbol}, None

    def subscribe(self, sub: Subscriber, key: Key, depth: int | None) -> None:
        """Add (or, for a book, renew: a fresh snapshot) one subscription; the caller has acked it."""
        if key not in sub.keys and len(sub.keys) >= self.subscriptions_max:
            raise FeedError("too_many_subscriptions", f"at most {self.subscriptions_max} subscriptions per connection")
        if key[0] == "private":
            if sub.account_id is None:
                raise FeedError("auth_required", 'the private channel needs {"op": "auth", ...} first')
            key = ("private", str(sub.account_id))
        sub.keys.add(key)
        self.subs.setdefault(key, set()).add(sub)
        if key[0] == "book":
            self._send_snapshot(sub, key[1], depth)

    def unsubscribe(self, sub: Subscriber, key: Key) -> None:
        if key[0] == "private" and sub.account_id is not None:
            key = ("private", str(sub.account_id))
        self._unsubscribe_key(sub, key)

    def _unsubscribe_key(self, sub: Subscriber, key: Key) -> None:
        sub.keys.discard(key)
        subs = self.subs.get(key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.subs[key]
        if key[0] == "book":
            sub.depth.pop(key[1], None)
            sub.held.pop(key[1], None)
            sub.book_seq.pop(key[1], None)

    def heartbeat(self, sub: Subscriber) -> str:
        seqs: dict[str, int] = {}
        for key in sub.keys:
            if key[0] == "book":
                seqs[f"book:{key[1]}"] = sub.book_seq.get(key[1], 0)
            elif key[0] == "trades":
                seqs[f"trades:{key[1]}"] = self.series[key[1]].trade_id
        return dumps({"type": "heartbeat", "ts_ns": self.clock_ns(), "seqs": seqs})

    def book_view(self, symbol: str, depth: int) -> tuple[int, list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """(book seq, bids, asks) as last published: what the REST snapshot shows to align with the feed."""
        state = self.series[symbol]
        bids = sorted(((p, lots, n) for p, (lots, n) in state.bids.items()), reverse=True)[:depth]
        asks = sorted((p, lots, n) for p, (lots, n) in state.asks.items())[:depth]
        return state.book_seq, bids, asks

    def index_values(self, product: str, start_ns: int, end_ns: int) -> list[IndexValue]:
        return [v for v in self.index_history.get(product, ()) if start_ns <= v.ts_ns < end_ns]

    # -- the listener --------------------------------------------------------------------------
    def publish(self, batch: list[Sequenced]) -> None:
        """The on-commit listener: never raises, never awaits."""
        self._outbox = []
        try:
            self._publish(batch)
        except Exception:
            self.errors += 1
            log.exception("feeds: publishing seq %d..%d failed", batch[0].seq, batch[-1].seq)
        finally:
            self._deliver()

    def _publish(self, batch: list[Sequenced]) -> None:
        touched: set[str] = set()
        balances: set[int] = set()
        positions: set[tuple[int, str]] = set()
        private = self._private_accounts()
        for item in batch:
            for event in item.events:
                kind = type(event)
                if kind is Trade:
                    assert isinstance(event, Trade)
                    touched.add(event.symbol)
                    self._record_trade(event.symbol, event.trade_id, event.ts_ns, event.price_ticks, event.qty_lots,
                                       side=Side(event.aggressor_side).label)
                    for account in (event.maker_account_id, event.taker_account_id):
                        if account in private:
                            balances.add(account)
                            positions.add((account, event.symbol))
                            self._private_trade(account, event)
                elif kind in _ORDER_EVENTS:
                    assert isinstance(event, _ORDER_EVENTS)
                    touched.add(event.symbol)
                    account = event.account_id
                    if account in private:
                        balances.add(account)
                        self._private_order(account, event, item.events)
                elif kind is CashMoved:
                    assert isinstance(event, CashMoved)
                    balances.update(a for a in (event.from_account, event.to_account) if a in private)
                elif kind is DailySettlement:
                    assert isinstance(event, DailySettlement)
                    self._settlement(event)
                elif kind is DeliveryAssigned:
                    assert isinstance(event, DeliveryAssigned)
                    positions.update((a, event.symbol) for a in (event.seller, event.buyer) if a in private)
                    balances.update(a for a in (event.seller, event.buyer) if a in private)
                elif kind is SeriesListed:
                    assert isinstance(event, SeriesListed)
                    self._add_series(event.spec)
                elif kind is TradingTerminated:
                    assert isinstance(event, TradingTerminated)
                    touched.add(event.symbol)
        stamp = self.engine.stamp
        self.engine_seq, self.engine_ts_ns = stamp.seq, stamp.ts_ns
        for symbol in touched:
            self._book_changed(symbol)
        for account in balances:
            self._balance(account)
        for account, symbol in positions:
            self._position(account, symbol)

    # -- book --------------------------------------------------------------------------------
    def _add_series(self, spec: SeriesSpec) -> None:
        if spec.symbol not in self.series:
            self.series[spec.symbol] = SeriesState(spec)
            self.index_windows.setdefault(spec.product, IndexWindow())

    def _levels_out(self, levels: Iterable[tuple[int, int, int]], spec: SeriesSpec,
                    descending: bool) -> list[tuple[str, int, int]]:
        return [(present.price(p, spec), lots, n) for p, lots, n in sorted(levels, reverse=descending)]

    def _send_snapshot(self, sub: Subscriber, symbol: str, depth: int | None) -> None:
        state = self.series[symbol]
        seq, bids, asks = self.book_view(symbol, depth if depth is not None else len(state.bids) + len(state.asks))
        sub.depth[symbol] = depth
        sub.book_seq[symbol] = seq
        if depth is not None:
            sub.held[symbol] = ({p: (lots, n) for p, lots, n in bids}, {p: (lots, n) for p, lots, n in asks})
        else:
            sub.held.pop(symbol, None)
        sub.put(dumps({"type": "book_snapshot", "symbol": symbol, "seq": seq,
                       "bids": self._levels_out(bids, state.spec, True),
                       "asks": self._levels_out(asks, state.spec, False)}))

    def _book_changed(self, symbol: str) -> None:
        state = self.series.get(symbol)
        if state is None or symbol not in self.engine.series:
            return
        bids, asks = self.engine.book_levels(symbol)
        new_bids = {p: (lots, n) for p, lots, n in bids}
        new_asks = {p: (lots, n) for p, lots, n in asks}
        changed_bids, changed_asks = _diff(state.bids, new_bids), _diff(state.asks, new_asks)
        if not changed_bids and not changed_asks:
            return
        prev_seq = state.book_seq
        state.book_seq += 1
        state.bids, state.asks = new_bids, new_asks
        state.dirty_ticker = True
        subs = self.subs.get(("book", symbol))
        if not subs:
            return
        spec, seq, ts_ns = state.spec, state.book_seq, self.engine_ts_ns   # the batch's last command's time
        full: str | None = None
        tops: dict[int, tuple[Levels, Levels]] = {}
        for sub in list(subs):
            depth = sub.depth.get(symbol)
            if depth is None:
                if full is None:   # one text, shared by every full-depth subscriber (see _deliver)
                    full = dumps({"type": "book_update", "symbol": symbol, "seq": seq, "prev_seq": prev_seq,
                                  "bids": self._levels_out(changed_bids, spec, True),
                                  "asks": self._levels_out(changed_asks, spec, False), "ts_ns": ts_ns})
                    if self._outbox is not None:
                        self._outbox.append((("book", symbol), None, full, True))
                if self._outbox is None:
                    sub.put(full)
                sub.book_seq[symbol] = seq
                continue
            top = tops.get(depth)
            if top is None:
                top = tops[depth] = ({p: (lots, n) for p, lots, n in bids[:depth]},
                                     {p: (lots, n) for p, lots, n in asks[:depth]})
            held = sub.held.get(symbol, ({}, {}))
            top_bids, top_asks = _diff(held[0], top[0]), _diff(held[1], top[1])
            if not top_bids and not top_asks:
                continue
            self._send_to(sub, dumps({"type": "book_update", "symbol": symbol, "seq": seq,
                           "prev_seq": sub.book_seq.get(symbol, prev_seq),
                           "bids": self._levels_out(top_bids, spec, True),
                           "asks": self._levels_out(top_asks, spec, False), "ts_ns": ts_ns}))
            sub.held[symbol] = top
            sub.book_seq[symbol] = seq

    # -- trades, candles, ticker, index -----------------------------------------------------------
    def _record_trade(self, symbol: str, trade_id: int, ts_ns: int, price: int, lots: int, *,
                      side: str = "", publish: bool = True) -> None:
        state = self.series.get(symbol)
        if state is None:
            return
        spec = state.spec
        state.trade_id = max(state.trade_id, trade_id)
        state.last_ticks = price
        state.dirty_ticker = True
        if publish:
            self._fan_out(("trades", symbol), {"type": "trade", "symbol": symbol, "seq": trade_id,
                                               "trade_id": trade_id, "price": present.price(price, spec),
                                               "amount": lots, "side": side, "ts_ns": ts_ns})
        for interval, width in INTERVAL_NS.items():
            start = ts_ns - ts_ns % width
            bar = state.bars[interval]
            if bar is not None and bar.start_ns < start:
                self._close_bar(symbol, state, interval, bar, publish)
                bar = None
            if bar is None:
                bar = state.bars[interval] = Bar(start, price, price, price, price)
            bar.add(price, lots)
            state.dirty_candles.add(interval)
        window = self.index_windows.setdefault(spec.product, IndexWindow())
        window.add(ts_ns, ticks_to_price(price, spec.tick_micros), lots * spec.lot_gpu_hours)

    def _close_bar(self, symbol: str, state: SeriesState, interval: str, bar: Bar, publish: bool) -> None:
        state.bars[interval] = None
        state.dirty_candles.discard(interval)
        if interval == "1m":
            state.minutes.append(bar)
        if publish:
            self._fan_out(("candles", symbol, interval), self._candle(symbol, state.spec, interval, bar, True))

    @staticmethod
    def _candle(symbol: str, spec: SeriesSpec, interval: str, bar: Bar, closed: bool) -> dict[str, Any]:
        return {"type": "candle", "symbol": symbol, "interval": interval, "start_ns": bar.start_ns,
                "open": present.price(bar.open, spec), "high": present.price(bar.high, spec),
                "low": present.price(bar.low, spec), "close": present.price(bar.close, spec),
                "volume": bar.volume, "trades": bar.trades, "closed": closed}

    def _ticker(self, symbol: str, state: SeriesState, now: int) -> dict[str, Any]:
        spec = state.spec
        while state.minutes and state.minutes[0].start_ns < now - DAY_NS:
            state.minutes.popleft()
        bars = list(state.minutes)
        current = state.bars["1m"]
        if current is not None:
            bars.append(current)

        def px(ticks: int | None) -> str | None:
            return present.price(ticks, spec) if ticks is not None else None

        volume = sum(b.volume for b in bars)
        first = bars[0].open if bars else None
        last = state.last_ticks
        return {"type": "ticker", "symbol": symbol, "bid": px(max(state.bids, default=None)),
                "ask": px(min(state.asks, default=None)), "last": px(last),
                "open_24h": px(first), "volume_24h": volume,
                "high_24h": px(max((b.high for b in bars), default=None)),
                "low_24h": px(min((b.low for b in bars), default=None)),
                "change_24h": px(last - first) if last is not None and first is not None else None,
                "ts_ns": self.engine_ts_ns}

    def _flush(self) -> None:
        now = self.clock_ns()
        for symbol, state in self.series.items():
            for interval, width in INTERVAL_NS.items():
                bar = state.bars[interval]
                if bar is not None and now >= bar.start_ns + width:
                    self._close_bar(symbol, state, interval, bar, True)
            for interval in state.dirty_candles:
                bar = state.bars[interval]
                if bar is not None:
                    self._fan_out(("candles", symbol, interval), self._candle(symbol, state.spec, interval, bar, False))
            state.dirty_candles.clear()
            if state.dirty_ticker:
                state.dirty_ticker = False
                if ("ticker", symbol) in self.subs:
                    self._fan_out(("ticker", symbol), self._ticker(symbol, state, now))
        minute = minute_floor(now - INDEX_GRACE_NS)
        if minute > self.index_minute:
            # Minutes missed (a clock jump, a stall) are filled in, at most an hour of them.
            for m in range(max(self.index_minute + NS_PER_MINUTE, minute - WINDOW_NS), minute + 1, NS_PER_MINUTE):
                self.publish_index(m)
            self.index_minute = minute

    def publish_index(self, minute_ns: int) -> None:
        """Compute, record and publish every product's index value at whole minute `minute_ns`."""
        for product, window in self.index_windows.items():
            value = window.value(minute_ns)
            history = self.index_history.setdefault(product, deque(maxlen=INDEX_HISTORY_MAX))
            history.append(value)
            self._fan_out(("index", product), {"type": "index", "product": product, **index_out(value)})

    # -- settlement and private --------------------------------------------------------------------
    def _settlement(self, event: DailySettlement) -> None:
        series = self.engine.series.get(event.symbol)
        state = self.series.get(event.symbol)
        if series is None or state is None:
            return
        date = dt.datetime.fromtimestamp(event.date_ns // NS_PER_S, dt.UTC).date().isoformat()
        self._fan_out(("settlement",), {"type": "settlement", "symbol": event.symbol, "date": date,
                                        "price": present.price(event.price_ticks, state.spec),
                                        "final": event.date_ns == series.final_settlement_day_ns,
                                        "amended": event.amended, "seq": event.seq, "ts_ns": event.ts_ns})

    def _private_accounts(self) -> set[int]:
        return {int(key[1]) for key in self.subs if key[0] == "private"}

    def _private_trade(self, account: int, event: Trade) -> None:
        spec = self.series[event.symbol].spec
        maker = event.maker_account_id == account
        taker_side = Side(event.aggressor_side).label
        side = taker_side if not maker else ("sell" if taker_side == "buy" else "buy")
        order_id = event.maker_order_id if maker else event.taker_order_id
        remaining = event.maker_remaining_lots if maker else event.taker_remaining_lots
        key = ("private", str(account))
        self._fan_out(key, {"type": "fill", "trade_id": event.trade_id, "order_id": str(order_id),
                            "symbol": event.symbol, "side": side, "price": present.price(event.price_ticks, spec),
                            "amount": event.qty_lots,
                            "fee": present.usd(event.maker_fee_micros if maker else event.taker_fee_micros),
                            "liquidity": "maker" if maker else "taker", "ts_ns": event.ts_ns, "seq": event.seq})
        self._fan_out(key, {"type": "order", "event": "fill", "seq": event.seq, "ts_ns": event.ts_ns,
                            "order": {"id": str(order_id), "symbol": event.symbol, "side": side,
                                      "remaining": remaining, "status": "open" if remaining else "closed"}})

    def _private_order(self, account: int, event: OrderAccepted | OrderCancelled | OrderAmended | OrderExpired,
                       command_events: list[Any]) -> None:
        state = self.series.get(event.symbol)
        if state is None:
            return
        spec = state.spec
        order: dict[str, Any]
        if isinstance(event, OrderAccepted):
            kind, order = "accepted", present.placed_order(event, command_events, spec)
        else:
            order = {"id": str(event.order_id), "symbol": event.symbol, "side": Side(event.side).label}
            if isinstance(event, OrderCancelled):
                kind = "cancelled"
                order.update(cancelled=event.cancelled_lots, remaining=event.remaining_lots,
                             status="open" if event.remaining_lots else "canceled", cancel_reason=str(event.reason))
            elif isinstance(event, OrderAmended):
                kind = "amended"
                order.update(price=present.price(event.price_ticks, spec), amount=event.quantity_lots,
                             remaining=event.remaining_lots, status="open", priority_kept=event.priority_kept)
            else:
                kind = "expired"
                order.update(expired=event.expired_lots, remaining=0, status="expired")
        self._fan_out(("private", str(account)), {"type": "order", "event": kind, "seq": event.seq,
                                                  "ts_ns": event.ts_ns, "order": order})

    def _balance(self, account_id: int) -> None:
        account = self.engine.accounts.get(account_id)
        if account is None:
            return
        cash = self.engine.cash_micros(account_id)
        self._fan_out(("private", str(account_id)), {
            "type": "balance", "cash": present.usd(cash), "margin": present.usd(account.margin_micros),
            "available": present.usd(cash - account.margin_micros), "seq": self.engine_seq})

    def _position(self, account_id: int, symbol: str) -> None:
        account = self.engine.accounts.get(account_id)
        series = self.engine.series.get(symbol)
        if account is None or series is None:
            return
        exposure = account.exposures.get(symbol)
        if exposure is None:
            message = {"symbol": symbol, "size": 0, "entry_price": None,
                       "mark_price": present.price(series.reference_price_ticks, series.spec), "unrealized_pnl": "0"}
        else:
            message = present.position(symbol, exposure, series.spec, series.reference_price_ticks)
        self._fan_out(("private", str(account_id)), {"type": "position", **message, "seq": self.engine_seq})

    def _fan_out(self, key: Key, message: dict[str, Any]) -> None:
        subs = self.subs.get(key)
        if not subs:
            return
        text = dumps(message)
        if self._outbox is not None:
            self._outbox.append((key, None, text, False))
        else:
            for sub in list(subs):
                sub.put(text)

    def _send_to(self, sub: Subscriber, text: str) -> None:
        if self._outbox is not None:
            self._outbox.append((None, sub, text, False))
        else:
            sub.put(text)

    def _deliver(self) -> None:
        """Queue what the publish produced. Subscribers with the same channels get the same messages:
        their frame is built once and shared, so the cost per subscriber is one queue append per
        publish, not one per message (1,000 subscribers x 1,000 trades/s would otherwise be a million
        Python operations a second)."""
        outbox, self._outbox = self._outbox, None
        if not outbox:
            return

        def wanted(key: Key | None, full_only: bool, keys: Collection[Key], limited: Collection[str]) -> bool:
            # A full-depth book update is for the book's subscribers without a depth limit only.
            return key is not None and key in keys and not (full_only and key[1] in limited)

        targeted = {target for _, target, _, _ in outbox if target is not None}
        affected: set[Subscriber] = set(targeted)
        for key in {key for key, target, _, _ in outbox if target is None}:
            affected.update(self.subs.get(key, ()))   # type: ignore[arg-type]
        shared: dict[tuple[frozenset[Key], frozenset[str]], list[str]] = {}
        frames: dict[tuple[frozenset[Key], frozenset[str]], str] = {}
        for sub in affected:
            limited = frozenset(symbol for symbol, depth in sub.depth.items() if depth is not None)
            if sub in targeted:     # a depth-limited book: its own messages among the shared ones
                sub.put_texts([text for key, target, text, full_only in outbox
                               if target is sub or (target is None and wanted(key, full_only, sub.keys, limited))])
                continue
            signature = (frozenset(sub.keys), limited)
            texts = shared.get(signature)
            if texts is None:
                texts = shared[signature] = [text for key, target, text, full_only in outbox
                                             if target is None and wanted(key, full_only, signature[0], limited)]
            if not texts:
                continue
            if not sub.batch:
                for text in texts:
                    sub.put_frame(text, 1)
                continue
            frame = frames.get(signature)
            if frame is None:
                frame = frames[signature] = texts[0] if len(texts) == 1 else "[" + ",".join(texts) + "]"
            sub.put_frame(frame, len(texts))


def index_out(value: IndexValue) -> dict[str, Any]:
    return {"ts_ns": value.ts_ns, "value": str(value.value) if value.value is not None else None,
            "trades": value.trades, "volume": value.volume}
