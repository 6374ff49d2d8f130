"""Which series to trade now: `nearest_symbol(client.series(limit=500)["items"], "H100-M40")`.

The same rule as `exchange series --product P --nearest` and the demo market (exchange/catalog/
nearest.py), applied to the series the API lists: the series of the product whose trading ends first,
with at least 15 minutes of trading left, daily first on a tie. Examples that name a dated symbol stop
working the day it stops trading; this never does."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from exchange.catalog.nearest import TRADING_LEFT_NS_MIN


def nearest_symbol(series: Iterable[Mapping[str, Any]], product: str, now_ns: int | None = None) -> str:
    """The symbol to trade for `product` among `series` (the items of GET /v1/series); ValueError if none."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    open_ = [s for s in series if s.get("product") == product and not s.get("halted") and not s.get("terminated")
             and int(s.get("trading_end_ns", 0)) > now_ns + TRADING_LEFT_NS_MIN]
    if not open_:
        raise ValueError(f"no series of {product} trades now (is the product listed? GET /v1/products)")
    best = min(open_, key=lambda s: (int(s["trading_end_ns"]), s.get("period") != "daily", str(s["symbol"])))
    return str(best["symbol"])
