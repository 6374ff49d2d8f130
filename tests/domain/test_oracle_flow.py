"""The fast engine against the reference on long seeded command streams (exchange.testing.flow).

Complements the Hypothesis machine: longer histories, deeper books, more accounts, GTD expiries, dead
man's switches and retries by client order id, compared after every command.
"""

from __future__ import annotations

from typing import Any

import pytest

from exchange.domain.book import BUY, SELL
from exchange.domain.engine import Engine
from exchange.domain.events import DeadMansSwitchFired, Rejected, Trade
from exchange.testing.flow import random_commands
from exchange.testing.reference import ReferenceEngine


def _normalise(events: list[Any]) -> list[Any]:
    return [e._replace(message="", details=()) if isinstance(e, Rejected) else e for e in events]


@pytest.mark.parametrize("seed", range(12))
def test_fast_engine_matches_reference(seed: int) -> None:
    fast, ref = Engine(), ReferenceEngine()
    trades = switches_fired = 0
    for step, (command, ts) in enumerate(random_commands(seed, 1_500)):
        got, want = fast.apply(command, ts), ref.apply(command, ts)
        assert _normalise(got) == _normalise(want), f"seed {seed} step {step}: {command}"
        trades += sum(1 for e in got if isinstance(e, Trade))
        switches_fired += sum(1 for e in got if isinstance(e, DeadMansSwitchFired) and e.cancelled)
        if step % 50 == 0:
            fast.audit()
            for symbol in fast.series:
                for side in (BUY, SELL):
                    orders = fast.series[symbol].book.orders(side)
                    assert [(o.order_id, o.price_ticks, o.remaining_lots) for o in orders] == ref.book(symbol, side)
            for account_id, account in fast.accounts.items():
                assert fast.cash_micros(account_id) == ref.cash[account_id]
                assert account.margin_micros == ref.margin(account_id)
                assert account.cancel_all_at_ns == ref.cancel_all_at.get(account_id, 0)
    fast.audit()
    assert trades > 20, "the stream should trade"
    assert switches_fired > 5, "the stream should fire dead man's switches"
