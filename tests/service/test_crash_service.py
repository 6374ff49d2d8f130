"""Crash under load through the whole service: SIGKILL at random moments, restart, check everything.

The driver (`python -m exchange.testing.crashdriver --service`) sends a seeded stream of orders,
cancels, amends and cash moves through ExchangeService (journal, group commit, SQL store projection,
fork-written snapshots) and prints each acknowledgement. After the kill the test restarts the
service on the same data directory and checks: every acknowledged command is in the journal (which
is a prefix of the stream); the recovered state hash equals a clean replay of that prefix; the
ledger sums to zero and the engine's audit passes; the SQL projection caught up to exactly the
core's orders, trades, positions and balances. CRASH_SERVICE_SEEDS sets the number of seeds.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from exchange.domain.engine import Engine
from exchange.domain.statehash import state_hash
from exchange.journal import read_entries
from exchange.service.exchange_service import ExchangeService, ServiceConfig, verify_replay
from exchange.service.sequencer import Sequenced
from exchange.store import Store
from exchange.testing.flow import random_commands
from tests.service.crashing import run_and_kill
from tests.store.helpers import assert_matches_engine

COUNT = 20_000


def _seeds() -> list[int]:
    return list(range(100, 100 + int(os.environ.get("CRASH_SERVICE_SEEDS", "20"))))


@pytest.mark.parametrize("seed", _seeds())
def test_kill_minus_nine_through_the_service_loses_nothing(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    data = tmp_path / "data"
    acks = run_and_kill(["--service", "--dir", str(data), "--seed", str(seed), "--count", str(COUNT),
                         "--window", str(rng.choice((1, 32, 256))), "--snapshot-every", "1500"],
                        rng.uniform(0.05, 1.5))

    # Restart: recovery from snapshot + journal tail, and the projection catches up.
    store = Store(f"sqlite:///{data / 'exchange.db'}")
    service = ExchangeService(ServiceConfig(data, snapshot_mode="inline"), store)
    report = service.open()
    engine = service.engine
    assert engine is not None
    service.close()

    stream = random_commands(seed, COUNT)
    journaled = [(e.command, e.ts_ns) for e in read_entries(data / "journal")]
    assert journaled == stream[:len(journaled)], "the journal is not a prefix of what was sent"
    assert report.journal_seq == len(journaled)
    for seq, index in acks:
        assert index < len(journaled) and seq == index + 1, f"acknowledged command {index} (seq {seq}) lost"

    clean = Engine()
    items = [Sequenced(seq, ts, clean.apply(command, ts)) for seq, (command, ts) in enumerate(journaled, start=1)]
    assert state_hash(engine) == state_hash(clean)
    engine.audit()
    assert engine.ledger.total() == 0
    assert verify_replay(ServiceConfig(data)).ok
    assert_matches_engine(store, engine, items)
