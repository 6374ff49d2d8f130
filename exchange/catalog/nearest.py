"""The nearest series of a product: what a newcomer (and the demo market) trades now.

The daily series whose trading ends first, among those with at least `TRADING_LEFT_NS_MIN` of trading
left (a series about to stop at the 16:00 UTC cut is a poor first trade); on a tie, daily first. The
demo market trades exactly these, so an order sent to the nearest series meets the demo's quotes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from exchange.domain.spec import PeriodKind, SeriesSpec

TRADING_LEFT_NS_MIN: Final = 15 * 60 * 1_000_000_000   # 15 minutes


def nearest_series(specs: Iterable[SeriesSpec], product: str, now_ns: int,
                   daily_only: bool = False) -> SeriesSpec | None:
    candidates = [spec for spec in specs if spec.product == product
                  and spec.trading_end_ns > now_ns + TRADING_LEFT_NS_MIN
                  and (not daily_only or spec.period is PeriodKind.DAILY)]
    if not candidates:
        return None
    return min(candidates, key=lambda spec: (spec.trading_end_ns, spec.period is not PeriodKind.DAILY, spec.symbol))
