"""The sequencer: group commit, nothing released before it is durable, refusals, backpressure, a clean
stop, a monotonic clock, failures that stop it, recovery, and crash-consistency under SIGKILL."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from exchange.domain.commands import Command, CreateAccount, Deposit, Withdraw
from exchange.domain.engine import Engine
from exchange.domain.events import Event
from exchange.domain.statehash import state_hash
from exchange.journal import CodecError, Journal, read_entries
from exchange.service.recovery import recover
from exchange.service.sequencer import (
    Sequenced,
    Sequencer,
    SequencerBusy,
    SequencerFailed,
    SequencerStopped,
    State,
)
from exchange.service.witness import JournalBehind
from exchange.testing.flow import random_commands
from exchange.testing.specs import T0_NS
from tests.service.crashing import run_and_kill


def ticking_clock(start: int = T0_NS, step: int = 1_000) -> Callable[[], int]:
    now = start - step

    def clock() -> int:
        nonlocal now
        now += step
        return now

    return clock


class GatedJournal(Journal):
    """A journal whose commit waits (on the commit thread) until the test opens the gate."""

    gate: threading.Event
    commits_started: int

    def commit(self) -> int:
        self.commits_started += 1
        assert self.gate.wait(timeout=10), "the test never opened the gate"
        return super().commit()


def gated_journal(directory: Path) -> GatedJournal:
    journal = GatedJournal.open(directory)
    assert isinstance(journal, GatedJournal)
    journal.gate = threading.Event()
    journal.commits_started = 0
    return journal


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(main())


def state_of(sequencer: Sequencer) -> State:
    return sequencer.state  # (a call, so that mypy does not narrow the state across awaits)


def entries(directory: Path) -> list[tuple[int, int, Command]]:
    return [(e.seq, e.ts_ns, e.command) for e in read_entries(directory)]


def test_concurrent_flow_replays_to_the_same_state(tmp_path: Path) -> None:
    stream = [c for c, _ in random_commands(11, 2_000)]
    setup, rest = stream[:12], stream[12:]
    engine = Engine()
    journal = Journal.open(tmp_path)
    results: list[Sequenced] = []
    released: list[Sequenced] = []

    async def main() -> None:
        sequencer = Sequencer(engine, journal, clock_ns=ticking_clock(), batch_max=64,
                              on_events=released.extend)
        await sequencer.start()
        for command in setup:
            results.append(await sequencer.submit_sequenced(command))

        async def worker(commands: list[Command]) -> None:
            for command in commands:
                results.append(await sequencer.submit_sequenced(command))

        await asyncio.gather(*(worker(rest[k::7]) for k in range(7)))
        await sequencer.stop()
        assert sequencer.state is State.STOPPED
        assert sequencer.commands_sequenced == len(stream) == sequencer.last_committed_seq
        assert sequencer.batches_committed < len(stream)
        assert 0 < len(sequencer.fsync_ns) <= sequencer.batches_committed

    run(main)
    journal.close()
    assert sorted(r.seq for r in results) == list(range(1, len(stream) + 1))
    assert [r.seq for r in released] == list(range(1, len(stream) + 1))  # the hook sees seq order
    by_seq = {r.seq: r for r in results}
    journaled = entries(tmp_path)
    assert [seq for seq, _, _ in journaled] == list(range(1, len(stream) + 1))
    assert sorted(map(repr, (c for _, _, c in journaled))) == sorted(map(repr, stream))
    for seq, ts, _ in journaled:
        assert by_seq[seq].ts_ns == ts
        assert all(event.ts_ns == ts for event in by_seq[seq].events)
    assert any(r.events for r in results)
    recovered, journal2 = recover(Engine, tmp_path)
    journal2.close()
    assert state_hash(recovered) == state_hash(engine)
    recovered.audit()


def test_group_commit_groups(tmp_path: Path) -> None:
    async def main() -> None:
        with Journal.open(tmp_path) as journal:
            sequencer = Sequencer(Engine(), journal, clock_ns=ticking_clock())
            await sequencer.start()
            await sequencer.submit(CreateAccount(1))
            results = await asyncio.gather(*(sequencer.submit(Deposit(1, 1 + k)) for k in range(500)))
            await sequencer.stop()
            assert all(len(events) == 1 for events in results)
            assert sequencer.commands_sequenced == 501
            assert sequencer.batches_committed <= 10, sequencer.batches_committed

    run(main)
    assert len(entries(tmp_path)) == 501


def test_nothing_is_released_before_its_commit(tmp_path: Path) -> None:
    journal = gated_journal(tmp_path)
    engine = Engine()

    async def main() -> None:
        sequencer = Sequencer(engine, journal, clock_ns=ticking_clock())
        await sequencer.start()
        first = asyncio.create_task(sequencer.submit(CreateAccount(1)))
        await eventually(lambda: journal.commits_started == 1)
        await asyncio.sleep(0.05)
        assert engine.commands_applied == 1  # applied while the fsync is in flight...
        assert not first.done()              # ...but not released
        assert sequencer.commands_sequenced == 0 and sequencer.last_committed_seq == 0
        # The loop keeps accepting submissions while the commit is blocked; they form the next batch.
        second = asyncio.create_task(sequencer.submit(Deposit(1, 5)))
        third = asyncio.create_task(sequencer.submit(Deposit(1, 7)))
        await eventually(lambda: sequencer.queue_depth == 2)
        assert not second.done()
        journal.gate.set()
        assert [type(e).__name__ for e in await first] == ["AccountCreated"]
        assert [type(e).__name__ for e in await second] == ["CashMoved"]
        await third
        await sequencer.stop()
        assert sequencer.batches_committed == 2  # the two queued commands shared one commit
        assert sequencer.last_committed_seq == 3

    run(main)
    journal.close()
    assert [seq for seq, _, _ in entries(tmp_path)] == [1, 2, 3]


def test_bad_commands_fail_only_their_submitter(tmp_path: Path) -> None:
    engine = Engine()
    journal = Journal.open(tmp_path)

    async def main() -> None:
        sequencer = Sequencer(engine, journal, clock_ns=ticking_clock())
        await sequencer.start()
        bad: list[Any] = ["not a command", Deposit(1, "100"), Withdraw(1, 2**70), CreateAccount(None)]  # type: ignore[arg-type]
        good: list[Command] = [CreateAccount(1), Deposit(1, 100), Withdraw(1, 30)]
        outcomes = await asyncio.gather(
            *(sequencer.submit(c) for pair in zip(good, bad, strict=False) for c in pair),
            sequencer.submit(bad[-1]), return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(errors) == 4 and all(isinstance(e, ValueError | TypeError | OverflowError) for e in errors)
        assert isinstance(outcomes[1], CodecError) and isinstance(outcomes[3], CodecError)
        assert sequencer.commands_refused == 4
        assert sequencer.commands_sequenced == 3 and journal.last_seq == 3
        # The sequencer keeps going.
        assert [type(e).__name__ for e in await sequencer.submit(Deposit(1, 1))] == ["CashMoved"]
        await sequencer.stop()

    run(main)
    journal.close()
    assert [(seq, c) for seq, _, c in entries(tmp_path)] == [
        (1, CreateAccount(1)), (2, Deposit(1, 100)), (3, Withdraw(1, 30)), (4, Deposit(1, 1))]
    recovered, journal2 = recover(Engine, tmp_path)
    journal2.close()
    assert state_hash(recovered) == state_hash(engine)
    assert recovered.ledger.balances[1] == 71


def test_a_full_queue_refuses_at_once(tmp_path: Path) -> None:
    journal = gated_journal(tmp_path)

    async def main() -> None:
        sequencer = Sequencer(Engine(), journal, clock_ns=ticking_clock(), queue_max=3)
        await sequencer.start()
        first = asyncio.create_task(sequencer.submit(CreateAccount(1)))
        await eventually(lambda: journal.commits_started == 1)
        queued = [asyncio.create_task(sequencer.submit(Deposit(1, k + 1))) for k in range(3)]
        await eventually(lambda: sequencer.queue_depth == 3)
        with pytest.raises(SequencerBusy):
            await asyncio.wait_for(sequencer.submit(Deposit(1, 99)), timeout=1)
        journal.gate.set()
        await first
        await asyncio.gather(*queued)
        await sequencer.submit(Deposit(1, 99))  # room again
        await sequencer.stop()

    run(main)
    journal.close()
    assert len(entries(tmp_path)) == 5


def test_stop_drains_then_refuses(tmp_path: Path) -> None:
    journal = gated_journal(tmp_path)

    async def main() -> None:
        sequencer = Sequencer(Engine(), journal, clock_ns=ticking_clock())
        with pytest.raises(SequencerStopped):
            await sequencer.submit(CreateAccount(1))  # not started
        await sequencer.start()
        first = asyncio.create_task(sequencer.submit(CreateAccount(1)))
        await eventually(lambda: journal.commits_started == 1)
        queued = [asyncio.create_task(sequencer.submit(Deposit(1, k + 1))) for k in range(20)]
        await eventually(lambda: sequencer.queue_depth == 20)
        stopping = asyncio.create_task(sequencer.stop())
        await asyncio.sleep(0)
        assert state_of(sequencer) is State.STOPPING
        with pytest.raises(SequencerStopped, match="stopping"):
            await sequencer.submit(Deposit(1, 1_000))
        journal.gate.set()
        await stopping
        assert sequencer.state is State.STOPPED
        assert all(t.done() and not t.exception() for t in [first, *queued])
        assert sequencer.last_committed_seq == 21 and journal.committed_seq == 21
        with pytest.raises(SequencerStopped):
            await sequencer.submit(Deposit(1, 1_000))
        await sequencer.stop()  # idempotent

    run(main)
    journal.close()
    assert len(entries(tmp_path)) == 21


def test_time_never_goes_backwards(tmp_path: Path) -> None:
    times = iter([T0_NS + 100, T0_NS + 50, T0_NS + 200, T0_NS + 150, T0_NS + 10, T0_NS + 300])

    async def main() -> None:
        with Journal.open(tmp_path) as journal:
            sequencer = Sequencer(Engine(), journal, clock_ns=lambda: next(times))
            await sequencer.start()
            commands: list[Command] = [CreateAccount(1), *(Deposit(1, k) for k in range(1, 6))]
            stamps = [(await sequencer.submit_sequenced(c)).ts_ns for c in commands]
            await sequencer.stop()
        assert stamps == [T0_NS + d for d in (100, 100, 200, 200, 200, 300)]

    run(main)
    assert [ts - T0_NS for _, ts, _ in entries(tmp_path)] == [100, 100, 200, 200, 200, 300]
    # After a restart, time continues from the journal's last time, not from a clock that lags behind.
    engine, journal = recover(Engine, tmp_path)

    async def again() -> None:
        sequencer = Sequencer(engine, journal, clock_ns=lambda: T0_NS)
        await sequencer.start()
        assert (await sequencer.submit_sequenced(Deposit(1, 6))).ts_ns == T0_NS + 300
        await sequencer.stop()

    run(again)
    journal.close()


class FailingJournal(Journal):
    fail_on_commit: int
    commits: int

    def commit(self) -> int:
        self.commits += 1
        if self.commits == self.fail_on_commit:
            raise OSError(5, "Input/output error")
        return super().commit()


def test_a_failed_commit_fails_the_batch_and_stops(tmp_path: Path) -> None:
    journal = FailingJournal.open(tmp_path)
    assert isinstance(journal, FailingJournal)
    journal.fail_on_commit, journal.commits = 2, 0

    async def main() -> None:
        sequencer = Sequencer(Engine(), journal, clock_ns=ticking_clock())
        await sequencer.start()
        await sequencer.submit(CreateAccount(1))
        outcomes = await asyncio.gather(*(sequencer.submit(Deposit(1, k + 1)) for k in range(10)),
                                        return_exceptions=True)
        assert all(isinstance(o, SequencerFailed) and isinstance(o.__cause__, OSError) for o in outcomes)
        assert sequencer.state is State.FAILED and isinstance(sequencer.failure, OSError)
        assert sequencer.commands_sequenced == 1 and sequencer.last_committed_seq == 1
        with pytest.raises(SequencerFailed):
            await sequencer.submit(Deposit(1, 1))
        await sequencer.stop()
        assert sequencer.state is State.FAILED

    run(main)


class UnwritableJournal(Journal):
    appends: int

    def append(self, seq: int, ts_ns: int, command: Command) -> None:
        self.appends += 1
        if self.appends == 3:
            raise OSError(28, "No space left on device")
        super().append(seq, ts_ns, command)


def test_a_failed_write_fails_the_batch_and_stops(tmp_path: Path) -> None:
    journal = UnwritableJournal.open(tmp_path)
    assert isinstance(journal, UnwritableJournal)
    journal.appends = 0

    async def main() -> None:
        sequencer = Sequencer(Engine(), journal, clock_ns=ticking_clock())
        await sequencer.start()
        await sequencer.submit(CreateAccount(1))
        outcomes = await asyncio.gather(*(sequencer.submit(Deposit(1, k + 1)) for k in range(5)),
                                        return_exceptions=True)
        assert all(isinstance(o, SequencerFailed) for o in outcomes)
        assert isinstance(sequencer.failure, OSError) and sequencer.failure.errno == 28
        assert sequencer.commands_sequenced == 1 and sequencer.batches_committed == 1
        await sequencer.stop()

    run(main)


class FaultyEngine(Engine):
    """A core with a bug: it raises on one particular deposit."""

    def apply(self, command: Command, ts_ns: int) -> list[Event]:
        if command == Deposit(1, 13):
            raise RuntimeError("core bug")
        return super().apply(command, ts_ns)


def test_a_core_failure_releases_what_came_before_and_stops(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)

    async def main() -> None:
        sequencer = Sequencer(FaultyEngine(), journal, clock_ns=ticking_clock())
        await sequencer.start()
        await sequencer.submit(CreateAccount(1))
        outcomes = await asyncio.gather(*(sequencer.submit(Deposit(1, k)) for k in range(10, 16)),
                                        return_exceptions=True)
        assert [type(o).__name__ for o in outcomes] == ["list"] * 3 + ["RuntimeError"] + ["SequencerFailed"] * 2
        assert sequencer.state is State.FAILED and sequencer.commands_sequenced == 4
        await sequencer.stop()

    run(main)
    journal.close()
    # The faulty command is journaled: recovery with the same core stops at it, loudly.
    with pytest.raises(RuntimeError, match="core bug"):
        recover(FaultyEngine, tmp_path)


def test_a_cancelled_submitter_does_not_stop_the_sequencer(tmp_path: Path) -> None:
    journal = gated_journal(tmp_path)

    async def main() -> None:
        sequencer = Sequencer(Engine(), journal, clock_ns=ticking_clock())
        await sequencer.start()
        impatient = asyncio.create_task(sequencer.submit(CreateAccount(1)))
        await eventually(lambda: journal.commits_started == 1)
        impatient.cancel()
        journal.gate.set()
        assert await sequencer.submit(Deposit(1, 5))
        await sequencer.stop()
        assert impatient.cancelled() and sequencer.commands_sequenced == 2

    run(main)
    journal.close()
    assert len(entries(tmp_path)) == 2  # a queued command is not withdrawn by giving up on its answer


def test_on_events_errors_are_counted_not_fatal(tmp_path: Path) -> None:
    def broken(_: list[Sequenced]) -> None:
        raise ValueError("projection bug")

    async def main() -> None:
        with Journal.open(tmp_path) as journal:
            sequencer = Sequencer(Engine(), journal, clock_ns=ticking_clock(), on_events=broken)
            await sequencer.start()
            await sequencer.submit(CreateAccount(1))
            await sequencer.submit(Deposit(1, 1))
            await sequencer.stop()
            assert sequencer.on_events_errors == 2 and sequencer.commands_sequenced == 2

    run(main)


def test_engine_and_journal_must_be_in_step(tmp_path: Path) -> None:
    engine = Engine()
    engine.apply(CreateAccount(1), T0_NS)
    with Journal.open(tmp_path) as journal, pytest.raises(ValueError, match="recover"):
        Sequencer(engine, journal)


def test_recover_from_a_snapshot_replays_only_the_tail(tmp_path: Path) -> None:
    stream = random_commands(5, 600)
    with Journal.open(tmp_path) as journal:
        for seq, (command, ts) in enumerate(stream, start=1):
            journal.append(seq, ts, command)
        journal.commit()
    at = 300
    snapshot_engine = Engine()
    for command, ts in stream[:at]:
        snapshot_engine.apply(command, ts)
    full, journal1 = recover(Engine, tmp_path)
    journal1.close()

    def no_factory() -> Engine:
        raise AssertionError("a snapshot was given")

    from_snapshot, journal2 = recover(no_factory, tmp_path, snapshot=(at, snapshot_engine))
    journal2.close()
    assert from_snapshot is snapshot_engine and state_hash(from_snapshot) == state_hash(full)
    with pytest.raises(JournalBehind, match="snapshot loaded"):
        recover(Engine, tmp_path, snapshot=(len(stream) + 1, Engine()))


# -- crash consistency -------------------------------------------------------------------------
def _crash_seeds() -> list[int]:
    return list(range(int(os.environ.get("CRASH_SEEDS", "5"))))


@pytest.mark.parametrize("seed", _crash_seeds())
def test_sigkill_loses_nothing_acknowledged(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    count = 30_000
    directory = tmp_path / "journal"
    acks = run_and_kill(["--dir", str(directory), "--seed", str(seed), "--count", str(count),
                         "--window", str(rng.choice((1, 16, 256)))], rng.uniform(0.02, 0.6))

    stream = random_commands(seed, count)
    engine, journal = recover(Engine, directory)
    journal.close()
    journaled = [(e.command, e.ts_ns) for e in read_entries(directory)]
    prefix = len(journaled)
    assert journaled == stream[:prefix]  # a prefix of the stream, times included
    for seq, index in acks:
        assert seq == index + 1 and seq <= prefix  # every acknowledged command survived, in order
    assert prefix >= max((seq for seq, _ in acks), default=0)
    clean = Engine()
    for command, ts in stream[:prefix]:
        clean.apply(command, ts)
    assert state_hash(engine) == state_hash(clean)
    engine.audit()
    assert engine.ledger.total() == 0
    print(f"seed {seed}: {len(acks)} acknowledged, {prefix} journaled of {len(stream)}")


# -- submit_many -------------------------------------------------------------------------------
def test_submit_many_gives_one_outcome_per_command_in_order_and_replays_identically(tmp_path: Path) -> None:
    stream = random_commands(8, 600)
    engine = Engine()

    async def main() -> None:
        journal = Journal.open(tmp_path)
        sequencer = Sequencer(engine, journal, ticking_clock())
        await sequencer.start()
        outcomes: list[Sequenced | Exception] = []
        for start in range(0, len(stream), 50):
            outcomes += await sequencer.submit_many([c for c, _ in stream[start:start + 50]])
        # A refused command (a string amount) is that command's outcome; its neighbours go through.
        mixed = await sequencer.submit_many([Deposit(1, 5), Deposit(1, "5"), Deposit(1, 6)])  # type: ignore[arg-type]
        await sequencer.stop()
        journal.close()
        assert all(isinstance(o, Sequenced) for o in outcomes)
        assert [o.seq for o in outcomes if isinstance(o, Sequenced)] == list(range(1, len(stream) + 1))
        assert isinstance(mixed[0], Sequenced) and isinstance(mixed[1], CodecError) and isinstance(mixed[2], Sequenced)
        assert mixed[2].seq == mixed[0].seq + 1  # the refused one used no sequence number

    run(main)
    recovered, journal = recover(Engine, tmp_path)
    journal.close()
    assert state_hash(recovered) == state_hash(engine)


def test_submit_many_is_refused_whole_when_stopped_or_too_big(tmp_path: Path) -> None:
    async def main() -> None:
        journal = Journal.open(tmp_path)
        sequencer = Sequencer(Engine(), journal, ticking_clock(), queue_max=10)
        await sequencer.start()
        with pytest.raises(SequencerBusy):
            await sequencer.submit_many([CreateAccount(k + 1) for k in range(11)])
        assert await sequencer.submit_many([]) == []
        await sequencer.stop()
        with pytest.raises(SequencerStopped):
            await sequencer.submit_many([CreateAccount(1)])
        journal.close()
        assert journal.last_seq == 0

    run(main)
