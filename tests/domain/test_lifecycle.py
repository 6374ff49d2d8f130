"""The order lifecycle table: what is allowed, and that nothing leaves a terminal state."""

from __future__ import annotations

import pytest

from exchange.domain.errors import IllegalTransition
from exchange.domain.lifecycle import (
    TERMINAL,
    TRANSITIONS,
    WIRE_STATUS,
    OrderAction,
    OrderStatus,
    next_status,
)

S, A = OrderStatus, OrderAction


@pytest.mark.parametrize(("status", "action", "expected"), [
    (S.NEW, A.REST, S.OPEN),
    (S.NEW, A.FILL_FULL, S.FILLED),
    (S.OPEN, A.FILL_PART, S.PARTIALLY_FILLED),
    (S.PARTIALLY_FILLED, A.FILL_FULL, S.FILLED),
    (S.PARTIALLY_FILLED, A.CANCEL, S.CANCELLED),
    (S.OPEN, A.EXPIRE, S.EXPIRED),
    (S.PARTIALLY_FILLED, A.AMEND, S.PARTIALLY_FILLED),
])
def test_allowed(status: OrderStatus, action: OrderAction, expected: OrderStatus) -> None:
    assert next_status(status, action) is expected


@pytest.mark.parametrize("status", sorted(TERMINAL))
@pytest.mark.parametrize("action", list(OrderAction))
def test_no_exit_from_a_terminal_state(status: OrderStatus, action: OrderAction) -> None:
    with pytest.raises(IllegalTransition, match=status.name):
        next_status(status, action)


def test_new_orders_cannot_expire_and_every_status_has_a_wire_name() -> None:
    assert (S.NEW, A.EXPIRE) not in TRANSITIONS
    assert set(WIRE_STATUS) == set(OrderStatus)
    assert {WIRE_STATUS[s] for s in TERMINAL} == {"closed", "canceled", "expired"}
