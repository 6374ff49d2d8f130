"""Whole-state invariant checks, run by the engine itself (`Engine.audit`) on a schedule the
service chooses, and by the tests after every step. Each failure names what broke."""

from __future__ import annotations

from typing import TYPE_CHECKING

from exchange.domain.book import BUY, NO_ASK, NO_BID, SELL
from exchange.domain.errors import InvariantViolation
from exchange.domain.ledger import SETTLEMENT, SYSTEM_ACCOUNTS
from exchange.domain.lifecycle import TERMINAL

if TYPE_CHECKING:
    from exchange.domain.engine import Engine


def _fail(message: str) -> None:
    raise InvariantViolation(message)


def audit_engine(engine: Engine) -> None:
    live_in_books: dict[int, int] = {}
    open_lots: dict[tuple[int, str, int], int] = {}
    for symbol, series in engine.series.items():
        book = series.book
        band = (series.band_low_ticks, series.band_high_ticks)
        if band != series.spec.price_band_ticks(series.reference_price_ticks):
            _fail(f"{symbol}: band {band} does not follow the reference price {series.reference_price_ticks}")
        if not book.best_bid < book.best_ask:
            _fail(f"{symbol}: book crossed at rest ({book.best_bid} >= {book.best_ask})")
        for side, levels, prices, best, empty in (
            (BUY, book.bids, book._bid_prices, book.best_bid, NO_BID),
            (SELL, book.asks, book._ask_prices, book.best_ask, NO_ASK),
        ):
            if list(prices) != sorted(levels):
                _fail(f"{symbol}: price index {list(prices)} != levels {sorted(levels)}")
            expected_best = (max(levels) if side == BUY else min(levels)) if levels else empty
            if best != expected_best:
                _fail(f"{symbol}: cached best {best} != {expected_best}")
            for price, level in levels.items():
                live = [o for o in level.orders if o.remaining_lots]
                if level.live != len(live) or level.live == 0:
                    _fail(f"{symbol} {price}: level count {level.live} != {len(live)} live orders")
                if level.total_lots != sum(o.remaining_lots for o in live):
                    _fail(f"{symbol} {price}: level total {level.total_lots} != sum of its orders")
                for order in live:
                    if order.price_ticks != price or order.side != side or order.symbol != symbol:
                        _fail(f"{order!r} sits in the wrong level {symbol} {side} {price}")
                    if not series.band_low_ticks <= price <= series.band_high_ticks:
                        # Rulebook §4 v2: what rests is tradeable, and no trade prints outside the band.
                        _fail(f"{order!r} rests outside the band {series.band_low_ticks}..{series.band_high_ticks}")
                    if engine.orders.get(order.order_id) is not order:
                        _fail(f"{order!r} is in the book but not the live order index")
                    live_in_books[order.order_id] = order.order_id
                    key = (order.account_id, symbol, side)
                    open_lots[key] = open_lots.get(key, 0) + order.remaining_lots
    if len(live_in_books) != len(engine.orders):
        _fail(f"{len(engine.orders)} live orders indexed but {len(live_in_books)} in books")
    for order in engine.orders.values():
        if not order.quantities_add_up():
            _fail(f"{order!r}: filled + remaining + cancelled != quantity")
        if order.status in TERMINAL or order.remaining_lots <= 0:
            _fail(f"{order!r}: terminal or empty order still live")
        if engine.accounts[order.account_id].orders.get(order.order_id) is not order:
            _fail(f"{order!r}: missing from its account's order list")
    positions: dict[str, int] = {}
    for account_id, account in engine.accounts.items():
        if any(o.account_id != account_id for o in account.orders.values()):
            _fail(f"account {account_id} lists another account's order")
        if len(account.orders) > engine.limits.max_open_orders_per_account:
            _fail(f"account {account_id} has more open orders than allowed")
        margin_total = 0
        for symbol, exposure in account.exposures.items():
            series = engine.series[symbol]
            for side, held in ((BUY, exposure.open_buy_lots), (SELL, exposure.open_sell_lots)):
                actual = open_lots.get((account_id, symbol, side), 0)
                if held != actual:
                    _fail(f"account {account_id} {symbol} side {side}: open lots {held} != orders {actual}")
            required = series.im_per_lot_micros * exposure.worst_lots()
            if exposure.margin_micros != required:
                _fail(f"account {account_id} {symbol}: margin held {exposure.margin_micros} != required {required}")
            margin_total += required
            positions[symbol] = positions.get(symbol, 0) + exposure.position_lots
            if (exposure.position_lots == 0) != (exposure.entry_cost_ticks == 0):
                _fail(f"account {account_id} {symbol}: entry cost {exposure.entry_cost_ticks} does not match "
                      f"position {exposure.position_lots}")
        if account.margin_micros != margin_total:
            _fail(f"account {account_id}: margin {account.margin_micros} != sum over series {margin_total}")
    for symbol, net in positions.items():
        if net != 0:
            _fail(f"{symbol}: positions sum to {net}, not zero")
    heads = [heap[0][0] for heap in (engine._expiries, engine._terminations, engine._dead_mans) if heap]
    if heads and engine._next_deadline_ns > min(heads):
        _fail(f"next deadline {engine._next_deadline_ns} is after a pending one at {min(heads)}")
    dead_mans = set(engine._dead_mans)
    for account_id, account in engine.accounts.items():
        deadline = account.cancel_all_at_ns
        if deadline and deadline <= engine.stamp.ts_ns:
            _fail(f"account {account_id}: dead man's switch at {deadline} passed without firing")
        if deadline and (deadline, account_id) not in dead_mans:
            _fail(f"account {account_id}: dead man's switch at {deadline} is not scheduled")
    if engine.ledger.total() != 0:
        _fail(f"ledger sums to {engine.ledger.total()}, not zero")
    if set(engine.ledger.balances) != set(engine.accounts) | set(SYSTEM_ACCOUNTS):
        _fail("ledger accounts are not exactly the engine's accounts and the system accounts")
    _audit_settlement(engine)


def _audit_settlement(engine: Engine) -> None:
    """Settlements, deliveries and the SETTLEMENT ledger account agree with each other."""
    from exchange.domain.engine import MICRO_GPUH_PER_GPUH, NS_PER_DAY

    variation_margin = 0
    assigned: list[str] = []
    for symbol, series in engine.series.items():
        for date_ns, settlement in series.settlements.items():
            if date_ns % NS_PER_DAY or date_ns > series.final_settlement_day_ns or settlement.price_ticks <= 0:
                _fail(f"{symbol}: settlement at {date_ns} is not a valid settlement day and price")
            accounts = [account_id for account_id, _ in settlement.postings]
            if accounts != sorted(set(accounts)) or not set(accounts) <= set(engine.accounts):
                _fail(f"{symbol} {date_ns}: settlement postings are not one per known account, ascending")
            variation_margin += sum(vm for _, vm in settlement.postings)
        reference = (series.settlements[max(series.settlements)].price_ticks if series.settlements
                     else series.spec.reference_price_ticks)
        if series.reference_price_ticks != reference:
            _fail(f"{symbol}: reference price {series.reference_price_ticks} is not the latest settlement {reference}")
        if series.delivery_ids is None:
            continue
        final = series.settlements.get(series.final_settlement_day_ns)
        if not series.terminated or final is None:
            _fail(f"{symbol}: deliveries assigned before termination and final settlement")
            continue
        for account_id, account in engine.accounts.items():
            exposure = account.exposures.get(symbol)
            if exposure is not None and exposure.position_lots:
                _fail(f"account {account_id} {symbol}: position {exposure.position_lots} left after assignment")
        spec = series.spec
        for number, delivery_id in enumerate(series.delivery_ids, 1):
            delivery = engine.deliveries.get(delivery_id)
            if delivery is None or delivery_id != f"{symbol}/{number}" or delivery.symbol != symbol:
                _fail(f"{symbol}: delivery {delivery_id} is missing or misnumbered")
                continue
            if (delivery.lots <= 0 or delivery.gpus != delivery.lots * spec.gpus_per_lot
                    or delivery.gpu_hours != delivery.gpus * spec.delivery_hours
                    or delivery.fsp_ticks != final.price_ticks or delivery.seller == delivery.buyer
                    or delivery.seller not in engine.accounts or delivery.buyer not in engine.accounts):
                _fail(f"{delivery!r} does not fit its series")
            settled = delivery.settlement
            if settled is not None and not (
                    0 <= settled.effective_micro_gpuh <= delivery.gpu_hours * MICRO_GPUH_PER_GPUH
                    and 0 <= settled.invoice_micros <= delivery.fsp_ticks * spec.tick_micros * delivery.gpu_hours
                    and settled.damages_micros >= 0):
                _fail(f"{delivery!r}: settlement amounts out of range")
        assigned.extend(series.delivery_ids)
    if sorted(assigned) != sorted(engine.deliveries):
        _fail(f"{len(engine.deliveries)} deliveries known but {len(assigned)} assigned by their series")
    if engine.ledger.balances[SETTLEMENT] != -variation_margin:
        _fail(f"settlement account holds {engine.ledger.balances[SETTLEMENT]}, "
              f"not minus the variation margin posted ({variation_margin})")
