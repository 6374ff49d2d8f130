"""`exchange serve`: the API on uvicorn, with graceful shutdown.

On SIGINT/SIGTERM uvicorn stops accepting connections, waits up to `shutdown_drain_s` for the requests
in flight to be answered, then runs the app's shutdown, which stops the sequencer after it has
committed everything it took. Logs are one JSON object per line (access log: `exchange.api.access`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys

import uvicorn

from exchange.api.app import create_app
from exchange.api.connection_guard import server_config
from exchange.demo_market import DemoConfig
from exchange.feeds.server import GatewaySupervisor
from exchange.service import witness
from exchange.service.recovery import check_end
from exchange.settings import Settings
from exchange.store.store import existing_store_seq


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname,
                                    "logger": record.name}
        if message.startswith("{"):
            try:
                entry.update(json.loads(message))
            except ValueError:
                entry["msg"] = message
        else:
            entry["msg"] = message
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def check_ports(settings: Settings) -> None:
    """Both ports free, checked before anything is written: else say which flag picks another."""
    wanted = [(settings.host, settings.port, "the API", "--port")]
    if settings.feed_gateway:
        wanted.append((settings.feed_host or settings.host, settings.feed_port, "the market-data feed gateway",
                       "--feed-port (or --no-feeds to run without it)"))
    for host, port, what, flag in wanted:
        if port == 0:
            continue
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as uvicorn binds
            try:
                probe.bind((host, port))
            except OSError as error:
                raise ValueError(f"port {port} on {host} for {what} is not available ({error.strerror}): another "
                                 f"exchange may be running; choose another with {flag}") from None


def preflight(settings: Settings) -> None:
    """Refuse to start, with the reason, before anything is written or a port is bound: a journal that
    ends before what its witnesses say was committed (`JournalBehind`) or a damaged committed record
    (`JournalCorrupt`). Recovery checks the same again, whole, once the server runs."""
    journal_dir = settings.data_dir / "journal"
    if journal_dir.is_dir():
        witnesses = witness.gather(journal_dir, settings.data_dir / "snapshots",
                                   existing_store_seq(settings.store_url()), "the SQL store")
        check_end(journal_dir, witnesses)


def serve(settings: Settings, log_level: str = "INFO", demo: bool = False) -> None:
    """Run the API; `demo` also runs the live demo market (exchange/demo_market.py); with
    `settings.feed_gateway`, a feed gateway child process too (exchange/feeds/server.py)."""
    check_ports(settings)
    preflight(settings)
    configure_logging(log_level)
    gateway_host = settings.feed_host or settings.host
    gateway_url = f"http://{gateway_host}:{settings.feed_port}" if settings.feed_gateway else None
    app = create_app(settings, demo=DemoConfig(rate_per_s=settings.demo_rate_per_s) if demo else False,
                     gateway_url=gateway_url, banner=True, scheduler=settings.scheduler)
    config = server_config(app, settings, settings.host, settings.port)
    server = uvicorn.Server(config)

    async def main() -> None:
        gateway = (GatewaySupervisor(settings, log_level, stopping=lambda: server.should_exit)
                   if settings.feed_gateway else None)
        if gateway is not None:
            gateway.start()
        try:
            await server.serve()
        finally:
            if gateway is not None:
                await gateway.stop()

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(main())
