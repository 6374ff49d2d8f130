"""What the daily settlement needs to know about each daily cut (rulebook §6), rebuilt from the journal.

The settlement at 16:00 UTC on day D needs the book at 16:00, the trades of the VWAP window before
it, the last trade since the previous settlement, each account's position at the previous
settlement's cut and its trades since. The job may run any time after the cut (and the market keeps
trading), so it does not look at the live core: it replays the journal read-only into a private
engine and, at every cut it crosses, records the book's top and every position; between cuts it sums
each account's trades per series. Replay is deterministic, so two runs (or a run after a crash) see
exactly the same inputs and compute exactly the same postings.

Memory: one record per (cut, series) with the positions of the accounts holding that series, and per
(cut, series, account) two integers of trade flow; nothing per trade except the window's (bounded by
two minutes of trading).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from exchange.domain.engine import Engine, EngineLimits
from exchange.domain.events import Trade
from exchange.journal.journal import read_entries

NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S


@dataclass
class SeriesCut:
    """One series at one cut, and its trading since the previous cut."""

    best_bid_ticks: int | None = None
    best_ask_ticks: int | None = None
    positions: dict[int, int] = field(default_factory=dict)           # account -> signed lots at the cut
    window: list[tuple[int, int]] = field(default_factory=list)       # (price, lots) in [cut - window, cut)
    last_trade_ticks: int | None = None                               # last trade before the cut, this day
    flows: dict[int, list[int]] = field(default_factory=dict)         # account -> [signed lots, signed tick-lots]


@dataclass
class CutHistory:
    cut_hour_utc: int
    cuts: dict[int, dict[str, SeriesCut]] = field(default_factory=dict)   # cut ns -> symbol -> state
    engine: Engine | None = None                                          # the replayed engine at the end
    last_ts_ns: int = 0

    def cut_of(self, date_ns: int) -> int:
        return date_ns + self.cut_hour_utc * 3_600 * NS_PER_S

    def series_cut(self, cut_ns: int, symbol: str) -> SeriesCut | None:
        return self.cuts.get(cut_ns, {}).get(symbol)

    def between(self, after_cut_ns: int, cut_ns: int, symbol: str) -> Iterator[SeriesCut]:
        """The series' states at the cuts in (after_cut_ns, cut_ns], oldest first."""
        for at in sorted(self.cuts):
            if after_cut_ns < at <= cut_ns and symbol in self.cuts[at]:
                yield self.cuts[at][symbol]


def next_cut_ns(ts_ns: int, cut_hour_utc: int) -> int:
    """The first cut strictly after `ts_ns`."""
    offset = cut_hour_utc * 3_600 * NS_PER_S
    day = (ts_ns - offset) // NS_PER_DAY
    return (day + 1) * NS_PER_DAY + offset


def replay_cuts(journal_dir: Path, limits: EngineLimits, cut_hour_utc: int, window_s: int,
                until_ns: int, now_ns: int, until_seq: int | None = None) -> CutHistory:
    """Replay the journal into a private engine, recording every cut up to `until_ns` (inclusive).

    A cut is recorded when the first command at or after it is replayed, or, if the journal ends
    before it, when `now_ns` (the caller's clock) has passed it: the sequencer's times never go
    backwards, so nothing can be journaled before a cut that has already passed. `until_seq`: read no
    further (a job against a running exchange reads the committed journal up to its barrier)."""
    engine = Engine(limits)
    history = CutHistory(cut_hour_utc, engine=engine)
    window_ns = window_s * NS_PER_S
    pending: dict[str, SeriesCut] = {}          # the day being built, per series
    cut = -1
    for entry in read_entries(journal_dir, committed_seq=until_seq or 0):
        if until_seq is not None and entry.seq > until_seq:
            break
        ts = entry.ts_ns
        if cut < 0:
            cut = next_cut_ns(ts - 1, cut_hour_utc)     # the first cut at or after the first command
        while ts >= cut and cut <= until_ns:            # crossing cuts: record the state at each
            history.cuts[cut] = _close_day(engine, pending)
            pending = {}
            cut += NS_PER_DAY
        if ts >= cut:                                   # past the last cut asked for
            break
        for event in engine.apply(entry.command, ts):
            if type(event) is Trade:
                _count_trade(pending, event, cut, window_ns)
        history.last_ts_ns = ts
    while 0 <= cut <= min(until_ns, now_ns):
        history.cuts[cut] = _close_day(engine, pending)
        pending = {}
        cut += NS_PER_DAY
    return history


def _count_trade(pending: dict[str, SeriesCut], trade: Trade, cut_ns: int, window_ns: int) -> None:
    day = pending.get(trade.symbol)
    if day is None:
        day = pending[trade.symbol] = SeriesCut()
    price, lots = trade.price_ticks, trade.qty_lots
    if trade.ts_ns >= cut_ns - window_ns:
        day.window.append((price, lots))
    day.last_trade_ticks = price
    buyer, seller = ((trade.taker_account_id, trade.maker_account_id) if trade.aggressor_side == 0
                     else (trade.maker_account_id, trade.taker_account_id))
    for account, signed in ((buyer, lots), (seller, -lots)):
        flow = day.flows.get(account)
        if flow is None:
            flow = day.flows[account] = [0, 0]
        flow[0] += signed
        flow[1] += signed * price


def _close_day(engine: Engine, pending: dict[str, SeriesCut]) -> dict[str, SeriesCut]:
    """The state at a cut: top of book and positions of every listed series, plus the day's trading."""
    states: dict[str, SeriesCut] = {}
    for symbol in engine.series:
        state = pending.get(symbol) or SeriesCut()
        state.best_bid_ticks, state.best_ask_ticks = engine.top_of_book(symbol)
        states[symbol] = state
    for account in engine.accounts.values():
        for symbol, exposure in account.exposures.items():
            if exposure.position_lots:
                states[symbol].positions[account.account_id] = exposure.position_lots
    return states
