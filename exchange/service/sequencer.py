"""The sequencer: the single entry point of commands into the durable core (DESIGN.md principles 1-2).

Every command goes through `Sequencer.submit`. The sequencer's task takes whatever is queued (up to
`batch_max` commands) as one batch and, for each command in order:

1. gives it the next sequence number (`journal.last_seq + 1`) and a time: `max(clock_ns(), last time)`,
   so time never goes backwards even if the wall clock does (the core requires non-decreasing times);
2. appends it to the journal (`Journal.append`: written to the OS, not yet durable). The codec checks
   the command there; a command it refuses (not a command, a string where an int belongs, an integer
   too large for the record format) fails only its own submitter, is not journaled, does not use a
   sequence number and never reaches the core.

Then it starts one `journal.commit()` (one fsync for the whole batch: group commit) on its own
single-thread executor and, while the fsync runs, applies the batch's commands to the engine on the
event loop. Only when the commit has returned are the batch's results released, in sequence order: no
submitter hears about a command before its journal record is on disk.

Pipelining and ordering. The `Journal` is not safe to append to while a commit is in flight on
another thread (a concurrent append could be counted as committed without being fsynced, and a
segment roll would close the file under the fsync), so appends and commits never overlap: the
pipeline is *append batch N -> (fsync batch N on the commit thread || apply batch N on the loop) ->
release batch N -> batch N+1*. At most one commit is ever in flight, batches are processed strictly
one after another, and each batch's results are released, in order, right after the commit that
covers them. While the fsync runs, the event loop stays free (once the batch is applied) to accept
submissions, which queue up and become the next batch: the more load, the bigger the batches, the
fewer fsyncs per command. Appending (encoding) and applying the engine run on the event-loop thread, so
a full batch of `batch_max` commands holds the loop for roughly `batch_max` x (encode + apply) time.

Failures.
- The codec refuses a command: that submitter gets the exception (`CodecError`, or the encoder's
  `TypeError`/`OverflowError`/...); the next commands proceed.
- The journal fails (an `OSError` from a write or from the fsync): an exchange that cannot persist
  must stop taking orders. Every future of the uncommitted batch and every queued command fails with
  `SequencerFailed` (the `OSError` as its cause), the sequencer stops, and later submits raise
  `SequencerFailed`. The in-memory engine may now be ahead of the disk: the process must restart and
  recover from the journal (`exchange.service.recovery.recover`). Commands that failed this way have an
  unknown outcome (their records may or may not have reached the disk), like commands in flight at a
  crash; clients resolve it with client order ids.
- The engine raises on a command the codec accepted (a bug in the core, which raises only on caller
  bugs the codec already rules out): the commands before it in the batch are committed and released
  normally; its submitter gets the engine's exception; the rest of the batch and the queue fail with
  `SequencerFailed` and the sequencer stops. The command's record is in the journal, so recovery will
  raise the same exception at the same sequence number: the core must be fixed before restarting.
- An `on_events` callback that raises is logged and counted (`on_events_errors`); it does not stop the
  sequencer (projections track the last sequence number they applied and can catch up from the journal).

A submitter that stops waiting (its task is cancelled, e.g. by a timeout) does not withdraw its
command: once queued, it is sequenced, journaled and applied; only the answer is dropped.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Protocol

from exchange.domain.commands import Command
from exchange.domain.engine import Engine
from exchange.domain.events import Event
from exchange.journal.journal import Journal

log = logging.getLogger(__name__)

FSYNC_SAMPLES_MAX = 1024


class SequencerError(Exception):
    """Base class of the sequencer's refusals."""


class SequencerBusy(SequencerError):
    """The queue is full: back off and retry (an API maps this to 503 or 429)."""


class SequencerStopped(SequencerError):
    """The sequencer is not taking commands: not started yet, stopping, or stopped."""


class SequencerFailed(SequencerStopped):
    """The sequencer stopped because the journal or the core failed; `__cause__` says why."""


class Sequenced(NamedTuple):
    """A command's place in history, released once its journal record is durable."""

    seq: int
    ts_ns: int
    events: list[Event]


OnEvents = Callable[[list[Sequenced]], None]


class State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class _Sink(Protocol):
    """Where one command's outcome goes: its own future, or its slot in a `submit_many` group."""

    def done(self) -> bool: ...

    def set_result(self, result: Sequenced) -> None: ...

    def set_exception(self, exception: BaseException) -> None: ...


class _Group:
    """The outcomes of one `submit_many` call, released together through one future."""

    __slots__ = ("future", "outcomes", "pending")

    def __init__(self, future: asyncio.Future[list[Sequenced | Exception]], size: int) -> None:
        self.future = future
        self.outcomes: list[Sequenced | Exception | None] = [None] * size
        self.pending = size

    def settle(self, index: int, outcome: Sequenced | Exception) -> None:
        if self.outcomes[index] is None:
            self.outcomes[index] = outcome
            self.pending -= 1
            if self.pending == 0 and not self.future.done():
                self.future.set_result([o for o in self.outcomes if o is not None])


class _Slot:
    """One command of a group. A refusal by the codec or the core is that command's outcome; a
    stopped sequencer fails the whole group."""

    __slots__ = ("group", "index")

    def __init__(self, group: _Group, index: int) -> None:
        self.group = group
        self.index = index

    def done(self) -> bool:
        return self.group.future.done() or self.group.outcomes[self.index] is not None

    def set_result(self, result: Sequenced) -> None:
        self.group.settle(self.index, result)

    def set_exception(self, exception: BaseException) -> None:
        if isinstance(exception, SequencerError) or not isinstance(exception, Exception):
            if not self.group.future.done():
                self.group.future.set_exception(exception)
        else:
            self.group.settle(self.index, exception)


_Pending = tuple[Command, _Sink]


class Sequencer:
    """Sequence numbers, times, journal, group commit and the core, behind one `submit`.

    The engine and the journal must be in step (the engine has applied exactly the journal's commands,
    as `recover` leaves them). The sequencer does not own the journal: close it after `stop()`.

    `on_events`, if given, is called on the event loop once per committed batch with the batch's
    `Sequenced` results in sequence order, before the batch's submitters are answered (so a projection
    fed by it is never behind an acknowledgement). Keep it quick: it runs inside the sequencer's loop.

    Metrics (plain attributes): `commands_sequenced`, `commands_refused`, `batches_committed`,
    `last_committed_seq`, `on_events_errors`, `queue_depth`, and `fsync_ns`, the durations of the last
    `FSYNC_SAMPLES_MAX` commits (flush + fsync, plus any wait for the GIL while the loop applies the
    batch, so under load they read higher than the disk's own fsync time).
    """

    def __init__(self, engine: Engine, journal: Journal, clock_ns: Callable[[], int] = time.time_ns,
                 batch_max: int = 1024, queue_max: int = 65536, on_events: OnEvents | None = None) -> None:
        if batch_max < 1 or queue_max < 1:
            raise ValueError(f"batch_max and queue_max must be positive, got {batch_max} and {queue_max}")
        if engine.commands_applied != journal.last_seq:
            raise ValueError(f"the engine has applied {engine.commands_applied} commands but the journal ends at "
                             f"seq {journal.last_seq}: recover the engine from the journal first")
        if journal.committed_seq != journal.last_seq:
            raise ValueError(f"the journal has uncommitted records after seq {journal.committed_seq}")
        self.engine = engine
        self.journal = journal
        self.clock_ns = clock_ns
        self.batch_max = batch_max
        self.queue_max = queue_max
        self.on_events = on_events
        # Metrics: plain attributes, read them any time.
        self.commands_sequenced = 0      # journaled, committed, applied and released
        self.commands_refused = 0        # refused by the codec, never journaled
        self.batches_committed = 0       # one fsync each
        self.last_committed_seq = journal.committed_seq
        self.fsync_ns: deque[int] = deque(maxlen=FSYNC_SAMPLES_MAX)  # latest commit durations, ns
        self.on_events_errors = 0
        self.failure: BaseException | None = None  # what stopped a FAILED sequencer
        self._reason = ""

        self._state = State.NEW
        self._last_ts = engine.stamp.ts_ns
        self._queue: deque[_Pending] = deque()
        self._batch: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        if self._state is not State.NEW:
            raise SequencerError(f"cannot start a sequencer that is {self._state.value}")
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-commit")
        self._state = State.RUNNING
        self._task = asyncio.create_task(self._run(), name="sequencer")

    async def stop(self) -> None:
        """Refuse new commands, sequence and commit everything already queued, then stop.

        Idempotent. Does not raise if the journal or the core failed: see `state` and `failure`.
        """
        if self._state is State.NEW:
            self._state = State.STOPPED
            return
        if self._state is State.RUNNING:
            self._state = State.STOPPING
            self._wakeup.set()
        if self._task is not None:
            await asyncio.shield(self._task)

    # -- submission --------------------------------------------------------------------------
    async def submit(self, command: Command) -> list[Event]:
        """The command's events, once its journal record is durable.

        Raises `SequencerBusy` at once if the queue is full, `SequencerStopped` if the sequencer is not
        running (`SequencerFailed` if it stopped on a failure), or what the codec raised for a command
        it cannot journal.
        """
        return (await self.submit_sequenced(command)).events

    async def submit_many(self, commands: Sequence[Command]) -> list[Sequenced | Exception]:
        """Submit several commands at once, in order; one outcome per command, released together once
        the last of them is durable. A command the codec (or the core) refuses has its exception as
        its outcome and the others go on; a sequencer that stops raises as for `submit`.

        For pipelining clients (and the benchmark's pipelined driver): one future and one wake-up per
        group instead of per command.
        """
        self._check_accepting(len(commands))
        assert self._loop is not None
        future: asyncio.Future[list[Sequenced | Exception]] = self._loop.create_future()
        if not commands:
            return []
        group = _Group(future, len(commands))
        self._queue.extend((command, _Slot(group, index)) for index, command in enumerate(commands))
        self._wakeup.set()
        return await future

    def _check_accepting(self, count: int) -> None:
        if self._state is not State.RUNNING:
            if self._state is State.FAILED:
                raise self._failed_error()
            raise SequencerStopped(f"the sequencer is {self._state.value}: not taking commands")
        if len(self._queue) + count > self.queue_max:
            raise SequencerBusy(f"{len(self._queue)} commands queued (limit {self.queue_max}): try again later")

    async def submit_sequenced(self, command: Command) -> Sequenced:
        """Like `submit`, with the command's sequence number and time."""
        self._check_accepting(1)
        assert self._loop is not None
        future: asyncio.Future[Sequenced] = self._loop.create_future()
        self._queue.append((command, future))
        self._wakeup.set()
        return await future

    # -- the loop ----------------------------------------------------------------------------
    async def _run(self) -> None:
        queue = self._queue
        try:
            while self._state is not State.FAILED:
                if not queue:
                    if self._state is not State.RUNNING:
                        break  # stopping and drained
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                count = min(len(queue), self.batch_max)
                self._batch = [queue.popleft() for _ in range(count)]
                committed = await self._process(self._batch)
                self._batch = []
                if not committed:
                    await asyncio.sleep(0)  # a batch of refusals only: let submitters run
        except BaseException as error:  # a bug here, or the task cancelled at loop shutdown
            self._fail(error, "the sequencer loop raised")
            raise
        finally:
            if self._state is State.STOPPING:
                self._state = State.STOPPED
            assert self._executor is not None
            self._executor.shutdown(wait=False)

    async def _process(self, batch: list[_Pending]) -> bool:
        """Append, commit || apply, release one batch. False if nothing was committed."""
        journal, engine, clock = self.journal, self.engine, self.clock_ns
        appended: list[tuple[int, int, Command, _Sink]] = []
        for command, future in batch:
            seq = journal.last_seq + 1
            ts = max(clock(), self._last_ts)  # never backwards: the core needs non-decreasing times
            try:
                journal.append(seq, ts, command)
            except OSError as error:
                self._fail(error, f"the journal write of seq {seq} failed")
                return False
            except Exception as error:  # the codec refused it: nothing written, seq not used
                self.commands_refused += 1
                if not future.done():
                    future.set_exception(error)
                continue
            self._last_ts = ts
            appended.append((seq, ts, command, future))
        if not appended:
            return False

        assert self._loop is not None
        commit = self._loop.run_in_executor(self._executor, self._commit)
        results: list[Sequenced] = []
        core_error: Exception | None = None
        for seq, ts, command, _ in appended:  # on the loop while the fsync runs on the commit thread
            try:
                events = engine.apply(command, ts)
            except Exception as error:
                core_error = error
                break
            results.append(Sequenced(seq, ts, events))
        try:
            durable_seq, elapsed_ns = await commit
        except Exception as error:
            self._fail(error, f"the journal commit of seq {appended[0][0]}..{appended[-1][0]} failed")
            return False
        assert durable_seq >= appended[-1][0], (durable_seq, appended[-1][0])
        self.batches_committed += 1
        self.last_committed_seq = durable_seq
        self.fsync_ns.append(elapsed_ns)
        self.commands_sequenced += len(results)

        if results and self.on_events is not None:
            try:
                self.on_events(results)
            except Exception:
                self.on_events_errors += 1
                log.exception("on_events callback failed for seq %d..%d", results[0].seq, results[-1].seq)
        for (_, _, _, future), result in zip(appended, results, strict=False):
            if not future.done():
                future.set_result(result)
        if core_error is not None:
            seq, _, command, future = appended[len(results)]
            if not future.done():
                future.set_exception(core_error)
            self._fail(core_error, f"the core raised applying seq {seq} ({type(command).__name__}); "
                                   "its record is journaled, so recovery will stop there too")
        return True

    def _commit(self) -> tuple[int, int]:
        """On the commit thread: fsync, and how long it took."""
        start = time.perf_counter_ns()
        durable_seq = self.journal.commit()
        return durable_seq, time.perf_counter_ns() - start

    # -- failure -----------------------------------------------------------------------------
    def _fail(self, cause: BaseException, reason: str) -> None:
        """Stop for good: fail every unanswered command of the current batch and the queue."""
        if self._state is State.FAILED:
            return
        self._state = State.FAILED
        self.failure = cause
        self._reason = reason
        log.error("sequencer stopped: %s: %r", reason, cause)
        for _, future in [*self._batch, *self._queue]:
            if not future.done():
                future.set_exception(self._failed_error())
        self._queue.clear()
        self._wakeup.set()

    def _failed_error(self) -> SequencerFailed:
        error = SequencerFailed(f"the sequencer stopped: {self._reason}: {self.failure!r}")
        error.__cause__ = self.failure
        return error
