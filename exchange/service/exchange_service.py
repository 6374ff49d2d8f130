"""The durable exchange service: a data directory, recovery, the sequencer, snapshots and projections.

Data directory layout:

    <data>/LOCK                  held (flock) by the one process that owns the directory
    <data>/journal/*.journal     the command journal: the truth
    <data>/snapshots/*.snapshot  periodic images of the core, named by the journal seq they cover

Recovery on `open()`: the newest valid snapshot that the projection has already caught up with
(seq <= projector.last_seq(), so the projection can be fed every event it misses), else an empty
engine; then the journal tail is replayed, and the events after the projection's last seq are fed
to it in batches. So after any crash the core is exact and the projection catches up without loss or
duplication.

Snapshots are taken from the sequencer's `on_events` hook, that is right after a commit and before
the next batch is applied, so the image is exactly the state after a known journal seq. By default
the process forks and the child writes the snapshot from its copy-on-write image while the parent
keeps matching: the pause is the fork itself (milliseconds), not the serialisation (about a second
per 100,000 resting orders). `snapshot_mode="inline"` writes in-process instead (tests, platforms
without fork).

Deadlines without traffic: GTD expiries, trading terminations and dead man's switches happen inside
the core at the first command at or after their time. While the service runs, a deadline task checks
every `deadline_poll_ms` whether `engine.next_deadline_ns` has come (by the service's clock) and, only
then, submits an `AdvanceTime`: an idle exchange with nothing due journals nothing, and a deadline
passed while the process was down fires within one poll of the restart (the recovered core has it).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from exchange.domain.commands import AdvanceTime, Command
from exchange.domain.engine import Engine, EngineLimits
from exchange.domain.events import Event
from exchange.domain.statehash import state_hash
from exchange.journal.journal import Journal, read_entries
from exchange.journal.marker import CommitMarker
from exchange.service import witness
from exchange.service.projection_worker import ProjectionWorker, Projector
from exchange.service.recovery import cut_is_behind, recover
from exchange.service.sequencer import Sequenced, Sequencer, SequencerBusy, SequencerStopped, State
from exchange.service.snapshot import latest_valid_snapshot, write_snapshot

log = logging.getLogger(__name__)

PROJECT_BATCH_MAX = 1_000  # events of this many commands per projection transaction during catch-up


class DataDirLocked(RuntimeError):
    """Another process owns this data directory."""


@dataclass
class ServiceConfig:
    data_dir: Path
    limits: EngineLimits = field(default_factory=EngineLimits)
    snapshot_every_commands: int = 100_000      # 0: never automatically
    snapshot_mode: Literal["fork", "inline"] = "fork"
    audit_every_commands: int = 0
    batch_max: int = 1024
    queue_max: int = 65_536
    deadline_poll_ms: int = 50                  # 0: no deadline task (time moves only with commands)
    projection_thread: bool = False             # project on a thread, off the event loop (the server)

    @property
    def journal_dir(self) -> Path:
        return self.data_dir / "journal"

    @property
    def snapshot_dir(self) -> Path:
        return self.data_dir / "snapshots"


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    snapshot_seq: int          # 0: recovered from the start of the journal
    journal_seq: int           # last committed command
    replayed: int              # commands replayed after the snapshot
    projected: int             # commands whose events were fed to the projection during catch-up
    rejected_snapshots: tuple[tuple[str, str], ...]
    seconds: float


class ExchangeService:
    def __init__(self, config: ServiceConfig, projector: Projector | None = None,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.config = config
        self.projector = projector
        self.clock_ns = clock_ns
        self.engine: Engine | None = None
        self.journal: Journal | None = None
        self.sequencer: Sequencer | None = None
        self.recovery: RecoveryReport | None = None
        self._lock: IO[bytes] | None = None
        self._since_snapshot = 0
        self._snapshot_requested = False
        self._children: list[int] = []
        self._deadline_task: asyncio.Task[None] | None = None
        self._projection: ProjectionWorker | None = None
        self._listeners: list[Callable[[list[Sequenced]], None]] = []
        self.listener_errors = 0
        self._marker: CommitMarker | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> RecoveryReport:
        """Lock the data directory and recover the core (and the projection) from disk."""
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        config.snapshot_dir.mkdir(exist_ok=True)
        make_private(config.data_dir)
        self._lock = open(config.data_dir / "LOCK", "ab")  # noqa: SIM115  (held until close())
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise DataDirLocked(f"{config.data_dir} is in use by another exchange process") from None
        started = time.perf_counter()
        projected_seq = self.projector.last_seq() if self.projector is not None else None
        # Read every witness of what was committed as found, before anything is written (the marker is
        # rewritten below): a journal that ends before any of them must not start.
        witnesses = witness.gather(config.journal_dir, config.snapshot_dir, projected_seq, "the SQL store")
        rejected: list[tuple[str, str]] = []
        snapshot = self._usable_snapshot(projected_seq, rejected)
        try:
            engine, journal = recover(self._new_engine, config.journal_dir, snapshot, witnesses)
        except BaseException:
            self._lock.close()   # nothing was written: leave the directory as found, unlocked
            self._lock = None
            raise
        snapshot_seq = snapshot[0] if snapshot else 0
        projected = 0
        if self.projector is not None and projected_seq is not None and projected_seq < journal.last_seq:
            projected = self._catch_up(snapshot, projected_seq)
        self.engine, self.journal = engine, journal
        # Followers (feed gateways) read the journal up to the marker: publish where recovery left it.
        self._marker = CommitMarker(config.journal_dir)
        self._marker.publish(journal.committed_seq)
        self.recovery = RecoveryReport(snapshot_seq, journal.last_seq, journal.last_seq - snapshot_seq, projected,
                                       tuple(rejected), time.perf_counter() - started)
        log.info("recovered %s", self.recovery)
        return self.recovery

    async def start(self) -> None:
        if self.engine is None:
            self.open()
        assert self.engine is not None and self.journal is not None
        self.sequencer = Sequencer(self.engine, self.journal, self.clock_ns, self.config.batch_max,
                                   self.config.queue_max, on_events=self._after_commit)
        if self.projector is not None and self.config.projection_thread:
            self._projection = ProjectionWorker(self.projector, asyncio.get_running_loop(), self.journal.last_seq)
        await self.sequencer.start()
        if self.config.deadline_poll_ms > 0:
            self._deadline_task = asyncio.create_task(self._run_deadlines(), name="deadlines")

    async def submit(self, command: Command) -> list[Event]:
        assert self.sequencer is not None, "start() the service first"
        return await self.sequencer.submit(command)

    async def submit_sequenced(self, command: Command) -> Sequenced:
        """`submit`, with the command's journal seq and time."""
        assert self.sequencer is not None, "start() the service first"
        return await self.sequencer.submit_sequenced(command)

    async def wait_projected(self, seq: int) -> None:
        """Return once the projection holds everything up to journal `seq` (at once without a thread:
        then the projection is updated before a command's result is released)."""
        if self._projection is not None:
            await self._projection.wait_projected(seq)

    async def stop(self) -> None:
        await self._stop_deadlines()
        if self.sequencer is not None:
            await self.sequencer.stop()
        if self._projection is not None:   # after the sequencer: its last batches are queued by then
            await self._projection.stop()
            self._projection = None
        self.close()

    def close(self) -> None:
        if self._deadline_task is not None:  # stop() awaits it; close() alone can only cancel it
            self._deadline_task.cancel()
            self._deadline_task = None
        self._reap_children(block=True)
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        if self._marker is not None:
            self._marker.close()
            self._marker = None
        if self._lock is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    # -- deadlines ---------------------------------------------------------------------------
    async def _run_deadlines(self) -> None:
        """Every `deadline_poll_ms`: if a deadline of the core is due, submit `AdvanceTime` (and wait
        for it, so at most one is in flight). Never submits otherwise. A busy queue is skipped (the
        commands queued will run the deadline anyway); a stopped or failed sequencer ends the task."""
        sequencer, engine, clock_ns = self.sequencer, self.engine, self.clock_ns
        assert sequencer is not None and engine is not None
        interval_s = self.config.deadline_poll_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            if sequencer.state is not State.RUNNING:
                return
            if engine.next_deadline_ns > clock_ns():
                continue
            try:
                await sequencer.submit(AdvanceTime())
            except SequencerBusy:
                continue
            except SequencerStopped:  # stopping, stopped or failed (SequencerFailed): nothing left to do
                return
            except Exception:  # the core raised: the sequencer has failed and logged it
                log.exception("the deadline task's AdvanceTime failed")
                return

    async def _stop_deadlines(self) -> None:
        task, self._deadline_task = self._deadline_task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])  # never raises the task's outcome; our own cancellation propagates
        if not task.cancelled() and task.exception() is not None:
            log.error("the deadline task failed: %r", task.exception())

    # -- snapshots ---------------------------------------------------------------------------
    def snapshot_now(self) -> Path:
        """Write a snapshot in-process, now. Only between batches (not while the sequencer runs)."""
        assert self.engine is not None and self.journal is not None
        assert self.journal.committed_seq == self.journal.last_seq == self.engine.commands_applied
        self._since_snapshot = 0
        return write_snapshot(self.config.snapshot_dir, self.engine, self.journal.committed_seq)

    def request_snapshot(self) -> None:
        """Snapshot after the next committed batch (an operator's `exchange snapshot` on a live
        exchange: the caller submits a command so that there is one)."""
        self._snapshot_requested = True

    def add_listener(self, listener: Callable[[list[Sequenced]], None]) -> None:
        """Also call `listener(batch)` on the event loop after each committed batch (after the projection
        is handed it). It must not block; whatever it raises is logged and counted (`listener_errors`),
        never raised into the sequencer."""
        self._listeners.append(listener)

    def _after_commit(self, batch: list[Sequenced]) -> None:
        if self._marker is not None:   # first: the feed gateways follow it (one memory store)
            self._marker.publish(batch[-1].seq)
        if self._projection is not None:
            self._projection.submit(batch)
        elif self.projector is not None:
            self.projector.project(batch)
        for listener in self._listeners:
            try:
                listener(batch)
            except Exception:
                self.listener_errors += 1
                log.exception("on-commit listener %r failed for seq %d..%d", listener, batch[0].seq, batch[-1].seq)
        self._since_snapshot += len(batch)
        every = self.config.snapshot_every_commands
        if self._snapshot_requested or (every and self._since_snapshot >= every):
            self._snapshot_requested = False
            self._since_snapshot = 0
            self._snapshot_in_background(batch[-1].seq)
        self._reap_children(block=False)

    def _snapshot_in_background(self, seq: int) -> None:
        assert self.engine is not None
        if self.config.snapshot_mode == "inline" or not hasattr(os, "fork"):
            write_snapshot(self.config.snapshot_dir, self.engine, seq)
            return
        pid = os.fork()
        if pid == 0:  # the child: write the copy-on-write image and leave without running any cleanup
            code = 0
            try:
                write_snapshot(self.config.snapshot_dir, self.engine, seq)
            except BaseException:
                code = 1
            os._exit(code)
        self._children.append(pid)

    def _reap_children(self, block: bool) -> None:
        for pid in list(self._children):
            done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
            if done:
                self._children.remove(pid)
                if status != 0:
                    log.error("snapshot process %d failed with status %d", pid, status)

    # -- recovery helpers --------------------------------------------------------------------
    def _new_engine(self) -> Engine:
        return Engine(self.config.limits, self.config.audit_every_commands)

    def _usable_snapshot(self, projected_seq: int | None,
                         rejected: list[tuple[str, str]]) -> tuple[int, Engine] | None:
        """The newest valid snapshot not newer than what the projection has seen."""
        skipped: list[tuple[Path, str]] = []
        found = latest_valid_snapshot(self.config.snapshot_dir, skipped, max_seq=projected_seq)
        rejected.extend((str(path), reason) for path, reason in skipped)
        if found is None:
            return None
        _, seq, engine = found
        engine.audit_every_commands = self.config.audit_every_commands
        return seq, engine

    def _catch_up(self, snapshot: tuple[int, Engine] | None, projected_seq: int) -> int:
        """Regenerate the events the projection missed and feed them to it, in batches."""
        assert self.projector is not None
        # A second engine replays to regenerate events: the recovered one has already moved past them.
        if snapshot is None:
            start_seq, engine = 0, self._new_engine()
        else:
            start_seq, _ = snapshot
            found = self._usable_snapshot(start_seq, [])
            assert found is not None and found[0] == start_seq
            engine = found[1]
        batch: list[Sequenced] = []
        projected = 0
        for entry in read_entries(self.config.journal_dir, after_seq=start_seq):
            events = engine.apply(entry.command, entry.ts_ns)
            if entry.seq > projected_seq:
                batch.append(Sequenced(entry.seq, entry.ts_ns, events))
                if len(batch) >= PROJECT_BATCH_MAX:
                    self.projector.project(batch)
                    projected += len(batch)
                    batch = []
        if batch:
            self.projector.project(batch)
            projected += len(batch)
        return projected


def make_private(data_dir: Path) -> None:
    """The data directory 0700 and every file in it, its journal and its snapshots 0600: whatever umask
    created them (an older version, a copy, a restore), only the exchange's user may read them. New
    files are created 0600 where they are made (journal segments, snapshots, marker, keys, database)."""
    data_dir.chmod(0o700)
    for folder in (data_dir, data_dir / "journal", data_dir / "journal-archive", data_dir / "snapshots"):
        if folder.is_dir():
            if folder != data_dir:
                folder.chmod(0o700)
            for path in folder.iterdir():
                if path.is_file() and not path.is_symlink():
                    path.chmod(0o600)


@dataclass(frozen=True, slots=True)
class ReplayCheck:
    journal_seq: int
    from_scratch: str           # state hash after replaying the whole journal into an empty engine
    from_snapshot: str | None   # state hash after the newest valid snapshot + the journal tail
    snapshot_seq: int | None

    @property
    def ok(self) -> bool:
        return self.from_snapshot is None or self.from_snapshot == self.from_scratch


def verify_replay(config: ServiceConfig, store_seq: int | None = None) -> ReplayCheck:
    """`exchange replay --verify`: rebuild from scratch and from snapshot + tail; both hashes must agree.

    The same witnesses as recovery (commit marker, the store's `store_seq`, snapshots): a journal that
    ends before any of them raises `JournalBehind`, a damaged committed record `JournalCorrupt`.
    Read-only: it never truncates or writes (a torn tail past the witnesses is simply not replayed)."""
    witnesses = witness.gather(config.journal_dir, config.snapshot_dir, store_seq, "the SQL store")
    floor = witness.committed_floor(witnesses)

    def replay(engine: Engine, after_seq: int) -> tuple[Engine, int]:
        last = after_seq
        for entry in read_entries(config.journal_dir, after_seq=after_seq, committed_seq=floor):
            engine.apply(entry.command, entry.ts_ns)
            last = entry.seq
        return engine, last

    with cut_is_behind(witnesses):
        scratch, last_seq = replay(Engine(config.limits), 0)
    if last_seq < floor:
        raise witness.JournalBehind(*witness.journal_end(config.journal_dir), last_seq, witnesses)
    found = latest_valid_snapshot(config.snapshot_dir)
    if found is None:
        return ReplayCheck(last_seq, state_hash(scratch), None, None)
    _, seq, engine = found
    tail, _ = replay(engine, seq)
    return ReplayCheck(last_seq, state_hash(scratch), state_hash(tail), seq)
