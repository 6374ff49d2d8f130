"""The GPU-hour reference rate (the `index` feed): pure, exact arithmetic over a product's trades.

Methodology (per product = GPU generation x MFU grade, all its listed series together):

1. At each whole minute M, take the product's trades with M - 60 min <= ts_ns < M (the trailing hour,
   trades *at* M belong to the next minute's value). Each trade is a price per GPU-hour (exact
   `Decimal`) and a volume in GPU-hours (lots x GPU-hours per lot of its series), so series of
   different delivery lengths weigh what they deliver.
2. Split the hour into twelve 5-minute partitions [M - 60 + 5k, M - 55 + 5k) min, k = 0..11.
3. Each non-empty partition's value is the volume-weighted median of its trades' prices; its weight is
   its volume.
4. The index is the volume-weighted median of the partition values, weighted by partition volume.
   No trade in the hour: the index is None (nothing is carried over from earlier minutes).

Volume-weighted median, precisely: sort the (price, volume) points by price; with W the total volume,
it is the *lowest* price p at which the cumulative volume of the points priced <= p reaches at least
half of W (2 x cumulative >= W). It is always one of the traded prices (never an interpolation), and it
is deterministic for equal prices. A single small print at an extreme price moves it only if that
print carries at least half of the volume on one side: outliers are ignored, and so is a partition
whose only trade is one small outlier (its weight is small against the hour's).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import NamedTuple

NS_PER_MINUTE = 60_000_000_000
PARTITION_NS = 5 * NS_PER_MINUTE
PARTITIONS = 12
WINDOW_NS = PARTITIONS * PARTITION_NS   # one hour


class IndexTrade(NamedTuple):
    ts_ns: int
    price: Decimal          # USD per GPU-hour
    volume: int             # GPU-hours


class IndexValue(NamedTuple):
    ts_ns: int              # the whole minute M the value is published at (covers [M - 1 h, M))
    value: Decimal | None
    trades: int             # trades in the window
    volume: int             # GPU-hours traded in the window


def weighted_median(points: Iterable[tuple[Decimal, int]]) -> Decimal | None:
    """The lowest price at which the cumulative volume reaches half the total (see the module doc);
    None when the total volume is 0. Points with volume <= 0 are ignored."""
    ordered = sorted((price, volume) for price, volume in points if volume > 0)
    total = sum(volume for _, volume in ordered)
    if not total:
        return None
    cumulative = 0
    for price, volume in ordered:
        cumulative += volume
        if 2 * cumulative >= total:
            return price
    raise AssertionError("unreachable: the cumulative volume reaches the total")


def minute_floor(ts_ns: int) -> int:
    return ts_ns - ts_ns % NS_PER_MINUTE


def compute_index(trades: Iterable[IndexTrade], minute_ns: int) -> IndexValue:
    """The index value at whole minute `minute_ns` from any superset of the window's trades."""
    start = minute_ns - WINDOW_NS
    partitions: list[list[tuple[Decimal, int]]] = [[] for _ in range(PARTITIONS)]
    count = volume = 0
    for trade in trades:
        if start <= trade.ts_ns < minute_ns and trade.volume > 0:
            partitions[(trade.ts_ns - start) // PARTITION_NS].append((trade.price, trade.volume))
            count += 1
            volume += trade.volume
    medians: list[tuple[Decimal, int]] = []
    for points in partitions:
        median = weighted_median(points)
        if median is not None:
            medians.append((median, sum(v for _, v in points)))
    return IndexValue(minute_ns, weighted_median(medians), count, volume)


class IndexWindow:
    """One product's trailing trades aggregated per minute and price: `value(M)` equals
    `compute_index(trades, M)` for the trades added, at a cost that depends on the number of distinct
    prices, not of trades (a busy hour holds millions of trades; the partitions of any whole minute M
    are whole minutes, so minute buckets merge into them exactly).

    Memory: one price -> volume map per minute of the last hour. `value` must be asked for minutes in
    increasing order: it forgets the minutes before the window of the minute asked."""

    __slots__ = ("_minutes",)

    def __init__(self) -> None:
        self._minutes: dict[int, tuple[dict[Decimal, int], list[int]]] = {}   # minute -> (price -> volume, [trades])

    def add(self, ts_ns: int, price: Decimal, volume: int) -> None:
        if volume <= 0:
            return
        bucket = self._minutes.get(minute_floor(ts_ns))
        if bucket is None:
            bucket = self._minutes[minute_floor(ts_ns)] = ({}, [0])
        prices, count = bucket
        prices[price] = prices.get(price, 0) + volume
        count[0] += 1

    def value(self, minute_ns: int) -> IndexValue:
        assert minute_ns % NS_PER_MINUTE == 0, minute_ns
        start = minute_ns - WINDOW_NS
        for minute in [m for m in self._minutes if m < start]:
            del self._minutes[minute]
        medians: list[tuple[Decimal, int]] = []
        count = volume = 0
        for k in range(PARTITIONS):
            merged: dict[Decimal, int] = {}
            for minute in range(start + k * PARTITION_NS, start + (k + 1) * PARTITION_NS, NS_PER_MINUTE):
                bucket = self._minutes.get(minute)
                if bucket is None:
                    continue
                for price, v in bucket[0].items():
                    merged[price] = merged.get(price, 0) + v
                count += bucket[1][0]
            median = weighted_median(merged.items())
            if median is not None:
                weight = sum(merged.values())
                medians.append((median, weight))
                volume += weight
        return IndexValue(minute_ns, weighted_median(medians), count, volume)
