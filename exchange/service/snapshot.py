"""Snapshots of the core's whole state, so that recovery replays only the journal after them.

An engine restored from a snapshot taken after journal record k, then fed records k+1..n, produces
the same events (seq numbers included) and the same `state_hash` as an engine that applied 1..n.

File layout (all integers little-endian):

    offset  0   8 bytes   magic b"CXSNAP01"
    offset  8   u32       format version (FORMAT_VERSION)
    offset 12   u64       journal seq: the last journal record the state includes
    offset 20   32 bytes  SHA-256 `state_hash` of the engine (raw digest of the hex the core prints)
    offset 52   u64       body length in bytes
    offset 60   32 bytes  SHA-256 of bytes 0..59 followed by the body: covers header and body
    offset 92   body      msgpack map, see `_body` (field names are part of the format)

Reading checks, in this order: magic, version (so that a future layout gets a clear "unknown
version" and not a checksum error), header length, body length (truncation), checksum, body
structure, and finally that the restored engine's `state_hash` equals the recorded one.

What is saved, and why it is enough for exactness: every live order once, with its exact field
types (an order's `side` may be `Side.BUY` or a plain 0, and the events it later appears in are
`repr`ed by the state hash), the priority order of each side of each book as order ids (tombstones
are dropped: the matching loop skips them, so they never change an event), the insertion order of
`Engine.orders` and of each account's orders (mass cancel and the kill switch walk them), every
exposure and ledger balance in dict order, each account's dead man's switch deadline, the client-order-id
table with its commands and original events, its 24 h window (the queue of ids by placement time and
the ids past it whose orders are still open), the cash moves' references, the expiry, termination and
dead man's switch heaps as stored lists (so the heaps are identical, stale entries included), the next
deadline, the counters and
the limits; and the settlement state: each series' daily settlements and delivery ids, and every
delivery with its settlement.

Format versions: 2 added the dead man's switch (a deadline per account row, the "dead_mans" heap).
3 added settlement: per series its daily settlements (date, price, digest, postings, in insertion
order) and its delivery ids (None until assigned), and the engine's deliveries (in assignment order,
each with its settlement or None); the ledger gained the SETTLEMENT system account. 4 added the 24 h
idempotency windows: the client-order-id queue (placed ts, order id, account, client order id) and
lingering ids (order id, account, client order id), and the cash references (account, reference,
command, ts).

**Older formats are migrated, not refused** (a refusal forced a replay of the whole journal). A
version-3 file is read as version 3 and checked against its recorded hash as format 3 hashed
(`state_hash(..., with_windows=False)`), then migrated (`_migrate_v3`): the client-order-id queue is
rebuilt from each entry's original `OrderAccepted` (its placement time and order id), lingering ids
and cash references start empty (format 3 kept no references). The migrated engine behaves exactly
as one replayed from the journal would: the rule that forgets ids depends only on placement times
and open orders, and its first placement after the snapshot leaves both with the same table. Versions
before 3 (no settlement state) and unknown future ones are refused with the version named, so recovery
falls back to an older valid snapshot or the whole journal.

Events and the commands of the client-order-id table use a small exact value codec (`encode_value`):
a stable tag per event class, for PlaceOrder, per enum and for tuples, so a decoded value compares
and `repr`s equal to the original. The journal's command codec is not used for those commands on
purpose: it normalises plain ints to enums, which is right for the journal but would change the
`repr` (hence the state hash) of an engine that was fed non-normalised commands. Series specs do
use the journal codec's encoding (that of a ListSeries command).

The domain stays free of I/O: this module reads engine state and builds engines, and only
`write_snapshot` / `latest_valid_snapshot` touch files.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import re
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, get_args

import msgpack

from exchange.domain.account import Account, Exposure
from exchange.domain.book import BUY, SELL
from exchange.domain.codes import CancelReason, RejectCode
from exchange.domain.commands import Deposit, ListSeries, PlaceOrder, Withdraw
from exchange.domain.engine import Delivery, DeliverySettlement, Engine, EngineLimits, Series, Settlement
from exchange.domain.events import (
    AccountCreated,
    AccountStatusChanged,
    CancelAllAfterSet,
    CashMoved,
    CashMoveDuplicate,
    DailySettlement,
    DeadMansSwitchFired,
    DeliveriesAlreadyAssigned,
    DeliveriesAssigned,
    DeliveryAssigned,
    DeliverySettled,
    DeliverySettlementDuplicate,
    DuplicateOrder,
    Event,
    MassCancelDone,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    Rejected,
    SeriesHaltChanged,
    SeriesListed,
    SettlementDuplicate,
    Trade,
    TradingTerminated,
)
from exchange.domain.lifecycle import OrderStatus
from exchange.domain.order import Order, OrderType, Side, StpMode, TimeInForce
from exchange.domain.spec import PeriodKind, SeriesSpec
from exchange.domain.statehash import state_hash
from exchange.journal.codec import TAGS as COMMAND_TAGS
from exchange.journal.codec import decode_command, encode_command

log = logging.getLogger(__name__)

MAGIC: Final = b"CXSNAP01"
FORMAT_VERSION: Final = 4
READABLE_VERSIONS: Final = (3, 4)   # older formats load through `_migrate_v3` (see the module docstring)
SUFFIX: Final = ".snapshot"
_PREFIX: Final = struct.Struct("<8sI")                 # magic, version: readable in every version
HEADER: Final = struct.Struct("<8sIQ32sQ32s")          # magic, version, journal seq, state hash, body len, sha256
HEADER_BYTES: Final = HEADER.size
_CHECKED_HEADER_BYTES: Final = HEADER_BYTES - 32       # the part of the header the checksum covers
_SEQ_MAX: Final = 2**64 - 1
_NAME = re.compile(r"^(\d{20})\.snapshot$")
assert HEADER_BYTES == 92


class SnapshotError(ValueError):
    """A snapshot that cannot be written or trusted; the message says what is wrong."""


# -- the exact value codec (events, enums, tuples, specs) -------------------------------------
#
# Plain None, bool, int and str pass through (msgpack keeps bool apart from int). Anything else is
# a list [tag, ...]: no plain value is ever a list, so a list is always a tagged value. Tags are part
# of the format: never renumber or reuse one, add new ones.

_TUPLE: Final = 0
_SPEC: Final = 1
_RECORD_TAGS: Final[Mapping[type, int]] = MappingProxyType({
    Rejected: 10, DuplicateOrder: 11, OrderAccepted: 12, Trade: 13, OrderCancelled: 14, OrderAmended: 15,
    OrderExpired: 16, MassCancelDone: 17, AccountCreated: 18, AccountStatusChanged: 19, CashMoved: 20,
    SeriesListed: 21, SeriesHaltChanged: 22, TradingTerminated: 23, CancelAllAfterSet: 24, DeadMansSwitchFired: 25,
    DailySettlement: 26, SettlementDuplicate: 27, DeliveriesAssigned: 28, DeliveryAssigned: 29,
    DeliveriesAlreadyAssigned: 30, DeliverySettled: 31, DeliverySettlementDuplicate: 32, CashMoveDuplicate: 33,
    PlaceOrder: 40,  # the commands of the client-order-id table
})
_ENUM_TAGS: Final[Mapping[type[Enum], int]] = MappingProxyType({
    Side: 60, OrderType: 61, TimeInForce: 62, StpMode: 63, OrderStatus: 64, RejectCode: 65, CancelReason: 66,
    PeriodKind: 67,
})
_ENUM_TAG_MIN: Final = 60
_TAG_OF: dict[type, int] = {**_RECORD_TAGS, **_ENUM_TAGS, tuple: _TUPLE, SeriesSpec: _SPEC}
_RECORDS_BY_TAG: dict[int, type[Any]] = {tag: kind for kind, tag in _RECORD_TAGS.items()}
# tag -> {value: member}: a dict probe is several times cheaper than calling the enum class.
_MEMBERS_BY_TAG: dict[int, dict[Any, Enum]] = {
    tag: {member.value: member for member in kind} for kind, tag in _ENUM_TAGS.items()}
assert set(get_args(Event)) <= set(_RECORD_TAGS), "every event type needs a snapshot tag"
assert len(_TAG_OF) == len(_RECORD_TAGS) + len(_ENUM_TAGS) + 2 == len(set(_TAG_OF.values()))
assert all(tag >= _ENUM_TAG_MIN for tag in _ENUM_TAGS.values()) and all(
    tag < _ENUM_TAG_MIN for tag in _RECORD_TAGS.values())
_LIST_SERIES_TAG: Final = COMMAND_TAGS[ListSeries]


def encode_value(value: Any) -> Any:
    """An exactly reversible msgpack-able form of a value: an event, a command, a tuple of them, or a
    field (decoding gives back equal values of the same types, so `repr`s match too)."""
    kind = type(value)
    if kind is int or kind is str or kind is bool or value is None:
        return value
    tag = _TAG_OF.get(kind)
    if tag is None:
        raise SnapshotError(f"cannot snapshot a value of type {kind.__name__}: {value!r:.80}")
    if tag >= _ENUM_TAG_MIN:
        return [tag, value._value_]
    if tag == _SPEC:
        return [_SPEC, _encode_spec(value)]
    return [tag, *[encode_value(v) for v in value]]


def decode_value(data: Any) -> Any:
    if type(data) is not list:
        if data is None or type(data) in (int, str, bool):
            return data
        raise SnapshotError(f"unexpected {type(data).__name__} in the snapshot body")
    if not data or type(data[0]) is not int:
        raise SnapshotError(f"a tagged value is [tag, ...], not {data!r:.60}")
    tag = data[0]
    members = _MEMBERS_BY_TAG.get(tag)
    if members is not None:
        if len(data) != 2 or data[1] not in members:
            raise SnapshotError(f"bad enum value {data!r:.60}")
        return members[data[1]]
    record = _RECORDS_BY_TAG.get(tag)
    if record is not None:
        fields = [decode_value(v) for v in data[1:]]
        if len(fields) != len(record._fields):
            raise SnapshotError(f"{record.__name__} has {len(record._fields)} fields, the snapshot {len(fields)}")
        return record._make(fields)
    if tag == _TUPLE:
        return tuple([decode_value(v) for v in data[1:]])
    if tag == _SPEC and len(data) == 2:
        return _decode_spec(data[1])
    raise SnapshotError(f"unknown value tag {tag}")


def _encode_spec(spec: SeriesSpec) -> list[Any]:
    """The journal's encoding of a spec (the fields of a ListSeries command)."""
    return encode_command(ListSeries(spec))[1]  # type: ignore[no-any-return]


def _decode_spec(fields: Any) -> SeriesSpec:
    command = decode_command([_LIST_SERIES_TAG, fields])
    assert isinstance(command, ListSeries)
    if _encode_spec(command.spec) != fields:
        raise SnapshotError(f"series spec {command.spec.symbol} does not restore exactly")
    return command.spec


# -- engine <-> body ----------------------------------------------------------------------------

_SIDE_BY_VALUE: Final = {int(m): m for m in Side}
_TIF_BY_VALUE: Final = {int(m): m for m in TimeInForce}
_STP_BY_VALUE: Final = {int(m): m for m in StpMode}
_STATUS_BY_VALUE: Final = {int(m): m for m in OrderStatus}


def _order_row(o: Order) -> list[Any]:
    """The order's fields; then True if side, tif and stp are the enums the journal codec gives (they
    are then saved as ints), else False and those three saved through `encode_value` as they are. The
    status is always an OrderStatus (the lifecycle table's values)."""
    side, tif, stp = o.side, o.tif, o.stp
    enums = type(side) is Side and type(tif) is TimeInForce and type(stp) is StpMode
    if enums:
        side, tif, stp = side._value_, tif._value_, stp._value_  # type: ignore[attr-defined]
    else:
        side, tif, stp = encode_value(side), encode_value(tif), encode_value(stp)
    return [o.order_id, o.account_id, o.symbol, side, o.price_ticks, o.quantity_lots, o.remaining_lots,
            o.filled_lots, o.cancelled_lots, o.status._value_, tif, o.post_only, stp, o.client_order_id,
            o.expire_ts_ns, enums]


def _order_from_row(row: list[Any]) -> Order:
    (order_id, account_id, symbol, side, price, quantity, remaining, filled, cancelled, status, tif, post_only,
     stp, client_order_id, expire_ts_ns, enums) = row
    if enums:
        side, tif, stp = _SIDE_BY_VALUE[side], _TIF_BY_VALUE[tif], _STP_BY_VALUE[stp]
    else:
        side, tif, stp = decode_value(side), decode_value(tif), decode_value(stp)
    order = Order(order_id, account_id, symbol, side, price, quantity, tif, post_only, stp, client_order_id,
                  expire_ts_ns)
    order.remaining_lots = remaining
    order.filled_lots = filled
    order.cancelled_lots = cancelled
    order.status = _STATUS_BY_VALUE[status]
    return order


def _body(engine: Engine) -> dict[str, Any]:
    return {
        "limits": [engine.limits.max_open_orders_per_account],
        "audit_every_commands": engine.audit_every_commands,
        "commands_applied": engine.commands_applied,
        "seq": engine.stamp.seq,
        "ts_ns": engine.stamp.ts_ns,
        "next_order_id": engine.next_order_id,
        "next_deadline_ns": engine._next_deadline_ns,
        # [spec, halted, terminated, reference price, trade count, bid ids, ask ids, settlements, delivery
        # ids] in listing order; the ids of each side in priority order (best price first, then time);
        # settlements [[date, price, digest, [[account, vm], ...]], ...] in insertion order; delivery ids
        # None until assigned.
        "series": [
            [_encode_spec(s.spec), s.halted, s.terminated, s.reference_price_ticks, s.book.trade_count,
             [o.order_id for o in s.book.orders(BUY)], [o.order_id for o in s.book.orders(SELL)],
             [[date_ns, x.price_ticks, x.digest, [list(p) for p in x.postings]]
              for date_ns, x in s.settlements.items()],
             None if s.delivery_ids is None else list(s.delivery_ids)]
            for s in engine.series.values()
        ],
        # [id, symbol, seller, buyer, lots, gpus, gpu hours, fsp, settlement] in assignment order; settlement
        # None or [digest, effective micro-GPU-hours, invoice, damages, default]
        "deliveries": [[*d[:-1], None if d.settlement is None else list(d.settlement)]
                       for d in engine.deliveries.values()],
        "orders": [_order_row(o) for o in engine.orders.values()],  # Engine.orders' insertion order
        # [id, enabled, margin, order ids in insertion order, [[symbol, position, open buys, open sells,
        #  margin, entry cost], ...] in insertion order, dead man's switch deadline (0: disarmed)]
        "accounts": [
            [a.account_id, a.enabled, a.margin_micros, list(a.orders),
             [[symbol, e.position_lots, e.open_buy_lots, e.open_sell_lots, e.margin_micros, e.entry_cost_ticks]
              for symbol, e in a.exposures.items()], a.cancel_all_at_ns]
            for a in engine.accounts.values()
        ],
        "ledger": [[account, balance] for account, balance in engine.ledger.balances.items()],
        "ledger_postings": engine.ledger.postings,
        # [account id, client order id, order id, command, events] in insertion order
        "client_orders": [
            [account_id, client_order_id, order_id, encode_value(command), encode_value(events)]
            for (account_id, client_order_id), (command, order_id, events) in engine.client_orders.items()
        ],
        "expiries": [[ts, order_id] for ts, order_id in engine._expiries],          # heap list as is
        "terminations": [[ts, symbol] for ts, symbol in engine._terminations],    # heap list as is
        "dead_mans": [[ts, account_id] for ts, account_id in engine._dead_mans],  # heap list as is
        # [placed ts, order id, account id, client order id] by placement; [order id, account id, client
        # order id] past the window with the order open; [account id, reference, command, ts] in order
        "client_order_queue": [[ts, order_id, key[0], key[1]] for ts, order_id, key in engine.client_order_queue],
        "client_orders_lingering": [[order_id, key[0], key[1]]
                                    for order_id, key in engine.client_orders_lingering.items()],
        "cash_references": [[key[0], key[1], encode_command(cmd), ts]
                            for key, (cmd, ts) in engine.cash_references.items()],
    }


def _engine(body: Any) -> Engine:
    if not isinstance(body, dict):
        raise SnapshotError("the snapshot body is not a map")
    (max_open_orders,) = body["limits"]
    engine = Engine(EngineLimits(max_open_orders_per_account=max_open_orders), body["audit_every_commands"])
    engine.commands_applied = body["commands_applied"]
    stamp = engine.stamp  # shared with every book: set in place, never replaced
    stamp.seq = body["seq"]
    stamp.ts_ns = body["ts_ns"]
    engine.next_order_id = body["next_order_id"]
    engine._next_deadline_ns = body["next_deadline_ns"]

    orders = engine.orders
    for row in body["orders"]:
        order = _order_from_row(row)
        if order.order_id in orders:
            raise SnapshotError(f"order {order.order_id} appears twice")
        orders[order.order_id] = order

    in_books = 0
    for (spec_fields, halted, terminated, reference_price, trade_count, bid_ids, ask_ids, settlements,
         delivery_ids) in body["series"]:
        spec = _decode_spec(spec_fields)
        series = Series(spec, stamp)
        series.halted = halted
        series.terminated = terminated
        series.set_reference_price(reference_price)
        for date_ns, price, digest, postings in settlements:
            series.settlements[date_ns] = Settlement(price, digest, tuple((a, vm) for a, vm in postings))
        series.delivery_ids = None if delivery_ids is None else tuple(delivery_ids)
        book = series.book
        book.trade_count = trade_count
        for side, ids in ((BUY, bid_ids), (SELL, ask_ids)):
            for order_id in ids:
                order = orders[order_id]
                if order.side != side or order.symbol != spec.symbol:
                    raise SnapshotError(f"order {order_id} is listed in the wrong book")
                book.restore_order(order)
            in_books += len(ids)
        engine.series[spec.symbol] = series
    if in_books != len(orders):
        raise SnapshotError(f"{len(orders)} live orders but {in_books} in the books")

    ledger = engine.ledger
    ledger.balances.clear()
    for account_id, balance in body["ledger"]:
        ledger.balances[account_id] = balance
    ledger.postings = body["ledger_postings"]

    for account_id, enabled, margin, order_ids, exposures, cancel_all_at_ns in body["accounts"]:
        account = Account(account_id)
        account.enabled = enabled
        account.margin_micros = margin
        account.cancel_all_at_ns = cancel_all_at_ns
        for order_id in order_ids:
            order = orders[order_id]
            if order.account_id != account_id:
                raise SnapshotError(f"order {order_id} is listed under account {account_id}")
            account.orders[order_id] = order
        for symbol, position, open_buys, open_sells, exposure_margin, entry_cost in exposures:
            exposure = account.exposures[symbol] = Exposure()
            exposure.position_lots = position
            exposure.open_buy_lots = open_buys
            exposure.open_sell_lots = open_sells
            exposure.margin_micros = exposure_margin
            exposure.entry_cost_ticks = entry_cost
        engine.accounts[account_id] = account

    for account_id, client_order_id, order_id, encoded_command, events in body["client_orders"]:
        command = decode_value(encoded_command)
        decoded_events = decode_value(events)
        if type(command) is not PlaceOrder or type(decoded_events) is not tuple:
            raise SnapshotError(f"client order {client_order_id!r}: not a command and a tuple of events")
        engine.client_orders[(account_id, client_order_id)] = (command, order_id, decoded_events)

    for *fields, settled in body["deliveries"]:
        delivery = Delivery._make([*fields, None if settled is None else DeliverySettlement._make(settled)])
        if delivery.symbol not in engine.series or delivery.delivery_id in engine.deliveries:
            raise SnapshotError(f"delivery {delivery.delivery_id} is a duplicate or of an unknown series")
        engine.deliveries[delivery.delivery_id] = delivery

    engine._expiries = [(ts, order_id) for ts, order_id in body["expiries"]]
    engine._terminations = [(ts, symbol) for ts, symbol in body["terminations"]]
    engine._dead_mans = [(ts, account_id) for ts, account_id in body["dead_mans"]]
    if "client_order_queue" not in body:
        return engine   # format 3: `_migrate_v3` fills the windows once the hash is checked
    engine.client_order_queue.extend((ts, order_id, (account_id, client_order_id))
                                     for ts, order_id, account_id, client_order_id in body["client_order_queue"])
    for order_id, account_id, client_order_id in body["client_orders_lingering"]:
        engine.client_orders_lingering[order_id] = (account_id, client_order_id)
    for account_id, reference, encoded, ts in body["cash_references"]:
        command = decode_command(encoded)
        if not isinstance(command, Deposit | Withdraw) or command.reference != reference:
            raise SnapshotError(f"cash reference {reference!r}: not the command of a cash move with it")
        engine.cash_references[(account_id, reference)] = (command, ts)
    if len(engine.client_order_queue) + len(engine.client_orders_lingering) != len(engine.client_orders):
        raise SnapshotError("the client-order-id window does not cover the client-order-id table exactly")
    return engine


def _migrate_v3(engine: Engine) -> None:
    """Format 3 -> 4: the client-order-id queue from each entry's original OrderAccepted, by placement."""
    queue = []
    for key, (_, order_id, events) in engine.client_orders.items():
        accepted = events[0] if events else None
        if not isinstance(accepted, OrderAccepted) or accepted.order_id != order_id:
            raise SnapshotError(f"client order {key[1]!r}: its original events do not start with its acceptance")
        queue.append((accepted.ts_ns, order_id, key))
    queue.sort(key=lambda entry: (entry[0], entry[1]))   # placement order: time, then order id
    engine.client_order_queue.extend(queue)


# -- bytes ---------------------------------------------------------------------------------------

@contextmanager
def _gc_paused() -> Iterator[None]:
    """Encoding and restoring build millions of small acyclic containers: the cyclic
    collector's repeated passes over them would cost more than the work itself (3-4x, measured)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def snapshot_bytes(engine: Engine, journal_seq: int) -> bytes:
    """The engine's whole state after journal record `journal_seq`, as a snapshot file's bytes."""
    if type(journal_seq) is not int or not 0 <= journal_seq <= _SEQ_MAX:
        raise SnapshotError(f"journal seq must be an integer in 0..{_SEQ_MAX}, not {journal_seq!r}")
    with _gc_paused():
        try:
            body: bytes = msgpack.packb(_body(engine), use_bin_type=True)
        except OverflowError as error:
            raise SnapshotError(f"an integer in the state does not fit the snapshot's 64 bits: {error}") from None
        recorded = bytes.fromhex(state_hash(engine))
    prefix = HEADER.pack(MAGIC, FORMAT_VERSION, journal_seq, recorded, len(body), b"\0" * 32)[:_CHECKED_HEADER_BYTES]
    return prefix + _checksum(prefix, body) + body


def _checksum(prefix: bytes, body: bytes | memoryview) -> bytes:
    digest = hashlib.sha256(prefix)
    digest.update(body)
    return digest.digest()


def read_snapshot(data: bytes) -> tuple[int, str, Engine]:
    """(journal seq, state hash, restored engine); `SnapshotError` unless every check passes."""
    size = len(data)
    if size < len(MAGIC):
        raise SnapshotError(f"truncated snapshot: {size} bytes, shorter than the {len(MAGIC)}-byte magic")
    if data[:len(MAGIC)] != MAGIC:
        raise SnapshotError(f"not a snapshot: magic {bytes(data[:len(MAGIC)])!r}, expected {MAGIC!r}")
    if size < _PREFIX.size:
        raise SnapshotError(f"truncated snapshot: {size} bytes, the format version field ends at {_PREFIX.size}")
    _, version = _PREFIX.unpack_from(data)
    if version not in READABLE_VERSIONS:
        raise SnapshotError(f"unknown snapshot format version {version} (this build reads versions "
                            f"{', '.join(map(str, READABLE_VERSIONS))})")
    if size < HEADER_BYTES:
        raise SnapshotError(f"truncated snapshot: header has {size} of {HEADER_BYTES} bytes")
    _, _, journal_seq, recorded, body_bytes, checksum = HEADER.unpack_from(data)
    present = size - HEADER_BYTES
    if present < body_bytes:
        raise SnapshotError(f"truncated snapshot: body has {present} of {body_bytes} bytes")
    if present > body_bytes:
        raise SnapshotError(f"snapshot has {present - body_bytes} bytes after its {body_bytes}-byte body")
    view = memoryview(data)
    body = view[HEADER_BYTES:]
    if _checksum(bytes(view[:_CHECKED_HEADER_BYTES]), body) != checksum:
        raise SnapshotError("snapshot checksum mismatch: the file is damaged")
    with _gc_paused():
        try:
            fields: Any = msgpack.unpackb(body, raw=False, strict_map_key=True)
            engine = _engine(fields)
        except SnapshotError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AssertionError, msgpack.ExtraData,
                msgpack.FormatError, msgpack.StackError) as error:
            raise SnapshotError(f"malformed snapshot body: {type(error).__name__}: {error}") from None
        del fields
        restored_hex = state_hash(engine, with_windows=version >= 4)
        if version == 3:
            _migrate_v3(engine)
    recorded_hex = recorded.hex()
    if restored_hex != recorded_hex:
        raise SnapshotError(f"state hash mismatch: the snapshot records {recorded_hex}, "
                            f"the restored engine hashes to {restored_hex}")
    return journal_seq, recorded_hex, engine


def restore(data: bytes) -> Engine:
    """The engine saved in a snapshot (all checks of `read_snapshot` apply)."""
    return read_snapshot(data)[2]


# -- files ---------------------------------------------------------------------------------------

def snapshot_path(directory: Path, journal_seq: int) -> Path:
    return directory / f"{journal_seq:020d}{SUFFIX}"


def write_snapshot(directory: Path, engine: Engine, journal_seq: int) -> Path:
    """Write `<directory>/<journal_seq:020d>.snapshot` atomically: a temporary file in the same
    directory, fsync, rename over the final name, fsync of the directory. A crash at any point
    leaves either no snapshot of that name or the whole of it (and perhaps a stray temp file, which
    readers ignore)."""
    data = snapshot_bytes(engine, journal_seq)
    directory.mkdir(parents=True, exist_ok=True)
    final = snapshot_path(directory, journal_seq)
    temp = directory / f".{final.name}.{os.getpid()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)   # the core's whole state: private
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return final


def snapshot_files(directory: Path) -> list[tuple[int, Path]]:
    """(journal seq, path) of the snapshot files in `directory`, newest first; other files ignored."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match is not None and path.is_file():
            found.append((int(match.group(1)), path))
    found.sort(reverse=True)
    return found


def latest_valid_snapshot(directory: Path, rejected: list[tuple[Path, str]] | None = None,
                          max_seq: int | None = None) -> tuple[Path, int, Engine] | None:
    """The newest snapshot that passes every check, as (path, journal seq, engine), or None.

    Invalid ones are skipped, newest first: each is logged as a warning and, if `rejected` is given,
    appended to it as (path, reason). With `max_seq`, snapshots past that journal seq are not
    considered (a projection that lags needs an image from before its last seq)."""
    for seq, path in snapshot_files(directory):
        if max_seq is not None and seq > max_seq:
            continue
        try:
            journal_seq, _, engine = read_snapshot(path.read_bytes())
            if journal_seq != seq:
                raise SnapshotError(f"file name says journal seq {seq}, the header {journal_seq}")
        except (SnapshotError, OSError) as error:
            reason = f"{type(error).__name__}: {error}" if isinstance(error, OSError) else str(error)
            log.warning("skipping snapshot %s: %s", path, reason)
            if rejected is not None:
                rejected.append((path, reason))
            continue
        return path, journal_seq, engine
    return None
