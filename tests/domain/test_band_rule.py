"""Rulebook §4 v2: no trade ever prints outside the band in force, and an amend never takes an
order's total (filled + open) above the per-order maximum.

The reference price is 480 ticks ($2.40), so the band starts at 432..528; a daily settlement at 430
moves it to 387..473, leaving a bid at 480 and an ask at 528 outside."""

from __future__ import annotations

from typing import Any

from exchange.domain.codes import CancelReason, RejectCode
from exchange.domain.commands import AmendOrder, SettleDaily
from exchange.domain.events import DailySettlement, OrderCancelled, Rejected, Trade
from exchange.domain.units import NS_PER_SECOND
from tests.domain.market import Market, summary

DAY_NS = 86_400 * NS_PER_SECOND
DIGEST = "d" * 64


def _settle(market: Market, price_ticks: int) -> list[Any]:
    date_ns = market.now // DAY_NS * DAY_NS
    return market.do(SettleDaily(market.spec.symbol, date_ns, price_ticks, (), DIGEST))


def test_a_reference_move_cancels_resting_orders_outside_the_new_band_in_order_id_order() -> None:
    market = Market()
    market.sell(2, 3, 528)          # #1: at the old band's top edge, above the new band
    market.buy(1, 2, 480)           # #2: above the new band's top (473)
    market.buy(3, 1, 440)           # #3: inside both bands, stays
    events = _settle(market, 430)
    assert isinstance(events[0], DailySettlement)
    cancels = [e for e in events if isinstance(e, OrderCancelled)]
    assert [(e.order_id, e.cancelled_lots, e.reason) for e in cancels] == [
        (1, 3, CancelReason.OUTSIDE_BAND), (2, 2, CancelReason.OUTSIDE_BAND)]
    series = market.engine.series[market.spec.symbol]
    assert (series.band_low_ticks, series.band_high_ticks) == (387, 473)
    assert market.book() == ([(3, 440, 1)], [])
    market.engine.audit()  # margin and open lots released with the cancels


def test_a_market_order_after_a_reference_move_never_prints_outside_the_band() -> None:
    """Today's main printed the market sell at 480, outside the new band 387..473."""
    market = Market()
    market.buy(1, 5, 480)
    _settle(market, 430)
    events = market.sell(2, 5, None, tif="ioc")
    trades = [e for e in events if isinstance(e, Trade)]
    assert trades == []
    assert summary(events)[-1] == "cancelled #2 5 ioc_remainder"


def test_orders_inside_the_new_band_keep_trading_at_their_price() -> None:
    market = Market()
    market.buy(1, 5, 470)
    _settle(market, 430)
    events = market.sell(2, 2, None, tif="ioc")
    assert [(e.price_ticks, e.qty_lots) for e in events if isinstance(e, Trade)] == [(470, 2)]


def test_an_amend_cannot_take_filled_plus_open_above_the_order_maximum() -> None:
    market = Market()
    maximum = market.spec.max_order_lots
    market.buy(1, maximum, 480)                 # #1
    market.sell(2, 100, 480)                    # 100 filled, maximum - 100 open
    events = market.do(AmendOrder(1, 1, None, maximum))
    assert isinstance(events[0], Rejected) and events[0].code == RejectCode.ORDER_TOO_LARGE
    assert "100 lots already filled" in events[0].message
    # up to the maximum in total is fine, and so is any reduction
    assert summary(market.do(AmendOrder(1, 1, None, maximum - 100 - 1)))[0].startswith("amended #1")
    assert summary(market.do(AmendOrder(1, 1, None, maximum - 100)))[0].startswith("amended #1")
    assert summary(market.do(AmendOrder(1, 1, None, 1)))[0].startswith("amended #1")


def test_a_resting_order_can_be_reduced_while_its_series_is_halted() -> None:
    """Rulebook §4 v2: reducing the quantity of any resting order is always allowed."""
    from exchange.domain.commands import HaltSeries

    market = Market()
    market.buy(1, 10, 480)                      # #1
    market.do(HaltSeries(market.spec.symbol, True))
    assert summary(market.do(AmendOrder(1, 1, None, 4)))[0] == "amended #1 4@480 kept priority"
    for refused in (AmendOrder(1, 1, None, 6), AmendOrder(1, 1, 481, None), AmendOrder(1, 1, 479, 2)):
        events = market.do(refused)
        assert isinstance(events[0], Rejected) and events[0].code == RejectCode.SERIES_HALTED
    market.engine.audit()
