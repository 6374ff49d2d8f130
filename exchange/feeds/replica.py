"""A read-only replica of the core, following a data directory's journal from another process.

The feed gateway needs the engine's state (books, accounts, series) and its events, but must not cost
the engine anything. The core is deterministic, so the gateway runs its own copy: `open()` loads the
newest valid snapshot and replays the journal up to the commit marker; `poll()` reads the records
committed since (`JournalTail`) and applies them, returning the same `Sequenced` results the live
sequencer produced (same seq, time and events: replaying the journal rebuilds the identical state).

It takes no lock and writes nothing: the engine's process keeps sole ownership of the data directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

from exchange.domain.engine import Engine, EngineLimits
from exchange.journal.marker import CommitMarkerReader
from exchange.journal.tail import JournalTail
from exchange.service.sequencer import Sequenced
from exchange.service.snapshot import latest_valid_snapshot

log = logging.getLogger(__name__)

POLL_RECORDS_MAX = 4_096   # records applied per poll: a follower catching up yields between chunks


class ReplicaNotReady(RuntimeError):
    """No commit marker yet: the exchange has never opened this data directory."""


class Replica:
    def __init__(self, data_dir: Path, limits: EngineLimits, audit_every_commands: int = 0) -> None:
        self.journal_dir = data_dir / "journal"
        self.snapshot_dir = data_dir / "snapshots"
        self.limits = limits
        self.audit_every_commands = audit_every_commands
        self.marker = CommitMarkerReader(self.journal_dir)
        self.engine: Engine | None = None
        self._tail: JournalTail | None = None
        self.committed_seq = 0      # the marker's value at the last poll

    @property
    def seq(self) -> int:
        """The last journal seq applied."""
        return self._tail.seq if self._tail is not None else 0

    def open(self) -> Engine:
        """Recover to the commit marker. Raises `ReplicaNotReady` if there is no marker yet."""
        committed = self.marker.read()
        if committed is None:
            raise ReplicaNotReady(f"no commit marker in {self.journal_dir}: is the exchange running?")
        found = latest_valid_snapshot(self.snapshot_dir, max_seq=committed) if self.snapshot_dir.is_dir() else None
        if found is None:
            after_seq, engine = 0, Engine(self.limits, self.audit_every_commands)
        else:
            _, after_seq, engine = found
            engine.audit_every_commands = self.audit_every_commands
        self._tail = JournalTail(self.journal_dir, after_seq)
        self.engine = engine
        replayed = 0
        while self._tail.seq < committed:
            for entry in self._tail.read_until(committed, POLL_RECORDS_MAX):
                engine.apply(entry.command, entry.ts_ns)
                replayed += 1
        self.committed_seq = committed
        assert engine.commands_applied == committed, (engine.commands_applied, committed)
        log.info("replica at seq %d (snapshot %d, %d replayed)", committed, after_seq, replayed)
        return engine

    def poll(self, records_max: int = POLL_RECORDS_MAX) -> list[Sequenced]:
        """Apply what was committed since the last poll (at most `records_max` records)."""
        assert self.engine is not None and self._tail is not None, "open() the replica first"
        committed = self.marker.read()
        if committed is None or committed <= self._tail.seq:
            return []
        self.committed_seq = committed
        engine = self.engine
        out: list[Sequenced] = []
        for entry in self._tail.read_until(committed, records_max):
            out.append(Sequenced(entry.seq, entry.ts_ns, engine.apply(entry.command, entry.ts_ns)))
        return out

    @property
    def lag(self) -> int:
        """Records committed (as of the last poll) but not yet applied."""
        return max(0, self.committed_seq - self.seq)

    def close(self) -> None:
        if self._tail is not None:
            self._tail.close()
        self.marker.close()
