"""The feed gateway as a process of its own: `exchange serve` starts it, restarts it when it dies,
and it exits when the exchange is gone; a second gateway started by hand follows the same journal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from exchange.client import Client
from exchange.testing.api_harness import bootstrap
from exchange.testing.server_process import ServerProcess, free_port, settings_env

DEADLINE_S = 60.0


def gateway_pid(server: ServerProcess) -> int:
    pid = server.gateway_pid
    assert pid is not None, f"no feed gateway child of {server.pid}"
    return pid


def wait_ready(url: str, *, min_seq: int = 0) -> dict[str, object]:
    deadline = time.monotonic() + DEADLINE_S
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/ready", timeout=5.0)
            if response.status_code == 200 and response.json()["journal_seq"] >= min_seq:
                body: dict[str, object] = response.json()
                return body
            last = response.text
        except httpx.TransportError as error:
            last = repr(error)
        time.sleep(0.05)
    raise AssertionError(f"{url} not ready: {last}")


def book(url: str, symbol: str) -> tuple[list[list[object]], list[list[object]]]:
    body = httpx.get(f"{url}/v1/series/{symbol}/book", params={"depth": 100}, timeout=5.0).json()
    return body["bids"], body["asks"]


def test_a_killed_gateway_is_restarted_and_serves_the_same_book(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", feeds=True)
    (trader,) = bootstrap(server.settings, time.time_ns, deposits_micros={2: 10**12}, keys=[(2, ["read", "trade"])])
    with server, Client(server.base_url, trader.key_id, trader.secret) as me:
        symbol = me.series()["items"][0]["symbol"]
        ref = me.series_spec(symbol)["reference_price"]
        for _ in range(3):
            me.place_order(symbol, "buy", 1, price=ref)
        seq = int(httpx.get(f"{server.base_url}/ready").json()["journal_seq"])
        wait_ready(server.feed_url, min_seq=seq)
        before = book(server.feed_url, symbol)
        assert before[0] and before[0][0][1] == 3
        first = gateway_pid(server)
        os.kill(first, signal.SIGKILL)
        me.place_order(symbol, "buy", 2, price=ref)     # while no gateway runs
        deadline = time.monotonic() + 30
        while (ready := httpx.get(f"{server.base_url}/ready")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        seq = int(ready.json()["journal_seq"])
        wait_ready(server.feed_url, min_seq=seq)
        assert gateway_pid(server) != first
        bids, _ = book(server.feed_url, symbol)
        assert bids[0][1] == 5, bids
        engine_bids = httpx.get(f"{server.base_url}/v1/series/{symbol}/book", params={"depth": 100}).json()["bids"]
        assert bids == engine_bids


def test_the_gateway_exits_when_the_exchange_dies_and_a_second_one_follows_by_hand(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", feeds=True)
    with server:
        gateway = gateway_pid(server)
        # A second gateway on the same data directory, started by hand.
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
        env.update(settings_env({**server.fields, "feed_port": port}))
        extra = subprocess.Popen([sys.executable, "-m", "exchange.cli", "feed-gateway"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            seq = int(httpx.get(f"{server.base_url}/ready").json()["journal_seq"])
            assert wait_ready(f"http://127.0.0.1:{port}", min_seq=seq)["journal_seq"] == seq
            # SIGKILL the exchange alone (not its process group): its gateway notices and leaves.
            os.kill(server.pid or 0, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while Path(f"/proc/{gateway}").exists() and b"zombie" not in _state(gateway):
                assert time.monotonic() < deadline, "the orphaned gateway is still running"
                time.sleep(0.1)
            # The hand-started one is nobody's child: it keeps serving what was committed.
            assert httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200
        finally:
            extra.kill()
            extra.wait()


def _state(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return b"zombie"
