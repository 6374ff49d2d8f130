"""Recovering the same journal in two processes with different PYTHONHASHSEED gives one state hash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from exchange.journal import Journal
from exchange.testing.flow import random_commands

REPO = Path(__file__).resolve().parents[2]
RECOVER = (
    "import sys; from pathlib import Path; from exchange.domain.engine import Engine; "
    "from exchange.domain.statehash import state_hash; from exchange.service.recovery import recover; "
    "engine, journal = recover(Engine, Path(sys.argv[1])); journal.close(); print(state_hash(engine))"
)


def test_journal_replay_is_identical_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as journal:
        for seq, (command, ts) in enumerate(random_commands(77, 3_000), start=1):
            journal.append(seq, ts, command)
        journal.commit()
    hashes = {
        subprocess.run([sys.executable, "-c", RECOVER, str(tmp_path)], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}, timeout=120).stdout
        for seed in ("0", "1", "31337")
    }
    assert len(hashes) == 1 and len(next(iter(hashes)).strip()) == 64
