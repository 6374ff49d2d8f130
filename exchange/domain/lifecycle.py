"""The order lifecycle as an explicit, table-driven state machine.

Every status change in the core goes through `TRANSITIONS`; an action that the table does not allow
from the current status is a bug, and raises `IllegalTransition` instead of corrupting state.
A rejected order never becomes an `Order`, so REJECTED is a wire status only (see `wire_status`).
"""

from __future__ import annotations

from enum import IntEnum
from types import MappingProxyType

from exchange.domain.errors import IllegalTransition


class OrderStatus(IntEnum):
    NEW = 0               # created, not yet through the book
    OPEN = 1              # resting, nothing filled
    PARTIALLY_FILLED = 2  # resting or matching, some filled
    FILLED = 3            # terminal
    CANCELLED = 4         # terminal (possibly after partial fills)
    EXPIRED = 5           # terminal (GTD reached its time)


class OrderAction(IntEnum):
    REST = 0          # joins the book
    FILL_PART = 1
    FILL_FULL = 2
    CANCEL = 3        # remainder cancelled (request, IOC/FOK remainder, STP, termination)
    EXPIRE = 4
    AMEND = 5         # price/quantity change (priority kept or lost)
    REDUCE = 6        # part of the remainder cancelled, the rest stays (STP decrement)


S, A = OrderStatus, OrderAction

# (from status, action) -> to status. Anything missing is illegal.
TRANSITIONS: MappingProxyType[tuple[OrderStatus, OrderAction], OrderStatus] = MappingProxyType({
    (S.NEW, A.REST): S.OPEN,
    (S.NEW, A.FILL_PART): S.PARTIALLY_FILLED,
    (S.NEW, A.FILL_FULL): S.FILLED,
    (S.NEW, A.CANCEL): S.CANCELLED,
    (S.NEW, A.REDUCE): S.NEW,
    (S.OPEN, A.REST): S.OPEN,  # requeued by an amend that lost priority
    (S.OPEN, A.FILL_PART): S.PARTIALLY_FILLED,
    (S.OPEN, A.FILL_FULL): S.FILLED,
    (S.OPEN, A.CANCEL): S.CANCELLED,
    (S.OPEN, A.EXPIRE): S.EXPIRED,
    (S.OPEN, A.AMEND): S.OPEN,
    (S.OPEN, A.REDUCE): S.OPEN,
    (S.PARTIALLY_FILLED, A.REST): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, A.FILL_PART): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, A.FILL_FULL): S.FILLED,
    (S.PARTIALLY_FILLED, A.CANCEL): S.CANCELLED,
    (S.PARTIALLY_FILLED, A.EXPIRE): S.EXPIRED,
    (S.PARTIALLY_FILLED, A.AMEND): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, A.REDUCE): S.PARTIALLY_FILLED,
})

TERMINAL: frozenset[OrderStatus] = frozenset({S.FILLED, S.CANCELLED, S.EXPIRED})
assert not any(status in TERMINAL for status, _ in TRANSITIONS), "no exit from a terminal state"

# The same table as nested dicts of plain ints: the matching loop's lookup is two dict probes.
NEXT: dict[int, dict[int, OrderStatus]] = {}
for (_from, _action), _to in TRANSITIONS.items():
    NEXT.setdefault(int(_from), {})[int(_action)] = _to
for _status in OrderStatus:
    NEXT.setdefault(int(_status), {})


def next_status(status: int, action: int) -> OrderStatus:
    """The status after `action`, or `IllegalTransition`."""
    try:
        return NEXT[status][action]
    except KeyError:
        raise IllegalTransition(
            f"order in status {OrderStatus(status).name} cannot {OrderAction(action).name}"
        ) from None


WIRE_STATUS: MappingProxyType[OrderStatus, str] = MappingProxyType({
    # CCXT-style statuses clients expect.
    S.NEW: "open",
    S.OPEN: "open",
    S.PARTIALLY_FILLED: "open",
    S.FILLED: "closed",
    S.CANCELLED: "canceled",
    S.EXPIRED: "expired",
})
