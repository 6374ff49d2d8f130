"""Run a projection (the SQL store) on its own thread, off the sequencer's event loop.

Why: a store transaction ends in an fsync (SQLite) or a network round trip (PostgreSQL); run on the
event loop after every commit, it stalled matching, order entry and every other request for that
long. Here committed batches are queued to one thread, which merges whatever has queued into one
transaction (`merge_max` commands at most), so the busier the exchange the fewer store transactions
per command, and the loop never waits for the store.

Readers who need their own write reflected (the API answers an order with the store's view of it)
`await wait_projected(seq)`, which returns once the store holds everything up to `seq`. The queue is
bounded (`queue_max` batches): when the store falls that far behind, `submit` blocks the loop, which
slows the sequencer down to the store's speed instead of letting memory grow without limit.

A failing projection is logged, and every later wait raises `ProjectionFailed`; the store's
`last_seq` is where a restart catches it up from the journal (nothing is lost: the journal is the
truth, the store a projection of it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Sequence
from typing import Protocol

from exchange.service.sequencer import Sequenced

log = logging.getLogger(__name__)

_STOP = None


class Projector(Protocol):
    def last_seq(self) -> int: ...

    def project(self, batch: Sequence[Sequenced]) -> None: ...


class ProjectionFailed(RuntimeError):
    """The projection thread failed; the store stops at its last applied seq until a restart."""


class ProjectionWorker:
    def __init__(self, projector: Projector, loop: asyncio.AbstractEventLoop, projected_seq: int,
                 merge_max: int = 4_096, queue_max: int = 1_024) -> None:
        assert merge_max > 0 and queue_max > 0
        self.projector = projector
        self.loop = loop
        self.merge_max = merge_max
        self.projected_seq = projected_seq          # read and written on the loop only
        self.failure: BaseException | None = None
        self.transactions = 0
        self._queue: queue.Queue[list[Sequenced] | None] = queue.Queue(queue_max)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._thread = threading.Thread(target=self._run, name="projection", daemon=True)
        self._thread.start()

    # -- the loop's side ---------------------------------------------------------------------
    def submit(self, batch: list[Sequenced]) -> None:
        if batch:
            self._queue.put(batch)

    async def wait_projected(self, seq: int) -> None:
        if self.failure is not None:
            raise ProjectionFailed("the store projection failed") from self.failure
        if self.projected_seq >= seq:
            return
        future = self.loop.create_future()
        self._waiters.append((seq, future))
        await future

    def _done(self, seq: int, failure: BaseException | None) -> None:
        if failure is not None:
            self.failure = failure
        else:
            self.projected_seq = max(self.projected_seq, seq)
        keep = []
        for wanted, future in self._waiters:
            if future.done():
                continue
            if self.failure is not None:
                future.set_exception(ProjectionFailed("the store projection failed"))
            elif wanted <= self.projected_seq:
                future.set_result(None)
            else:
                keep.append((wanted, future))
        self._waiters = keep

    async def stop(self) -> None:
        """Project everything queued, then end the thread."""
        self._queue.put(_STOP)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        await asyncio.sleep(0)   # let the thread's last `_done` callbacks run
        for _, future in self._waiters:
            if not future.done():
                future.set_exception(ProjectionFailed("the projection stopped"))
        self._waiters = []

    # -- the thread's side -------------------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            merged = list(first)
            while len(merged) < self.merge_max:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stopping = True
                    break
                merged.extend(more)
            failure: BaseException | None = None
            if self.failure is None:
                try:
                    self.projector.project(merged)
                    self.transactions += 1
                except BaseException as error:
                    log.exception("store projection failed at seq %d..%d", merged[0].seq, merged[-1].seq)
                    failure = error
            with contextlib.suppress(RuntimeError):   # a closed loop: nobody is waiting any more
                self.loop.call_soon_threadsafe(self._done, merged[-1].seq, failure)
