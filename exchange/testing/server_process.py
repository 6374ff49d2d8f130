"""A real `exchange serve` in a subprocess, for end-to-end tests and benchmarks.

    server = ServerProcess(tmp_path / "data", settings={"snapshot_every_commands": 200})
    credentials = bootstrap(server.settings, time.time_ns, deposits_micros=..., keys=...)  # optional
    with server:                       # starts it and waits for /ready; always SIGKILLed on the way out
        client = Client(server.base_url, key_id, secret)
        ...
        server.kill9()                 # crash (the whole process group: snapshot writers too)
        server.start()                 # recover on the same data directory (and the same port)
        server.terminate()             # SIGTERM: graceful drain, then wait for the exit

The server binds 127.0.0.1 on a free port (found by binding port 0; if another process takes it before
the server binds it, the start is retried on another port). Its settings travel as `EXCHANGE_*`
environment variables (the parent's own `EXCHANGE_*` variables are not inherited), with a fixed master
key and rate limits high enough for load tests unless overridden. Its stdout and stderr (JSON log
lines) go to `<log_dir>/server.log`, appended across restarts; `log_tail()` is quoted in every start
failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx

from exchange.settings import Settings

REPO = Path(__file__).resolve().parents[2]
TEST_MASTER_KEY = "ab" * 32
HIGH_RATE_LIMITS: dict[str, object] = {"rate_per_key_per_s": 100_000, "burst_per_key": 100_000,
                                       "rate_per_ip_per_s": 100_000, "burst_per_ip": 100_000}
_ADDRESS_IN_USE = ("address already in use", "errno 98", "errno 48")


class ServerStartError(RuntimeError):
    """The server exited, or did not answer /ready 200, before the start timeout."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def settings_env(settings: Mapping[str, object]) -> dict[str, str]:
    """`Settings` fields as the `EXCHANGE_*` environment variables the server reads; an unknown field
    name is an error (a typo would otherwise be silently ignored by the server)."""
    env = {}
    for name, value in settings.items():
        if name not in Settings.model_fields:
            raise ValueError(f"{name!r} is not a field of exchange.settings.Settings")
        if value is None:
            continue
        env[f"EXCHANGE_{name.upper()}"] = str(value)
    return env


def _serve_command(demo: bool = False) -> list[str]:
    """The `exchange` console script of this interpreter's environment, else `python -m exchange.cli`;
    without the demo market unless `demo` (tests and benchmarks mostly drive their own flow)."""
    flag = "--demo" if demo else "--no-demo"
    script = Path(sys.executable).parent / "exchange"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script), "serve", flag]
    return [sys.executable, "-m", "exchange.cli", "serve", flag]


class ServerProcess:
    """One `exchange serve` process on a data directory; `start()` may be called again after it has
    stopped (a restart recovers the same data directory, on the same port when it is still free)."""

    def __init__(self, data_dir: Path, *, settings: Mapping[str, object] | None = None,
                 master_key: str | None = TEST_MASTER_KEY, database_url: str | None = None,
                 host: str = "127.0.0.1", port: int | None = None, log_dir: Path | None = None,
                 cwd: Path | None = None, ready_timeout_s: float = 90.0, log_level: str = "INFO",
                 feeds: bool = False, demo: bool = False) -> None:
        self.demo = demo
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port(host)
        self.feeds = feeds
        self.feed_port = free_port(host) if feeds else 0
        # The settlement scheduler is off unless asked for: most tests drive their own flow and would
        # otherwise see its jobs' commands in the journal.
        fields: dict[str, object] = {**HIGH_RATE_LIMITS, "data_dir": self.data_dir, "master_key": master_key,
                                     "database_url": database_url, "scheduler": False, **(settings or {}),
                                     "feed_gateway": feeds}
        fields.pop("host", None)
        fields.pop("port", None)
        fields.pop("feed_port", None)
        self.fields = fields
        self._env = settings_env(fields)
        self.log_path = Path(log_dir or self.data_dir.parent).resolve() / "server.log"
        self.cwd = cwd or self.data_dir.parent
        self.ready_timeout_s = ready_timeout_s
        self.log_level = log_level
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._start_offset = 0
        self.starts = 0

    # -- what clients need ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def feed_url(self) -> str:
        """The feed gateway's base URL (started with `feeds=True`)."""
        assert self.feeds, "this server runs without a feed gateway: ServerProcess(..., feeds=True)"
        return f"http://{self.host}:{self.feed_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/v1/ws/orders"

    @property
    def settings(self) -> Settings:
        """The server's settings as an object (for `bootstrap()` before the first start, and for
        opening the store after the server has stopped)."""
        values: dict[str, Any] = dict(self.fields)  # None too: an explicit None beats the test's own env
        return Settings(**values, host=self.host, port=self.port, feed_port=self.feed_port)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def gateway_pid(self) -> int | None:
        """The feed gateway child process (with `feeds`), or None if none runs now (Linux /proc)."""
        if self.pid is None:
            return None
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return None
        for child in children:
            with contextlib.suppress(OSError):
                if b"feed-gateway" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return int(child)
        return None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 6_000) -> str:
        """The end of the server's log (stdout and stderr of every start), for failure messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no server log)"
        return text[-chars:]

    # -- life cycle ----------------------------------------------------------------------------------
    def start(self, timeout_s: float | None = None) -> Self:
        """Start the server and wait until /ready answers 200 (ServerStartError otherwise)."""
        if self.alive:
            raise RuntimeError(f"the server is already running (pid {self.pid})")
        for attempt in range(5):
            self._spawn()
            try:
                self.wait_ready(timeout_s)
                return self
            except ServerStartError:
                self._reap()
                in_use = any(marker in self._last_start_log().lower() for marker in _ADDRESS_IN_USE)
                if not in_use or self._fixed_port or attempt == 4:
                    raise
                self.port = free_port(self.host)  # someone took the port in between: try another
                if self.feeds:
                    self.feed_port = free_port(self.host)
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._log is None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115  (closed by _reap / close)
        self.starts += 1
        self._log.write(f"==== start {self.starts}: port {self.port}, {time.strftime('%H:%M:%S')} ====\n".encode())
        self._log.flush()
        self._start_offset = self._log.tell()
        env = {name: value for name, value in os.environ.items() if not name.startswith("EXCHANGE_")}
        env.update(self._env)
        env["EXCHANGE_HOST"] = self.host
        env["EXCHANGE_PORT"] = str(self.port)
        env["EXCHANGE_FEED_PORT"] = str(self.feed_port)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
        env["PYTHONUNBUFFERED"] = "1"
        command = [*_serve_command(self.demo), "--log-level", self.log_level]
        self.process = subprocess.Popen(command, cwd=self.cwd, env=env,
                                        stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def _last_start_log(self) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._start_offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Poll GET /ready until it answers 200 (and the feed gateway's too, with `feeds`);
        ServerStartError if the process exits or time runs out."""
        deadline = time.monotonic() + (self.ready_timeout_s if timeout_s is None else timeout_s)
        last = "no answer yet"
        urls = [self.base_url] + ([f"http://{self.host}:{self.feed_port}"] if self.feeds else [])
        with httpx.Client(timeout=5.0) as http:
            while urls:
                process = self.process
                if process is None or process.poll() is not None:
                    code = None if process is None else process.returncode
                    raise ServerStartError(f"the server exited with {code} before it was ready; log:\n"
                                           f"{self.log_tail()}")
                try:
                    response = http.get(f"{urls[0]}/ready")
                    if response.status_code == 200:
                        urls.pop(0)
                        continue
                    last = f"{urls[0]}: {response.status_code} {response.text[:200]}"
                except httpx.TransportError as error:
                    last = f"{urls[0]}: {type(error).__name__}: {error}"
                if time.monotonic() > deadline:
                    self.kill9()
                    raise ServerStartError(f"the server was not ready after {timeout_s or self.ready_timeout_s} s "
                                           f"(last /ready: {last}); log:\n{self.log_tail()}")
                time.sleep(0.05)

    def kill9(self) -> None:
        """SIGKILL the server's whole process group (the server and any snapshot writer it forked), at
        once, and reap it. A no-op if it is not running."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (uvicorn's graceful shutdown: stop accepting, drain, stop the sequencer) and wait for
        the exit; SIGKILL and raise if it takes longer than `timeout_s`. Returns the exit code (uvicorn
        re-raises the signal after a graceful shutdown, so a clean exit is -SIGTERM, or 0)."""
        process = self.process
        if process is None:
            raise RuntimeError("the server was never started")
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise RuntimeError(f"the server did not stop within {timeout_s} s of SIGTERM; log:\n"
                               f"{self.log_tail()}") from None
        return code

    def shut_down_cleanly(self) -> bool:
        """Whether the last run of the server logged the end of a graceful shutdown."""
        return "Application shutdown complete" in self._last_start_log()

    def _reap(self) -> None:
        if self.alive:
            self.kill9()
        elif self.process is not None:
            self.process.wait()

    def close(self) -> None:
        """Kill the server if it is still running and close the log."""
        self._reap()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        if not self.alive:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
        if exc_type is not None and not issubclass(exc_type, ServerStartError):  # that one quotes the log
            sys.stderr.write(f"---- end of the server log {self.log_path} ----\n{self.log_tail()}\n")
