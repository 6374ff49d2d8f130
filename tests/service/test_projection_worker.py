"""The projection thread: batches reach the store in order, merged, off the event loop; waiters wake
when their seq is in; a failing store fails the waiters instead of hanging them."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from exchange.service.projection_worker import ProjectionFailed, ProjectionWorker
from exchange.service.sequencer import Sequenced


class SlowStore:
    def __init__(self, delay_s: float = 0.0, fail_at: int | None = None) -> None:
        self.delay_s = delay_s
        self.fail_at = fail_at
        self.seqs: list[int] = []
        self.transactions = 0
        self.threads: set[str] = set()

    def last_seq(self) -> int:
        return self.seqs[-1] if self.seqs else 0

    def project(self, batch: Sequence[Sequenced]) -> None:
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        if self.fail_at is not None and any(s.seq >= self.fail_at for s in batch):
            raise OSError("disk full")
        self.transactions += 1
        self.seqs.extend(s.seq for s in batch)


def _batch(first: int, n: int) -> list[Sequenced]:
    return [Sequenced(seq, seq, []) for seq in range(first, first + n)]


def test_batches_arrive_in_order_merged_and_off_the_loop() -> None:
    store = SlowStore(delay_s=0.02)

    async def run() -> None:
        worker = ProjectionWorker(store, asyncio.get_running_loop(), projected_seq=0)
        for first in range(1, 101, 5):
            worker.submit(_batch(first, 5))
        started = time.perf_counter()
        await asyncio.sleep(0)           # the loop is free while the store works
        assert time.perf_counter() - started < 0.015
        await worker.wait_projected(100)
        await worker.stop()

    asyncio.run(run())
    assert store.seqs == list(range(1, 101))
    assert store.transactions < 20         # queued batches were merged into fewer transactions
    assert store.threads == {"projection"}


def test_a_failing_store_fails_the_waiters() -> None:
    store = SlowStore(fail_at=7)

    async def run() -> None:
        worker = ProjectionWorker(store, asyncio.get_running_loop(), projected_seq=0)
        worker.submit(_batch(1, 5))
        await worker.wait_projected(5)
        worker.submit(_batch(6, 5))
        with pytest.raises(ProjectionFailed):
            await worker.wait_projected(10)
        with pytest.raises(ProjectionFailed):
            await worker.wait_projected(11)
        await worker.stop()

    asyncio.run(run())
    assert store.seqs == [1, 2, 3, 4, 5]


def test_stop_projects_everything_queued() -> None:
    store = SlowStore(delay_s=0.01)

    async def run() -> None:
        worker = ProjectionWorker(store, asyncio.get_running_loop(), projected_seq=0)
        for first in range(1, 31, 3):
            worker.submit(_batch(first, 3))
        await worker.stop()
        assert worker.projected_seq == 30

    asyncio.run(run())
    assert store.seqs == list(range(1, 31))
