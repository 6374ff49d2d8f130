"""Replaying the same commands gives byte-identical events and state, in any process."""

from __future__ import annotations

import os
import subprocess
import sys

from exchange.domain.engine import Engine
from exchange.domain.statehash import state_hash
from exchange.testing.digest import digests
from exchange.testing.flow import random_commands


def _digests_in_subprocess(hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    result = subprocess.run([sys.executable, "-m", "exchange.testing.digest", "--seed", "11", "--commands", "3000"],
                            env=env, capture_output=True, text=True, check=True, timeout=120)
    return result.stdout


def test_same_stream_in_two_processes_with_different_hash_seeds_is_byte_identical() -> None:
    first, second = _digests_in_subprocess("1"), _digests_in_subprocess("4242")
    assert first == second
    assert first.count("\n") == 2 and "events " in first


def test_in_process_replay_matches_and_different_streams_differ() -> None:
    assert digests(3, 1_000) == digests(3, 1_000)
    assert digests(3, 1_000) != digests(4, 1_000)


def test_state_hash_changes_with_state_and_not_with_inspection() -> None:
    engine = Engine()
    stream = random_commands(5, 300)
    for command, ts in stream[:-1]:
        engine.apply(command, ts)
    before = state_hash(engine)
    engine.audit()
    engine.book_levels(next(iter(engine.series)))
    assert state_hash(engine) == before
    command, ts = stream[-1]
    engine.apply(command, ts)
    assert state_hash(engine) != before  # at least the sequence number moved
