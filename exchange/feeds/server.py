"""Running feed gateways: `exchange feed-gateway` (one gateway under uvicorn) and `GatewaySupervisor`,
which `exchange serve` uses to run one as a child process and restart it if it dies.

Why a process: fan-out to a thousand sockets is CPU-bound Python; on the engine's event loop it took
the engine's core (issue 5 measured the engine at 0.14x its throughput with 1,000 subscribers). In
its own process, following the journal, it takes another core and the engine does not notice it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable

import uvicorn

from exchange.settings import Settings

log = logging.getLogger(__name__)

RESTART_DELAY_S_MIN = 0.5
RESTART_DELAY_S_MAX = 30.0
STABLE_RUN_S = 60.0           # a gateway that ran this long restarts after the shortest delay
STOP_TIMEOUT_S = 10.0


def serve_gateway(settings: Settings, log_level: str = "INFO", parent_pid: int | None = None) -> None:
    from exchange.api.connection_guard import server_config
    from exchange.api.server import configure_logging
    from exchange.feeds.app import create_feed_app

    configure_logging(log_level)
    app = create_feed_app(settings, parent_pid=parent_pid, exit_on_failure=True)
    config = server_config(app, settings, settings.feed_host or settings.host, settings.feed_port)
    uvicorn.Server(config).run()


def gateway_command(log_level: str) -> list[str]:
    return [sys.executable, "-m", "exchange.cli", "feed-gateway", "--parent-pid", str(os.getpid()),
            "--log-level", log_level]


class GatewaySupervisor:
    """Runs one feed gateway child process, restarting it with exponential backoff when it exits,
    until `stop()` (or `stopping()` says the exchange is shutting down)."""

    def __init__(self, settings: Settings, log_level: str = "INFO",
                 stopping: Callable[[], bool] = lambda: False) -> None:
        self.settings = settings
        self.log_level = log_level
        self.stopping = stopping
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopped = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="feed-gateway-supervisor")

    async def _run(self) -> None:
        delay = RESTART_DELAY_S_MIN
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
        env.update(self.settings.to_env())
        while not (self._stopped or self.stopping()):
            started = time.monotonic()
            self.process = await asyncio.create_subprocess_exec(*gateway_command(self.log_level), env=env)
            log.info("feed gateway started (pid %d) on port %d", self.process.pid, self.settings.feed_port)
            code = await self.process.wait()
            if self._stopped or self.stopping():
                return
            if time.monotonic() - started >= STABLE_RUN_S:
                delay = RESTART_DELAY_S_MIN
            log.error("feed gateway exited with status %d: restarting in %.1f s", code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_DELAY_S_MAX)
            self.restarts += 1

    async def stop(self) -> None:
        self._stopped = True
        process = self.process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
