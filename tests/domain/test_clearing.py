"""Daily settlement arithmetic (rulebook §6): settlement price tiers, variation margin, margin calls.

Prices are in ticks of $0.005 (480 ticks = $2.40/GPU-hour). Every expected value is worked by hand
in the comment beside it.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.domain.clearing import (
    SettlementInputs,
    SettlementMethod,
    margin_call,
    settlement_price,
    variation_margin_micros,
)

VWAP, LAST, PRIOR = SettlementMethod.VWAP, SettlementMethod.LAST_TRADE, SettlementMethod.PRIOR

# An H100 monthly lot in December: 8 GPUs × 744 hours = 5,952 GPU-hours; tick $0.005 = 5,000 micros.
LOT_GPUH = 8 * 744
TICK_MICROS = 5_000
TICK_LOT_MICROS = LOT_GPUH * TICK_MICROS  # one tick on one lot = 5,952 × 5,000 = 29,760,000 µ$ ($29.76)


def inputs(window: list[tuple[int, int]] | None = None, last: int | None = None, bid: int | None = None,
           ask: int | None = None, prior: int = 480) -> SettlementInputs:
    return SettlementInputs(window_trades=window or [], last_trade_ticks=last, best_bid_ticks=bid,
                            best_ask_ticks=ask, prior_settlement_ticks=prior)


@pytest.mark.parametrize(("case", "given_inputs", "expected"), [
    # -- tier 1: VWAP of the window, rounded to a tick ------------------------------------------------
    ("vwap exact", inputs([(480, 1), (482, 1)]), (481, VWAP)),                # (480 + 482) / 2 = 481
    ("vwap weighted", inputs([(480, 3), (484, 1)]), (481, VWAP)),             # (1440 + 484) / 4 = 481
    ("vwap rounds down", inputs([(480, 2), (481, 1)]), (480, VWAP)),          # 1441 / 3 = 480.33
    ("vwap rounds up", inputs([(480, 1), (481, 2)]), (481, VWAP)),            # 1442 / 3 = 480.67
    ("tie, prior above", inputs([(480, 1), (481, 1)], prior=490), (481, VWAP)),  # 480.5 -> up to 490
    ("tie, prior below", inputs([(480, 1), (481, 1)], prior=470), (480, VWAP)),  # 480.5 -> down to 470
    ("tie, prior = upper", inputs([(480, 1), (481, 1)], prior=481), (481, VWAP)),
    ("tie, prior = lower", inputs([(480, 1), (481, 1)], prior=480), (480, VWAP)),
    ("weighted tie, prior above", inputs([(480, 3), (482, 1)], prior=500), (481, VWAP)),  # 1922 / 4 = 480.5
    ("weighted tie, prior below", inputs([(480, 3), (482, 1)], prior=470), (480, VWAP)),
    ("near a tie, not one", inputs([(479, 1), (480, 2), (482, 1)], prior=500), (480, VWAP)),
    #   (479 + 960 + 482) / 4 = 1921 / 4 = 480.25: nearest tick, the prior does not matter
    ("big weighted", inputs([(480, 3), (482, 1), (481, 2)], prior=470), (481, VWAP)),
    #   (1440 + 482 + 962) / 6 = 2884 / 6 = 480.67
    ("vwap beats last trade and book", inputs([(481, 1)], last=500, bid=490, ask=495), (481, VWAP)),
    # -- tier 2: last trade since the previous settlement, clamped into [bid, ask] --------------------
    ("last inside the book", inputs(last=485, bid=480, ask=490), (485, LAST)),
    ("last below the bid", inputs(last=475, bid=480, ask=490), (480, LAST)),   # clamped up to the bid
    ("last above the ask", inputs(last=495, bid=480, ask=490), (490, LAST)),   # clamped down to the ask
    ("last on the bid", inputs(last=480, bid=480, ask=490), (480, LAST)),
    ("only a bid, last below", inputs(last=475, bid=480), (480, LAST)),
    ("only a bid, last above", inputs(last=495, bid=480), (495, LAST)),        # no ask: no upper bound
    ("only an ask, last above", inputs(last=495, ask=490), (490, LAST)),
    ("only an ask, last below", inputs(last=470, ask=490), (470, LAST)),       # no bid: no lower bound
    ("last, empty book", inputs(last=470), (470, LAST)),
    # -- tier 3: no trade since the previous settlement -----------------------------------------------
    ("no trades", inputs(prior=480), (480, PRIOR)),
    ("no trades, book ignored", inputs(bid=490, ask=495, prior=480), (480, PRIOR)),
])
def test_settlement_price(case: str, given_inputs: SettlementInputs, expected: tuple[int, SettlementMethod]) -> None:
    assert settlement_price(given_inputs) == expected, case


def test_method_is_a_plain_string_on_the_wire() -> None:
    assert settlement_price(inputs(last=485))[1] == "last_trade"


@pytest.mark.parametrize(("bad", "message"), [
    (inputs(last=485, bid=490, ask=490), "crossed or locked"),
    (inputs(last=485, bid=491, ask=490), "crossed or locked"),
    (inputs([(480, 0)]), "positive price and size"),
    (inputs([(0, 1)]), "positive price and size"),
    (inputs(prior=0), "positive"),
])
def test_bad_settlement_inputs(bad: SettlementInputs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settlement_price(bad)


@pytest.mark.parametrize(("case", "settle", "prior_settle", "prior_lots", "trades", "tick_lots"), [
    # VM = Σ (S − p) × signed lots + prior lots × (S − S_prior), in tick-lots; × 29,760,000 µ$ each
    ("bought today only", 481, 480, 0, [(478, 2)], 6),                     # (481 − 478) × 2 = 6
    ("sold today only", 481, 480, 0, [(484, -3)], 9),                      # (481 − 484) × −3 = 9
    ("sold today, a loss", 481, 480, 0, [(479, -3)], -6),                  # (481 − 479) × −3 = −6
    ("prior long only", 481, 480, 5, [], 5),                               # 5 × (481 − 480) = 5
    ("prior short only", 481, 480, -5, [], -5),                            # −5 × (481 − 480) = −5
    ("prior short, price falls", 478, 480, -4, [], 8),                     # −4 × (478 − 480) = 8
    ("prior and today", 481, 480, 2, [(483, -1), (479, 3)], 10),
    #   2 × 1 + (481 − 483) × −1 + (481 − 479) × 3 = 2 + 2 + 6 = 10
    ("short adds to short", 485, 480, -1, [(482, -2)], -11),
    #   −1 × 5 + (485 − 482) × −2 = −5 − 6 = −11
    ("round trip today", 481, 480, 0, [(478, 2), (483, -2)], 10),
    #   (481 − 478) × 2 + (481 − 483) × −2 = 6 + 4 = 10: bought at 478, sold at 483, whatever S
    ("flat, no trades", 481, 480, 0, [], 0),
    ("unchanged price", 480, 480, 7, [], 0),
])
def test_variation_margin(case: str, settle: int, prior_settle: int, prior_lots: int,
                          trades: list[tuple[int, int]], tick_lots: int) -> None:
    assert variation_margin_micros(settle, prior_settle, prior_lots, trades, LOT_GPUH, TICK_MICROS) \
        == tick_lots * TICK_LOT_MICROS, case


def test_variation_margin_in_dollars() -> None:
    # Long 1 lot from yesterday's 2.400 to today's 2.405: 5,952 GPU-hours × $0.005 = $29.76.
    assert variation_margin_micros(481, 480, 1, [], LOT_GPUH, TICK_MICROS) == 29_760_000


@pytest.mark.parametrize(("cash", "required", "expected"), [
    (750_000, 1_000_000, False),   # exactly 75% of IM: not a call
    (749_999, 1_000_000, True),    # just below 75%
    (750_001, 1_000_000, False),
    (2, 3, True),                  # 0.75 × 3 = 2.25 > 2, compared exactly (no rounding of 2.25 to 2)
    (3, 3, False),
    (0, 0, False),                 # nothing required, nothing held
    (-1, 0, True),                 # a debit balance is below 75% of zero
    (-1, 1_000_000, True),
])
def test_margin_call(cash: int, required: int, expected: bool) -> None:
    assert margin_call(cash, required, Decimal("0.75")) is expected


# -- property: variation margin is a zero-sum transfer --------------------------------------------------

ACCOUNTS = st.integers(1, 6)
PRICE = st.integers(1, 2_000)


@given(
    prior_moves=st.lists(st.tuples(ACCOUNTS, ACCOUNTS, st.integers(1, 50)), max_size=10),
    trades=st.lists(st.tuples(ACCOUNTS, ACCOUNTS, PRICE, st.integers(1, 500)), max_size=30),
    settle=PRICE, prior_settle=PRICE,
    lot_gpuh=st.sampled_from([24, 8 * 168, 8 * 744, 72 * 720]), tick=st.sampled_from([5_000, 1, 10_000]),
)
def test_variation_margin_sums_to_zero(
    prior_moves: list[tuple[int, int, int]], trades: list[tuple[int, int, int, int]],
    settle: int, prior_settle: int, lot_gpuh: int, tick: int,
) -> None:
    # Prior positions built from (long, short, lots) pairs, so they sum to zero.
    prior: dict[int, int] = {}
    for long, short, lots in prior_moves:
        prior[long] = prior.get(long, 0) + lots
        prior[short] = prior.get(short, 0) - lots
    fills: dict[int, list[tuple[int, int]]] = {}
    for buyer, seller, price, lots in trades:
        fills.setdefault(buyer, []).append((price, lots))
        fills.setdefault(seller, []).append((price, -lots))
    accounts = set(prior) | set(fills)
    total = sum(variation_margin_micros(settle, prior_settle, prior.get(a, 0), fills.get(a, []), lot_gpuh, tick)
                for a in accounts)
    assert total == 0


@given(st.lists(st.tuples(PRICE, st.integers(1, 500)), min_size=1, max_size=20), PRICE)
def test_vwap_settles_within_the_traded_range(window: list[tuple[int, int]], prior: int) -> None:
    price, method = settlement_price(inputs(window, prior=prior))
    assert method is VWAP
    assert min(p for p, _ in window) <= price <= max(p for p, _ in window)
