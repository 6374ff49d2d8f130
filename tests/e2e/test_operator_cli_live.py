"""Every operator command while `exchange serve` holds the data directory: through its API with the
operator key it keeps (issue 13), each answer marked live, each refusal naming the mode it tried."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from exchange.cli import app
from exchange.testing.server_process import ServerProcess

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_operator_commands_work_through_the_running_server(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", settings={"scheduler": True, "scheduler_poll_s": 0.5})
    with server:
        data = str(server.data_dir)
        code, out = _run("account", "create", "7", "--data", data)
        assert (code, out.strip()) == (0, "account 7 created (live)"), out
        code, out = _run("account", "create", "7", "--data", data)
        assert code == 1 and "live (the exchange at" in out and "account_exists" in out, out
        code, out = _run("deposit", "7", "2500.50", "--data", data)
        assert code == 0 and "cash 2500.500000 USD (live)" in out, out
        code, out = _run("deposit", "7", "10", "--reference", "wire-7", "--data", data)
        assert code == 0 and "cash 2510.500000 USD (live)" in out, out
        code, out = _run("deposit", "7", "10", "--reference", "wire-7", "--data", data)   # a retry: once
        assert code == 0 and "cash 2510.500000 USD (live)" in out, out
        code, out = _run("deposit", "7", "10", "--reference", "bad ref", "--data", data)
        assert code == 1 and "--reference" in out, out
        code, out = _run("withdraw", "7", "3000", "--data", data)
        assert code == 1 and "live" in out and "insufficient_funds" in out, out
        code, out = _run("positions", "7", "--data", data)
        assert code == 0 and "cash 2510.500000 USD" in out, out
        code, out = _run("ledger", "7", "--data", data)
        assert code == 0 and "deposit" in out and "balance 2510.500000 USD" in out, out
        symbol = _first_symbol(server)
        code, out = _run("book", symbol, "--data", data)
        assert code == 0 and "bid lots" in out, out
        code, out = _run("snapshot", "--data", data)
        assert code == 0 and "writes a snapshot at seq" in out, out
        code, out = _run("replay", "--data", data)
        assert code == 1 and "needs the data directory to itself" in out, out
        code, out = _run("init", "--data", data)
        assert code == 0 and "nothing to do" in out, out
        yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
        code, out = _run("settle", "daily", "--date", yesterday, "--data", data)
        assert code == 0 and "live: posted 0" in out, out
        # The calendar's catch-up run at start (yesterday's cut), listed by `exchange jobs`.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            code, out = _run("jobs", "--data", data)
            if "succeeded" in out:
                break
            time.sleep(0.5)
        assert code == 0 and "daily:" in out and "catch-up" in out and "succeeded" in out, out
        deadline = time.monotonic() + 5
        while not list(server.data_dir.joinpath("snapshots").glob("*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(server.data_dir.joinpath("snapshots").glob("*")), "the requested snapshot was not written"
    # Stopped: the same commands open the data directory themselves.
    code, out = _run("deposit", "7", "1", "--data", data)
    assert code == 0 and "cash 2511.500000 USD" in out and "live" not in out, out
    code, out = _run("deposit", "7", "10", "--reference", "wire-7", "--data", data)   # the live move, recognised
    assert code == 0 and "already used" in out and "cash 2511.500000 USD" in out, out
    code, out = _run("jobs", "--data", data)
    assert code == 0 and "daily:" in out and "succeeded" in out, out


def _first_symbol(server: ServerProcess) -> str:
    import httpx

    return str(httpx.get(server.base_url + "/v1/series?limit=1").json()["items"][0]["symbol"])
