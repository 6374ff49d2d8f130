"""A snapshot written by the previous format (3) loads through its migration instead of being refused
(issue 13): a real version-3 data directory (tests/fixtures/snapshot_v3, made by its make.py with the
code of format 3) recovers from its snapshot plus the journal's tail, and the result equals a replay
of the whole journal under today's rules."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

from exchange.catalog import load_catalog
from exchange.domain.statehash import state_hash
from exchange.service.exchange_service import ExchangeService, ServiceConfig, verify_replay
from exchange.service.snapshot import FORMAT_VERSION, read_snapshot
from exchange.testing.specs import T0_NS

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "snapshot_v3" / "data"


def _copy(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    return data


def test_the_fixture_is_a_version_3_snapshot() -> None:
    (path,) = (FIXTURE / "snapshots").iterdir()
    assert struct.unpack_from("<8sI", path.read_bytes())[1] == 3 < FORMAT_VERSION


def test_a_version_3_snapshot_loads_migrated() -> None:
    (path,) = (FIXTURE / "snapshots").iterdir()
    seq, _, engine = read_snapshot(path.read_bytes())
    assert seq == 8 and set(engine.client_orders) == {(1, "a-1"), (2, "b-1"), (1, "a-2")}
    # The queue was rebuilt from each id's original acceptance: placement times, in placement order.
    assert [key for _, _, key in engine.client_order_queue] == [(1, "a-1"), (2, "b-1"), (1, "a-2")]
    assert [ts for ts, _, _ in engine.client_order_queue] == sorted(ts for ts, _, _ in engine.client_order_queue)
    assert not engine.client_orders_lingering and not engine.cash_references


def test_recovery_from_a_version_3_snapshot_equals_a_replay_of_the_journal(tmp_path: Path) -> None:
    data = _copy(tmp_path)
    config = ServiceConfig(data, limits=load_catalog().rules.engine_limits(), snapshot_mode="inline",
                           deadline_poll_ms=0)
    check = verify_replay(config)
    assert check.snapshot_seq == 8 and check.ok, check   # snapshot (migrated) + tail == replay from scratch
    service = ExchangeService(config, None, lambda: T0_NS + 30 * 3_600 * 10**9)
    report = service.open()
    try:
        assert report.snapshot_seq == 8 and report.journal_seq == 11
        engine = service.engine
        assert engine is not None
        assert state_hash(engine) == check.from_scratch
        # The journal's tail, replayed under today's rules: the IOC retried 25 h later is a new order (its
        # id was forgotten), the resting order's retry is still a duplicate (its order is open).
        assert engine.next_order_id == 5
        assert (1, "a-2") in engine.client_orders and engine.client_orders[(2, "b-1")][1] == 4
    finally:
        service.close()
