"""A canonical dump of the core's whole state and its SHA-256.

Two engines that applied the same commands at the same times must produce the same hash, in any
process and with any PYTHONHASHSEED: the dump walks dicts in insertion order (deterministic, since
every insertion follows the command order) or sorted, never a set, and writes only ints, strings,
bools, None and Decimals through `repr`. Values, not Python types, are hashed: an enum member
and the plain int or str it stands for hash alike (`_canonical`), so a command that arrived with
plain ints and the same command decoded from the journal with enums give one hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import fields, is_dataclass
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any

from exchange.domain.book import BUY, SELL
from exchange.domain.order import Order

if TYPE_CHECKING:
    from exchange.domain.engine import Engine


def _canonical(value: Any) -> Any:
    """Plain values only: enums as their int/str value, tuples and dataclasses as tuples."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return tuple(_canonical(v) for v in value)
    if is_dataclass(value) and not isinstance(value, type):
        return tuple(_canonical(getattr(value, f.name)) for f in fields(value))
    if isinstance(value, Decimal):
        return str(value)
    return value


def _order(o: Order) -> tuple[Any, ...]:
    return (o.order_id, o.account_id, o.symbol, int(o.side), o.price_ticks, o.quantity_lots,
            o.remaining_lots, o.filled_lots, o.cancelled_lots, int(o.status), int(o.tif), bool(o.post_only),
            int(o.stp), o.client_order_id, o.expire_ts_ns)


def state_dump(engine: Engine, include_counters: bool = True, with_windows: bool = True) -> dict[str, Any]:
    """Everything that defines the core's behaviour from here on, as plain comparable values.

    `include_counters=False` leaves out the event sequence number and the command count, the only
    things a rejected command is allowed to change. `with_windows=False`: the state as it was hashed
    before the 24 h idempotency windows existed (snapshot format 3, checked before it is migrated).
    """
    dump: dict[str, Any] = {
        "limits": engine.limits.max_open_orders_per_account,
        "next_order_id": engine.next_order_id,
        "ts_ns": engine.stamp.ts_ns,
        "series": [
            (symbol, _canonical(s.spec), s.reference_price_ticks, s.halted, s.terminated, s.book.trade_count,
             [_order(o) for o in s.book.orders(BUY)], [_order(o) for o in s.book.orders(SELL)],
             sorted((date_ns, _canonical(settlement)) for date_ns, settlement in s.settlements.items()),
             s.delivery_ids)
            for symbol, s in sorted(engine.series.items())
        ],
        "deliveries": [_canonical(d) for _, d in sorted(engine.deliveries.items())],
        "accounts": [
            (account_id, a.enabled, a.margin_micros, a.cancel_all_at_ns, sorted(a.orders),
             [(symbol, e.position_lots, e.open_buy_lots, e.open_sell_lots, e.margin_micros,
               e.entry_cost_ticks) for symbol, e in sorted(a.exposures.items())])
            for account_id, a in sorted(engine.accounts.items())
        ],
        "ledger": sorted(engine.ledger.balances.items()),
        "ledger_postings": engine.ledger.postings,
        "client_orders": sorted((key, _canonical(cmd), order_id, _canonical(events))
                                for key, (cmd, order_id, events) in engine.client_orders.items()),
        "expiries": sorted((ts, oid) for ts, oid in engine._expiries if oid in engine.orders),
        "terminations": sorted(engine._terminations),
        # the live entries only (stale ones are skipped when popped), once each
        "dead_mans": sorted({(ts, account_id) for ts, account_id in engine._dead_mans
                             if engine.accounts[account_id].cancel_all_at_ns == ts}),
        "next_deadline_ns": engine._next_deadline_ns,
    }
    if with_windows:
        dump["client_order_queue"] = list(engine.client_order_queue)
        dump["client_orders_lingering"] = sorted(engine.client_orders_lingering.items())
        dump["cash_references"] = [(key, _canonical(cmd), ts) for key, (cmd, ts) in engine.cash_references.items()]
    if include_counters:
        dump["seq"] = engine.stamp.seq
        dump["commands_applied"] = engine.commands_applied
    return dump


def state_hash(engine: Engine, with_windows: bool = True) -> str:
    return hashlib.sha256(repr(state_dump(engine, with_windows=with_windows)).encode()).hexdigest()
