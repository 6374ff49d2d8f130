"""The GPU-hour index: the documented weighted median, partitions and outlier robustness."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.domain.index import (
    NS_PER_MINUTE,
    PARTITION_NS,
    WINDOW_NS,
    IndexTrade,
    IndexWindow,
    compute_index,
    weighted_median,
)

M = 1_000 * 60 * NS_PER_MINUTE   # a whole minute
START = M - WINDOW_NS


def d(text: str) -> Decimal:
    return Decimal(text)


def at(partition: int, offset_s: int = 0) -> int:
    return START + partition * PARTITION_NS + offset_s * 1_000_000_000


def test_weighted_median_is_the_lowest_price_reaching_half_the_volume() -> None:
    assert weighted_median([]) is None
    assert weighted_median([(d("2"), 0)]) is None
    assert weighted_median([(d("2.5"), 7)]) == d("2.5")
    # Cumulative 1, 2, 3, 4 of 4: half (2) is first reached at 2.
    assert weighted_median([(d("4"), 1), (d("1"), 1), (d("3"), 1), (d("2"), 1)]) == d("2")
    # Volume dominates: 10 of 13 at 3.
    assert weighted_median([(d("1"), 1), (d("3"), 10), (d("9"), 2)]) == d("3")
    # Exactly half below: the lower price (no interpolation).
    assert weighted_median([(d("1.10"), 5), (d("1.20"), 5)]) == d("1.10")


def test_known_trades_give_the_documented_value() -> None:
    trades = [
        # partition 0: VW-median 2.00 (volume 30)
        IndexTrade(at(0, 10), d("1.90"), 10), IndexTrade(at(0, 20), d("2.00"), 15), IndexTrade(at(0, 30), d("2.40"), 5),
        # partition 3: VW-median 2.10 (volume 40)
        IndexTrade(at(3), d("2.10"), 40),
        # partition 11: VW-median 2.20 (volume 20): 2.20 x 12 reaches half of 20 before 2.30 x 8
        IndexTrade(at(11, 299), d("2.30"), 8), IndexTrade(at(11, 1), d("2.20"), 12),
        # outside the window: before the hour, and at the minute itself (belongs to the next value)
        IndexTrade(START - 1, d("100"), 1_000), IndexTrade(M, d("100"), 1_000),
    ]
    value = compute_index(trades, M)
    # partition medians 2.00 (30), 2.10 (40), 2.20 (20): total 90, cumulative 30, 70 >= 45 -> 2.10
    assert value.value == d("2.10")
    assert (value.ts_ns, value.trades, value.volume) == (M, 6, 90)


def test_one_outlier_print_does_not_move_it() -> None:
    base = [IndexTrade(at(p, 30), d("2.00") + Decimal(p) / 100, 40 if p == 5 else 16) for p in range(12)]
    before = compute_index(base, M).value
    assert before == d("2.05")
    # A one-GPU-hour print at 50x the price, inside a busy partition and alone in a partition.
    for outlier in (IndexTrade(at(4, 40), d("100.00"), 1), IndexTrade(at(7, 1), d("0.01"), 1)):
        assert compute_index([*base, outlier], M).value == before
    lonely = [IndexTrade(at(0), d("2.00"), 60), IndexTrade(at(5), d("2.05"), 50), IndexTrade(at(9), d("999"), 2)]
    assert compute_index(lonely, M).value == d("2.00")


def test_an_empty_hour_is_none() -> None:
    assert compute_index([], M).value is None
    stale = compute_index([IndexTrade(START - 1, d("2"), 10)], M)
    assert (stale.value, stale.trades, stale.volume) == (None, 0, 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-30, 150), st.integers(0, 59), st.integers(180, 260), st.integers(0, 50)),
                max_size=120),
       st.lists(st.integers(0, 130), min_size=1, max_size=6))
def test_the_minute_aggregated_window_equals_the_reference_computation(
        raw: list[tuple[int, int, int, int]], minutes: list[int]) -> None:
    """IndexWindow (what the feed publishes, O(prices)) == compute_index (the definition, O(trades)) at
    every minute asked, in increasing order, over trades before, inside and after the windows."""
    trades = [IndexTrade(START + minute * NS_PER_MINUTE + second * 1_000_000_000, Decimal(cents) / 100, volume)
              for minute, second, cents, volume in raw]
    window = IndexWindow()
    for trade in trades:
        window.add(trade.ts_ns, trade.price, trade.volume)
    for minute in sorted(set(minutes)):
        at_minute = START + WINDOW_NS + minute * NS_PER_MINUTE - 60 * NS_PER_MINUTE
        assert window.value(at_minute) == compute_index(trades, at_minute)
