"""The durable service over a real data directory: recovery, snapshots, projection catch-up, lock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from exchange.domain.codes import CancelReason
from exchange.domain.commands import (
    AdvanceTime,
    CancelAllAfter,
    Command,
    CreateAccount,
    Deposit,
    ListSeries,
    PlaceOrder,
)
from exchange.domain.engine import Engine
from exchange.domain.events import CancelAllAfterSet, DeadMansSwitchFired, Event, OrderCancelled
from exchange.domain.order import Side, TimeInForce
from exchange.domain.statehash import state_hash
from exchange.journal import read_entries
from exchange.service.exchange_service import DataDirLocked, ExchangeService, ServiceConfig, verify_replay
from exchange.service.sequencer import Sequenced
from exchange.service.snapshot import snapshot_files
from exchange.testing.flow import random_commands
from exchange.testing.specs import T0_NS, make_spec


class ReplayClock:
    """Gives the flow's own timestamps back, so live and replayed states are comparable (with the
    deadline task off: its clock reads would take timestamps meant for the commands)."""

    def __init__(self, times: list[int]) -> None:
        self.times = iter(times)
        self.last = 0

    def __call__(self) -> int:
        self.last = next(self.times, self.last)
        return self.last


class RecordingProjector:
    """A projection that keeps every seq it was given, and checks it never sees one twice."""

    def __init__(self, last_seq: int = 0) -> None:
        self._last = last_seq
        self.seen: list[int] = []

    def last_seq(self) -> int:
        return self._last

    def project(self, batch: Sequence[Sequenced]) -> None:
        for item in batch:
            if item.seq <= self._last:
                continue
            assert item.seq == self._last + 1, f"projection gap: {self._last} -> {item.seq}"
            self.seen.append(item.seq)
            self._last = item.seq


class ManualClock:
    """A clock the test sets by hand."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


class CapturingProjector(RecordingProjector):
    """Also keeps every event it was given."""

    def __init__(self, last_seq: int = 0) -> None:
        super().__init__(last_seq)
        self.events: list[Event] = []

    def project(self, batch: Sequence[Sequenced]) -> None:
        super().project(batch)
        self.events.extend(e for item in batch for e in item.events)


def _run(service: ExchangeService, commands: list[Command]) -> None:
    async def main() -> None:
        await service.start()
        for command in commands:
            await service.submit(command)
        await service.stop()
    asyncio.run(main())


def _reference(stream: list[tuple[Command, int]]) -> str:
    engine = Engine()
    for command, ts in stream:
        engine.apply(command, ts)
    return state_hash(engine)


def test_restart_recovers_the_exact_state_with_and_without_snapshots(tmp_path: Path) -> None:
    stream = random_commands(21, 1_200)
    config = ServiceConfig(tmp_path, snapshot_every_commands=0, deadline_poll_ms=0)
    first, second = stream[:700], stream[700:]
    _run(ExchangeService(config, clock_ns=ReplayClock([ts for _, ts in first])), [c for c, _ in first])
    assert _reference(first) == verify_replay(config).from_scratch
    service = ExchangeService(config)
    report = service.open()
    assert (report.snapshot_seq, report.journal_seq) == (0, 700)
    service.snapshot_now()
    service.close()
    _run(ExchangeService(config, clock_ns=ReplayClock([ts for _, ts in second])), [c for c, _ in second])
    reopened = ExchangeService(config)
    report = reopened.open()
    assert (report.snapshot_seq, report.journal_seq, report.replayed) == (700, len(stream), len(second))
    assert reopened.engine is not None and state_hash(reopened.engine) == _reference(stream)
    reopened.close()
    check = verify_replay(config)
    assert check.ok and check.snapshot_seq == 700 and check.from_scratch == _reference(stream)


@pytest.mark.parametrize("mode", ["inline", "fork"])
def test_periodic_snapshots_are_written_and_valid(tmp_path: Path, mode: str) -> None:
    stream = random_commands(22, 900)
    config = ServiceConfig(tmp_path, snapshot_every_commands=200, snapshot_mode=mode,  # type: ignore[arg-type]
                           deadline_poll_ms=0)
    _run(ExchangeService(config, clock_ns=ReplayClock([ts for _, ts in stream])), [c for c, _ in stream])
    assert snapshot_files(config.snapshot_dir), "no snapshot written"
    check = verify_replay(config)
    assert check.ok and check.snapshot_seq is not None and check.from_scratch == _reference(stream)


def test_a_lagging_projection_catches_up_without_gaps_or_duplicates(tmp_path: Path) -> None:
    stream = random_commands(23, 600)
    config = ServiceConfig(tmp_path, snapshot_every_commands=250, snapshot_mode="inline", deadline_poll_ms=0)
    projector = RecordingProjector()
    _run(ExchangeService(config, projector, ReplayClock([ts for _, ts in stream])), [c for c, _ in stream])
    assert projector.seen == list(range(1, len(stream) + 1))
    # A projection that crashed after seq 300 (its own transaction recorded 300): it gets 301.. again,
    # from a snapshot no newer than 300 plus the journal.
    lagging = RecordingProjector(last_seq=300)
    service = ExchangeService(config, lagging)
    report = service.open()
    service.close()
    assert lagging.seen == list(range(301, len(stream) + 1))
    assert report.snapshot_seq <= 300 and report.projected == len(stream) - 300


def test_one_process_per_data_directory(tmp_path: Path) -> None:
    config = ServiceConfig(tmp_path)
    first = ExchangeService(config)
    first.open()
    with pytest.raises(DataDirLocked, match="in use"):
        ExchangeService(config).open()
    first.close()
    second = ExchangeService(config)
    second.open()
    second.close()


# -- the deadline task ----------------------------------------------------------------------------

MS = 1_000_000  # ns
SYMBOL = "H100-M40-261203"


def _journaled(config: ServiceConfig) -> list[tuple[Command, int]]:
    return [(entry.command, entry.ts_ns) for entry in read_entries(config.journal_dir)]


async def _until(condition: Callable[[], bool], timeout_s: float = 2.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


@pytest.mark.parametrize("snapshot", [False, True])
def test_a_dead_mans_switch_armed_before_a_restart_fires_after_it_without_traffic(tmp_path: Path,
                                                                                   snapshot: bool) -> None:
    clock = ManualClock(T0_NS)
    config = ServiceConfig(tmp_path, snapshot_every_commands=0, deadline_poll_ms=10)
    setup: list[Command] = [
        ListSeries(make_spec()), CreateAccount(1), Deposit(1, 10**11), CreateAccount(2), Deposit(2, 10**11),
        PlaceOrder(1, SYMBOL, Side.BUY, 2, 470), PlaceOrder(1, SYMBOL, Side.SELL, 1, 490),
        PlaceOrder(2, SYMBOL, Side.BUY, 3, 469),
    ]
    armed: list[Event] = []

    async def arm() -> None:
        service = ExchangeService(config, clock_ns=clock)
        await service.start()
        for command in setup:
            await service.submit(command)
        armed.extend(await service.submit(CancelAllAfter(1, 5_000)))
        await asyncio.sleep(0.1)  # ten polls: nothing is due yet
        await service.stop()
    asyncio.run(arm())
    deadline = T0_NS + 5_000 * MS
    assert armed == [CancelAllAfterSet(armed[0].seq, T0_NS, 1, deadline)]
    assert len(_journaled(config)) == len(setup) + 1
    if snapshot:
        service = ExchangeService(config)
        service.open()
        service.snapshot_now()
        service.close()

    # The process was down past the deadline: the restarted service fires it with no command sent.
    clock.now_ns = deadline + 2_000 * MS
    projector = CapturingProjector(last_seq=len(setup) + 1)  # caught up before the restart
    restarted = ExchangeService(config, projector, clock_ns=clock)
    report = restarted.open()
    assert report.snapshot_seq == (len(setup) + 1 if snapshot else 0)
    engine = restarted.engine
    assert engine is not None and engine.accounts[1].cancel_all_at_ns == deadline
    assert engine.next_deadline_ns == deadline

    async def restart() -> bool:
        await restarted.start()
        fired = await _until(lambda: not engine.accounts[1].orders)
        await restarted.stop()
        return fired
    assert asyncio.run(restart()), "the deadline task did not fire the switch"
    assert engine.accounts[1].cancel_all_at_ns == 0
    assert [o.order_id for o in engine.orders.values()] == [3]  # account 2's order stays
    journaled = _journaled(config)
    assert journaled[-1] == (AdvanceTime(), clock.now_ns) and len(journaled) == len(setup) + 2
    assert projector.seen == [len(setup) + 2]
    fired = projector.events
    assert [(type(e), getattr(e, "order_id", None)) for e in fired] == [
        (OrderCancelled, 1), (OrderCancelled, 2), (DeadMansSwitchFired, None)]
    assert all(e.reason is CancelReason.DEAD_MANS_SWITCH for e in fired if isinstance(e, OrderCancelled))
    assert fired[-1] == DeadMansSwitchFired(fired[-1].seq, clock.now_ns, 1, 2)
    check = verify_replay(config)
    assert check.ok and check.from_scratch == state_hash(engine)


def test_an_idle_service_journals_nothing_and_a_due_deadline_exactly_once(tmp_path: Path) -> None:
    clock = ManualClock(T0_NS)
    config = ServiceConfig(tmp_path, snapshot_every_commands=0, deadline_poll_ms=5)
    expire = T0_NS + 3_600 * 1_000 * MS
    setup: list[Command] = [
        ListSeries(make_spec()), CreateAccount(1), Deposit(1, 10**11),
        PlaceOrder(1, SYMBOL, Side.BUY, 2, 470, tif=TimeInForce.GTD, expire_ts_ns=expire),
        CancelAllAfter(1, 86_400_000),  # armed, due in a day
    ]
    service = ExchangeService(config, clock_ns=clock)

    async def main() -> None:
        await service.start()
        assert service.sequencer is not None and service.engine is not None
        for command in setup:
            await service.submit(command)
        await asyncio.sleep(0.3)  # ~60 polls with nothing due
        assert service.sequencer.commands_sequenced == len(setup)
        clock.now_ns = expire  # the GTD order is due: one AdvanceTime, then idle again
        assert await _until(lambda: service.engine is not None and not service.engine.orders)
        await asyncio.sleep(0.2)
        assert service.sequencer.commands_sequenced == len(setup) + 1
        task = service._deadline_task
        assert task is not None and not task.done()
        await service.stop()
        assert task.done() and service._deadline_task is None  # stop() waited for it
        assert asyncio.all_tasks() == {asyncio.current_task()}
    asyncio.run(main())
    journaled = _journaled(config)
    assert [c for c, _ in journaled] == [*setup, AdvanceTime()] and journaled[-1][1] == expire
    assert service.engine is not None and service.engine.accounts[1].cancel_all_at_ns != 0  # not due yet


def test_no_deadline_task_when_polling_is_off(tmp_path: Path) -> None:
    clock = ManualClock(T0_NS)
    config = ServiceConfig(tmp_path, deadline_poll_ms=0)
    service = ExchangeService(config, clock_ns=clock)

    async def main() -> None:
        await service.start()
        await service.submit(CreateAccount(1))
        await service.submit(CancelAllAfter(1, 1))
        clock.now_ns += 10 * MS
        await asyncio.sleep(0.1)
        assert service._deadline_task is None
        await service.stop()
    asyncio.run(main())
    assert [c for c, _ in _journaled(config)] == [CreateAccount(1), CancelAllAfter(1, 1)]


def test_the_deadline_task_ends_quietly_when_the_sequencer_stops_first(tmp_path: Path) -> None:
    clock = ManualClock(T0_NS)
    service = ExchangeService(ServiceConfig(tmp_path, deadline_poll_ms=5), clock_ns=clock)

    async def main() -> None:
        await service.start()
        assert service.sequencer is not None
        await service.submit(CreateAccount(1))
        await service.submit(CancelAllAfter(1, 1))
        await service.sequencer.stop()  # e.g. a failure: the task must not raise or spin
        clock.now_ns += 10 * MS  # a deadline is due, but nobody can take the AdvanceTime
        task = service._deadline_task
        assert task is not None
        await asyncio.wait_for(task, timeout=2)
        assert task.exception() is None
        await service.stop()
    asyncio.run(main())
