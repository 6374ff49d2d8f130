"""What a newcomer meets when starting the exchange: a banner saying where everything is, ports
checked before anything is written, and /ready that tells the truth about the feed gateway."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from exchange.testing.server_process import ServerProcess, free_port


def test_the_banner_names_the_urls_the_key_and_the_demo_series(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data", feeds=True) as server:
        deadline = time.monotonic() + 10
        while "exchange ready" not in server.log_tail() and time.monotonic() < deadline:
            time.sleep(0.1)
        log = server.log_tail()
        assert f"API          {server.base_url}" in log and f"{server.base_url}/docs" in log
        assert f"ws://{server.host}:{server.feed_port}/v1/ws/market" in log
        assert "operator-key.json" in log
        # Tools pointed at the data directory follow this server wherever its ports are.
        announced = json.loads((server.data_dir / "server.json").read_text())
        assert announced["api"] == server.base_url and announced["feeds"] == server.feed_url
        watch = subprocess.run([sys.executable, "-m", "exchange.cli", "watch", "H100-M40-Z99", "--data",
                                str(server.data_dir)], capture_output=True, text=True, timeout=60, check=False,
                               env={k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")})
        assert watch.returncode == 1 and "unknown_series" in watch.stderr and server.feed_url in watch.stderr, (
            watch.stderr)


def test_a_port_in_use_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args, flag in ((["--port", str(port), "--feed-port", str(free_port())], "--port"),
                           (["--port", str(free_port()), "--feed-port", str(port)], "--no-feeds")):
            result = subprocess.run([sys.executable, "-m", "exchange.cli", "serve", "--data", str(data), *args],
                                    capture_output=True, text=True, timeout=60, check=False,
                                    env={**os.environ, "EXCHANGE_MASTER_KEY": "ab" * 32})
            assert result.returncode == 1 and f"port {port}" in result.stderr and flag in result.stderr, result.stderr
            assert "Traceback" not in result.stderr
    assert not data.exists()


def test_ready_is_not_ready_while_the_feed_gateway_is_down(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data", feeds=True) as server:
        assert httpx.get(server.base_url + "/ready").status_code == 200
        pid = server.gateway_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            response = httpx.get(server.base_url + "/ready", timeout=5)
            assert response.status_code == 503 and "feed gateway" in response.json()["message"]
        finally:
            os.kill(pid, signal.SIGCONT)
        assert httpx.get(server.base_url + "/ready", timeout=5).status_code == 200


def test_a_market_feed_on_an_unknown_symbol_fails_clearly(tmp_path: Path) -> None:
    from exchange.client import MarketFeed, SubscriptionError
    from exchange.client.feed import book_channel

    async def main(url: str) -> None:
        async with await MarketFeed.connect(url, [book_channel("H100-M40-Z99")]) as feed:
            async for _ in feed:
                pass

    with ServerProcess(tmp_path / "data", feeds=True) as server:
        try:
            asyncio.run(asyncio.wait_for(main(server.feed_url), 10))
        except SubscriptionError as error:
            assert error.code == "unknown_series" and "H100-M40-Z99" in str(error)
        else:
            raise AssertionError("the feed should have refused the unknown series")
