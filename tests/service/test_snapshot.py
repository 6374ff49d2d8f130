"""Snapshots: a restored engine continues exactly like one that never stopped; damaged files are refused."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from exchange.domain.account import Account, Exposure
from exchange.domain.book import Level, OrderBook
from exchange.domain.codes import CancelReason, RejectCode
from exchange.domain.commands import (
    AdvanceTime,
    AssignDeliveries,
    CancelAllAfter,
    CancelOrder,
    Command,
    CreateAccount,
    Deposit,
    HaltSeries,
    ListSeries,
    PlaceOrder,
    SettleDaily,
    SettleDelivery,
    TerminateTrading,
)
from exchange.domain.engine import Engine, EngineLimits, Series
from exchange.domain.events import (
    CancelAllAfterSet,
    CashMoved,
    DailySettlement,
    DeadMansSwitchFired,
    DeliveriesAlreadyAssigned,
    DeliveriesAssigned,
    DeliveryAssigned,
    DeliverySettled,
    DeliverySettlementDuplicate,
    DuplicateOrder,
    Event,
    OrderCancelled,
    OrderExpired,
    Rejected,
    SettlementDuplicate,
    Trade,
    TradingTerminated,
)
from exchange.domain.ledger import Ledger
from exchange.domain.order import Order, Side, StpMode, TimeInForce
from exchange.domain.statehash import state_hash
from exchange.domain.units import NS_PER_SECOND
from exchange.service.snapshot import (
    FORMAT_VERSION,
    HEADER,
    HEADER_BYTES,
    MAGIC,
    SnapshotError,
    decode_value,
    encode_value,
    latest_valid_snapshot,
    read_snapshot,
    restore,
    snapshot_bytes,
    snapshot_path,
    write_snapshot,
)
from exchange.testing.flow import random_commands
from exchange.testing.specs import T0_NS, make_spec
from tests.domain.settlement import D0, D1, SYMBOL, settlement_stream

Stream = list[tuple[Command, int]]


def _run(engine: Engine, stream: Stream) -> list[list[Event]]:
    return [engine.apply(command, ts) for command, ts in stream]


def _roundtrip(engine: Engine, journal_seq: int = 0) -> Engine:
    data = snapshot_bytes(engine, journal_seq)
    seq, recorded, restored = read_snapshot(data)
    assert (seq, recorded) == (journal_seq, state_hash(engine))
    assert state_hash(restored) == state_hash(engine)
    assert snapshot_bytes(restored, journal_seq) == data  # nothing lost: the copy saves the same bytes
    return restored


def _assert_continues_exactly(stream: Stream, cut: int, expected: list[list[Event]], final_hash: str) -> None:
    before = Engine()
    _run(before, stream[:cut])
    restored = _roundtrip(before, cut)
    events = _run(restored, stream[cut:])
    assert events == expected[cut:]
    assert repr(events) == repr(expected[cut:])  # enum vs int matters to the state hash
    assert state_hash(restored) == final_hash
    restored.audit()


@pytest.mark.parametrize("seed", range(6))
def test_restored_engine_continues_exactly_like_the_uninterrupted_one(seed: int) -> None:
    stream = random_commands(seed, 1_500)
    reference = Engine()
    expected = _run(reference, stream)
    final_hash = state_hash(reference)
    cuts = {0, 1, 12, len(stream) // 3, len(stream) // 2, len(stream) - 1, len(stream)}
    # Also cut where a GTD expiry is pending and where the client order table is large.
    probe = Engine()
    for i, (command, ts) in enumerate(stream):
        probe.apply(command, ts)
        if any(oid in probe.orders for _, oid in probe._expiries):
            cuts.add(i + 1)
            break
    for cut in sorted(cuts):
        _assert_continues_exactly(stream, cut, expected, final_hash)


def test_snapshot_and_restore_after_every_command() -> None:
    """The strongest form: every cut point, each restored engine carrying on from the previous one."""
    stream = random_commands(41, 600)
    reference = Engine()
    expected = _run(reference, stream)
    engine = Engine()
    for i, (command, ts) in enumerate(stream):
        events = engine.apply(command, ts)
        assert repr(events) == repr(expected[i])
        engine = restore(snapshot_bytes(engine, i + 1))
    assert state_hash(engine) == state_hash(reference)
    engine.audit()


SHORT = "B200-M35-261203"   # its trading ends 100 s after T0
STOPPED = "A100-M30-261203"  # terminated by the operator before the snapshot


def _deadline_stream() -> tuple[Stream, Stream]:
    """Setup and the part before the snapshot; then the part after it."""
    t = T0_NS
    specs = [make_spec(), make_spec(SHORT, trading_end_ns=T0_NS + 100 * NS_PER_SECOND), make_spec(STOPPED)]
    gtd = PlaceOrder(1, "H100-M40-261203", Side.BUY, 3, 470, tif=TimeInForce.GTD, client_order_id="g1",
                     expire_ts_ns=t + 10 * NS_PER_SECOND)
    before: Stream = [
        *((ListSeries(s), t) for s in specs),
        *((c, t) for a in (1, 2) for c in (CreateAccount(a), Deposit(a, 10**11))),
        (gtd, t),
        (PlaceOrder(1, "H100-M40-261203", Side.BUY, 2, 471, tif=TimeInForce.GTD,
                    expire_ts_ns=t + 10 * NS_PER_SECOND), t),  # expires at the same instant: id order
        (PlaceOrder(2, SHORT, Side.SELL, 4, 500, client_order_id="s1"), t + 1),
        (PlaceOrder(2, STOPPED, Side.SELL, 4, 490), t + 2),
        (TerminateTrading(STOPPED), t + 3),
        (HaltSeries("H100-M40-261203", True), t + 4),
        (HaltSeries("H100-M40-261203", False), t + 5),
    ]
    after: Stream = [
        (gtd, t + 6),                                              # a retry: the original result
        (PlaceOrder(1, STOPPED, Side.BUY, 1, 480), t + 7),         # refused: terminated
        (AdvanceTime(), t + 20 * NS_PER_SECOND),                   # both GTD orders expire
        (PlaceOrder(1, SHORT, Side.BUY, 1, 500), t + 30 * NS_PER_SECOND),  # trades with the resting sell
        (AdvanceTime(), t + 200 * NS_PER_SECOND),                  # SHORT terminates, its rest cancelled
    ]
    return before, after


def test_deadlines_scheduled_before_the_snapshot_fire_after_restore() -> None:
    before, after = _deadline_stream()
    reference = Engine()
    _run(reference, before)
    expected = _run(reference, after)

    engine = Engine()
    _run(engine, before)
    assert engine._expiries and engine._next_deadline_ns == T0_NS + 10 * NS_PER_SECOND
    restored = _roundtrip(engine, 99)
    assert restored._next_deadline_ns == engine._next_deadline_ns
    assert restored.series[STOPPED].terminated and not restored.series[SHORT].terminated
    events = _run(restored, after)
    assert repr(events) == repr(expected)
    assert state_hash(restored) == state_hash(reference)
    restored.audit()

    retry, refused, expiry, trade, termination = events
    assert type(retry[0]) is DuplicateOrder and retry[0].original == engine.client_orders[(1, "g1")][2]
    assert type(refused[0]) is Rejected and refused[0].code is RejectCode.TRADING_TERMINATED
    assert [type(e) for e in expiry] == [OrderExpired, OrderExpired]
    assert [e.order_id for e in expiry if type(e) is OrderExpired] == [1, 2]
    assert any(type(e) is Trade for e in trade)
    assert [type(e) for e in termination] == [OrderCancelled, TradingTerminated]
    assert restored._next_deadline_ns == reference._next_deadline_ns


def test_armed_dead_mans_switches_survive_a_snapshot_and_fire_on_time() -> None:
    t = T0_NS
    ms = 1_000_000
    before: Stream = [
        (ListSeries(make_spec()), t),
        *((c, t) for a in (1, 2, 3) for c in (CreateAccount(a), Deposit(a, 10**11))),
        (PlaceOrder(1, "H100-M40-261203", Side.BUY, 2, 470), t),
        (PlaceOrder(1, "H100-M40-261203", Side.SELL, 1, 490), t),
        (PlaceOrder(2, "H100-M40-261203", Side.BUY, 3, 469), t),
        (CancelAllAfter(1, 5_000), t),
        (CancelAllAfter(1, 3_000), t + 1 * ms),       # re-armed: the 5 s entry is stale
        (CancelAllAfter(2, 2_000), t + 2 * ms),
        (CancelAllAfter(2, 0), t + 3 * ms),           # disarmed: its entry is stale too
        (CancelAllAfter(3, 60_000), t + 4 * ms),      # armed, no orders
    ]
    after: Stream = [
        (AdvanceTime(), t + 3_001 * ms - 1),          # one ns early: nothing
        (AdvanceTime(), t + 3_001 * ms),              # account 1 fires
        (AdvanceTime(), t + 10_000 * ms),             # stale entries: nothing
        (CancelAllAfter(3, 1), t + 10_000 * ms),      # re-armed after the restore
        (AdvanceTime(), t + 10_001 * ms),
    ]
    reference = Engine()
    _run(reference, before)
    expected = _run(reference, after)

    engine = Engine()
    _run(engine, before)
    assert [(a.account_id, a.cancel_all_at_ns) for a in engine.accounts.values()] == [
        (1, t + 3_001 * ms), (2, 0), (3, t + 60_004 * ms)]
    # The disarmed switch's entry was the head: dropped, so the next deadline is a live one (account 1's);
    # the stale 5 s entry of account 1 is inside the heap, skipped when it comes up.
    assert len(engine._dead_mans) == 3 and engine.next_deadline_ns == t + 3_001 * ms
    restored = _roundtrip(engine, 10)
    assert restored._dead_mans == engine._dead_mans
    assert [a.cancel_all_at_ns for a in restored.accounts.values()] == [
        a.cancel_all_at_ns for a in engine.accounts.values()]
    assert restored.next_deadline_ns == engine.next_deadline_ns
    restored.audit()
    events = _run(restored, after)
    assert repr(events) == repr(expected)
    assert state_hash(restored) == state_hash(reference)
    early, fired, stale, rearmed, fired_again = events
    assert early == [] and stale == []
    assert [type(e) for e in fired] == [OrderCancelled, OrderCancelled, DeadMansSwitchFired]
    assert {e.reason for e in fired if type(e) is OrderCancelled} == {CancelReason.DEAD_MANS_SWITCH}
    assert rearmed == [CancelAllAfterSet(rearmed[0].seq, t + 10_000 * ms, 3, t + 10_001 * ms)]
    assert fired_again == [DeadMansSwitchFired(fired_again[0].seq, t + 10_001 * ms, 3, 0)]
    assert [o.order_id for o in restored.orders.values()] == [3]  # account 2's order is untouched
    restored.audit()


def test_the_state_hash_covers_the_dead_mans_switch() -> None:
    engines = []
    for timeout_ms in (1_000, 2_000, 0):
        engine = Engine()
        _run(engine, [(CreateAccount(1), T0_NS), (CancelAllAfter(1, timeout_ms), T0_NS)])
        engines.append(engine)
    assert len({state_hash(e) for e in engines}) == 3


@pytest.mark.skipif(hasattr(Engine, "__mypyc_attrs__"),
                    reason="the mypyc-compiled core refuses commands with plain ints for enum fields")
def test_plain_int_fields_keep_their_type_through_a_snapshot() -> None:
    """Orders and commands built with plain ints (not the codec's enums) restore as plain ints, so the
    events they later appear in repr the same, and so does the state hash."""
    t = T0_NS
    setup: Stream = [(ListSeries(make_spec()), t), (CreateAccount(1), t), (Deposit(1, 10**11), t)]
    plain = PlaceOrder(1, "H100-M40-261203", 1, 5, 490, 0, 0, False, 0, "plain")  # type: ignore[arg-type]
    before: Stream = [*setup, (plain, t + 1)]
    # A self-trading buy cancels the resting sell: its OrderCancelled carries the resting order's side.
    after: Stream = [(PlaceOrder(1, "H100-M40-261203", Side.BUY, 5, 495, stp=StpMode.CANCEL_OLDEST,
                                 client_order_id="b"), t + 2), (plain, t + 3)]
    reference = Engine()
    _run(reference, before)
    expected = _run(reference, after)
    engine = Engine()
    _run(engine, before)
    restored = _roundtrip(engine)
    assert type(restored.orders[1].side) is int and type(restored.client_orders[(1, "plain")][0].side) is int
    events = _run(restored, after)
    assert repr(events) == repr(expected)
    assert state_hash(restored) == state_hash(reference)


def test_value_codec_is_exact() -> None:
    values: list[Any] = [
        None, True, 0, -(2**63), "x", Side.SELL, CancelReason.SELF_TRADE, RejectCode.SERIES_HALTED,
        (1, (Side.BUY, "a"), ()), make_spec(),
        Rejected(1, 2, "PlaceOrder", None, RejectCode.INVALID_PRICE, "m"),
        DuplicateOrder(3, 4, 1, "c", 7, (Trade(1, 2, "S", 1, 480, 2, Side.BUY, 1, 2, 3, 4, 0, 0, 0, 5),)),
        CancelAllAfterSet(5, 6, 1, 7), DeadMansSwitchFired(8, 9, 1, 2),
        OrderCancelled(1, 2, 3, 4, "S", Side.SELL, 1, 0, CancelReason.DEAD_MANS_SWITCH),
        DailySettlement(1, 2, "S", 0, 480, "ab" * 32, 2, -5, True), SettlementDuplicate(3, 4, "S", 0, "cd" * 32),
        DeliveriesAssigned(5, 6, "S", 484, 2), DeliveryAssigned(7, 8, "S/1", "S", 1, 2, 3, 24, 576, 484),
        DeliveriesAlreadyAssigned(9, 10, "S", 0), DeliverySettled(11, 12, "S/1", "ef" * 32, 10, 20, 0, True, False),
        DeliverySettlementDuplicate(13, 14, "S/1", "ef" * 32),
        CashMoved(15, 16, "variation_margin", -3, 1, 5, 5),
    ]
    for value in values:
        packed = msgpack.packb(encode_value(value), use_bin_type=True)
        decoded = decode_value(msgpack.unpackb(packed, raw=False))
        assert decoded == value and repr(decoded) == repr(value) and type(decoded) is type(value)
    with pytest.raises(SnapshotError, match="cannot snapshot a value of type float"):
        encode_value(1.5)
    with pytest.raises(SnapshotError, match="unknown value tag 999"):
        decode_value([999])


def test_settlement_state_survives_a_snapshot_at_every_point() -> None:
    """Settlements (with a duplicate and an amendment), assignment and delivery settlements (with
    amendments): a snapshot after any command restores an engine that carries on exactly."""
    stream = settlement_stream()
    reference = Engine()
    expected = _run(reference, stream)
    final_hash = state_hash(reference)
    for cut in range(len(stream) + 1):
        _assert_continues_exactly(stream, cut, expected, final_hash)
    restored = _roundtrip(reference, len(stream))
    assert restored.deliveries == reference.deliveries and list(restored.deliveries) == list(reference.deliveries)
    for symbol, series in reference.series.items():
        assert restored.series[symbol].settlements == series.settlements
        assert list(restored.series[symbol].settlements) == list(series.settlements)
        assert restored.series[symbol].delivery_ids == series.delivery_ids
    assert all(type(p) is tuple for s in restored.series.values() for x in s.settlements.values() for p in x.postings)
    assert restored.ledger.balances == reference.ledger.balances
    # A repeat after the restore is still a duplicate, an amendment still posts only differences.
    for command, _ in stream:
        if isinstance(command, SettleDelivery | SettleDaily | AssignDeliveries):
            out = restored.apply(command, reference.stamp.ts_ns)
            assert type(out[-1]).__name__ in ("SettlementDuplicate", "DeliveriesAlreadyAssigned",
                                              "DeliverySettlementDuplicate", "Rejected")


def test_the_state_hash_covers_settlements_and_deliveries() -> None:
    engine = Engine()
    _run(engine, settlement_stream())
    data = snapshot_bytes(engine, 0)
    first = f"{SYMBOL}/1"

    def settlement(e: Engine, **change: Any) -> None:
        series = e.series[SYMBOL]
        series.settlements[D0] = series.settlements[D0]._replace(**change)

    def delivery(e: Engine, **change: Any) -> None:
        settled = e.deliveries[first].settlement
        assert settled is not None
        e.deliveries[first] = e.deliveries[first]._replace(settlement=settled._replace(**change))

    mutations: list[Callable[[Engine], object]] = [
        lambda e: settlement(e, digest="0" * 64),
        lambda e: settlement(e, price_ticks=1),
        lambda e: settlement(e, postings=()),
        lambda e: e.series[SYMBOL].settlements.pop(D1),
        lambda e: setattr(e.series[SYMBOL], "delivery_ids", None),
        lambda e: e.deliveries.pop(first),
        lambda e: delivery(e, default=True),
        lambda e: delivery(e, invoice_micros=0),
        lambda e: e.deliveries.__setitem__(first, e.deliveries[first]._replace(settlement=None)),
    ]
    hashes = {state_hash(engine)}
    for mutate in mutations:
        copy = restore(data)
        mutate(copy)
        hashes.add(state_hash(copy))
    assert len(hashes) == len(mutations) + 1


def _fields(cls: type, instance: object = None) -> set[str]:
    """The attributes of a core class: mypyc lists them, slots name them, or the instance has them."""
    compiled = getattr(cls, "__mypyc_attrs__", None)
    if compiled is not None:
        return set(compiled)
    slots = cls.__dict__.get("__slots__")
    return set(slots) if slots is not None else set(vars(instance))


def test_every_piece_of_engine_state_is_known_to_the_snapshot() -> None:
    """A tripwire: a new field in the core's state must be added to the snapshot (and here)."""
    engine = Engine()
    _run(engine, random_commands(1, 50))
    book = next(iter(engine.series.values())).book
    assert _fields(Engine, engine) == {
        "limits", "audit_every_commands", "commands_applied", "stamp", "series", "accounts", "ledger", "orders",
        "next_order_id", "client_orders", "client_order_queue", "client_orders_lingering", "cash_references",
        "deliveries", "_expiries", "_terminations", "_dead_mans", "_next_deadline_ns", "_handlers"}
    assert _fields(Series) == {"band_high_ticks", "band_low_ticks", "book", "delivery_ids", "halted",
                               "im_per_lot_micros", "reference_price_ticks", "settlements", "spec", "terminated"}
    assert _fields(OrderBook, book) == {"spec", "symbol", "_stamp", "bids", "asks", "_bid_prices", "_ask_prices",
                                        "best_bid", "best_ask", "trade_count", "_tick_value_micros",
                                        "_taker_fee_ppm", "_maker_fee_ppm"}
    assert _fields(Level) == {"live", "orders", "total_lots"}
    assert _fields(Account) == {"account_id", "cancel_all_at_ns", "enabled", "exposures", "margin_micros", "orders"}
    assert _fields(Exposure) == {"entry_cost_ticks", "margin_micros", "open_buy_lots", "open_sell_lots",
                                 "position_lots"}
    assert _fields(Ledger) == {"balances", "postings"}
    assert len(_fields(Order)) == 15
    assert set(EngineLimits.__dataclass_fields__) == {"max_open_orders_per_account"}


def test_limits_and_audit_schedule_survive() -> None:
    engine = Engine(EngineLimits(max_open_orders_per_account=7), audit_every_commands=13)
    _run(engine, random_commands(2, 100))
    restored = _roundtrip(engine)
    assert restored.limits == engine.limits and restored.audit_every_commands == 13
    assert restored.commands_applied == engine.commands_applied
    for series in restored.series.values():
        assert series.book._stamp is restored.stamp  # one global sequence counter


# -- damaged files ---------------------------------------------------------------------------------

def _small_snapshot(journal_seq: int = 5) -> bytes:
    engine = Engine()
    _run(engine, random_commands(3, 200))
    return snapshot_bytes(engine, journal_seq)


def _resealed(data: bytes, **fields: Any) -> bytes:
    """`data` with header fields replaced and the checksum recomputed (a consistent but wrong file)."""
    magic, version, seq, recorded, body_len, _ = HEADER.unpack_from(data)
    values = {"magic": magic, "version": version, "seq": seq, "recorded": recorded, "body_len": body_len}
    values.update(fields)
    body = data[HEADER_BYTES:]
    header = HEADER.pack(values["magic"], values["version"], values["seq"], values["recorded"], values["body_len"],
                         b"\0" * 32)[:-32]
    return header + hashlib.sha256(header + body).digest() + body


def test_a_sound_snapshot_reads_back() -> None:
    data = _small_snapshot(5)
    assert data[:8] == MAGIC
    seq, recorded, engine = read_snapshot(data)
    assert seq == 5 and len(recorded) == 64 and state_hash(engine) == recorded


@pytest.mark.parametrize("where", ["body", "header"])
def test_flipped_byte_is_a_checksum_error(where: str) -> None:
    data = bytearray(_small_snapshot())
    index = len(data) // 2 if where == "body" else 30  # inside the recorded state hash
    data[index] ^= 0x40
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        read_snapshot(bytes(data))


@pytest.mark.parametrize(("keep", "message"), [
    (0, "truncated snapshot: 0 bytes, shorter than the 8-byte magic"),
    (5, "shorter than the 8-byte magic"),
    (10, "the format version field ends at 12"),
    (50, "header has 50 of 92 bytes"),
    (HEADER_BYTES, "body has 0 of"),
    (-1, "body has .* of .* bytes"),
])
def test_truncated_snapshot_says_what_is_missing(keep: int, message: str) -> None:
    data = _small_snapshot()
    with pytest.raises(SnapshotError, match=message):
        read_snapshot(data[:keep])


def test_wrong_magic_unknown_version_trailing_bytes() -> None:
    data = _small_snapshot()
    with pytest.raises(SnapshotError, match=r"not a snapshot: magic b'CXJOURNL', expected b'CXSNAP01'"):
        read_snapshot(b"CXJOURNL" + data[8:])
    for version in (1, 2, FORMAT_VERSION + 1):  # 1: before the switch, 2: before settlement, 5: the future
        with pytest.raises(SnapshotError, match=rf"unknown snapshot format version {version} \(this build reads "
                                                rf"versions 3, {FORMAT_VERSION}\)"):
            read_snapshot(_resealed(data, version=version))
    with pytest.raises(SnapshotError, match="3 bytes after its"):
        read_snapshot(data + b"\0\0\0")


def test_recorded_state_hash_must_match_the_restored_engine() -> None:
    data = _small_snapshot()
    with pytest.raises(SnapshotError, match=f"state hash mismatch: the snapshot records {'ab' * 32}"):
        read_snapshot(_resealed(data, recorded=b"\xab" * 32))


def test_consistent_but_malformed_body_is_refused() -> None:
    body = msgpack.packb({"limits": [5]}, use_bin_type=True)
    header = HEADER.pack(MAGIC, FORMAT_VERSION, 1, b"\0" * 32, len(body), b"\0" * 32)[:-32]
    data = header + hashlib.sha256(header + body).digest() + body
    with pytest.raises(SnapshotError, match="malformed snapshot body: KeyError"):
        read_snapshot(data)


def test_bad_journal_seq_is_refused() -> None:
    with pytest.raises(SnapshotError, match="journal seq must be an integer"):
        snapshot_bytes(Engine(), -1)


# -- files -----------------------------------------------------------------------------------------

def test_write_snapshot_is_named_by_seq_and_leaves_no_temp_file(tmp_path: Path) -> None:
    engine = Engine()
    _run(engine, random_commands(4, 100))
    path = write_snapshot(tmp_path / "snaps", engine, 123)
    assert path == snapshot_path(tmp_path / "snaps", 123) and path.name == f"{123:020d}.snapshot"
    assert [p.name for p in (tmp_path / "snaps").iterdir()] == [path.name]
    seq, recorded, restored = read_snapshot(path.read_bytes())
    assert seq == 123 and recorded == state_hash(engine) == state_hash(restored)


def test_latest_valid_snapshot_falls_back_past_damaged_ones(tmp_path: Path) -> None:
    assert latest_valid_snapshot(tmp_path / "missing") is None
    assert latest_valid_snapshot(tmp_path) is None
    stream = random_commands(5, 300)
    engine = Engine()
    hashes = {}
    for i, (command, ts) in enumerate(stream, start=1):
        engine.apply(command, ts)
        if i in (100, 200, 300):
            write_snapshot(tmp_path, engine, i)
            hashes[i] = state_hash(engine)
    newest = snapshot_path(tmp_path, 300)
    damaged = bytearray(newest.read_bytes())
    damaged[-10] ^= 1
    newest.write_bytes(bytes(damaged))
    renamed = snapshot_path(tmp_path, 250)                  # a valid file under the wrong name
    renamed.write_bytes(snapshot_path(tmp_path, 100).read_bytes())
    (tmp_path / f".{snapshot_path(tmp_path, 400).name}.1.tmp").write_bytes(b"partial")  # ignored
    (tmp_path / "notes.txt").write_text("ignored")
    rejected: list[tuple[Path, str]] = []
    found = latest_valid_snapshot(tmp_path, rejected)
    assert found is not None
    path, seq, restored = found
    assert (path, seq) == (snapshot_path(tmp_path, 200), 200) and state_hash(restored) == hashes[200]
    assert [(p, why.split(":")[0]) for p, why in rejected] == [
        (newest, "snapshot checksum mismatch"), (renamed, "file name says journal seq 250, the header 100")]
    # Carrying on from the fallback with the journal's tail gives the uninterrupted result.
    _run(restored, stream[200:])
    assert state_hash(restored) == state_hash(engine)


def test_a_cancelled_order_leaves_no_trace_in_the_books() -> None:
    """Tombstones are not saved; the restored book has the same live orders and levels."""
    t = T0_NS
    engine = Engine()
    _run(engine, [(ListSeries(make_spec()), t), (CreateAccount(1), t), (Deposit(1, 10**11), t),
                  *((PlaceOrder(1, "H100-M40-261203", Side.BUY, 1, 470), t) for _ in range(5)),
                  (CancelOrder(1, 2), t), (CancelOrder(1, 4), t)])
    restored = _roundtrip(engine)
    level = restored.series["H100-M40-261203"].book.bids[470]
    assert [o.order_id for o in level.orders] == [1, 3, 5] and level.live == 3 and level.total_lots == 3
    assert restored.book_levels("H100-M40-261203") == engine.book_levels("H100-M40-261203")
