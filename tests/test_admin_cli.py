"""Operator commands against a real data directory, through the real service."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from exchange.cli import app
from exchange.store import Store

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_init_accounts_cash_replay_and_snapshot(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    code, out = _run("init", "--data", data)
    assert code == 0 and "series listed" in out
    code, out = _run("init", "--data", data)
    assert code == 0 and "(0 new)" in out  # idempotent
    assert _run("account", "create", "7", "--data", data)[0] == 0
    code, out = _run("account", "create", "7", "--data", data)
    assert code == 1 and "account_exists" in out and "Traceback" not in out
    code, out = _run("deposit", "7", "2500.50", "--data", data)
    assert code == 0 and "2500.500000 USD" in out
    code, out = _run("deposit", "7", "1.0000001", "--data", data)
    assert code == 1 and "more precision than one micro-dollar" in out
    code, out = _run("withdraw", "7", "3000", "--data", data)
    assert code == 1 and "insufficient_funds" in out  # more than the account holds
    assert "withdrawing $3,000.00 would leave -$499.50 of cash" in out and "at most $2,500.50 is available" in out
    code, out = _run("withdraw", "7", "500.50", "--data", data)
    assert code == 0 and "2000.000000 USD" in out
    code, out = _run("positions", "7", "--data", data)
    assert code == 0 and "cash 2000.000000 USD" in out
    code, out = _run("ledger", "7", "--data", data)
    assert code == 0 and "deposit" in out and "withdrawal" in out and "balance 2000.000000 USD" in out
    code, out = _run("apikey", "create", "7", "--scope", "read", "--scope", "trade", "--data", data)
    assert code == 0 and "key id" in out and "secret" in out
    key_id = out.split("key id ")[1].split()[0]
    secret = out.split("secret ")[1].split()[0]
    store = Store(f"sqlite:///{(tmp_path / 'data' / 'exchange.db').resolve()}")
    verified = store.verify_api_key(key_id, secret)
    assert verified is not None and verified.account_id == 7 and set(verified.scopes) == {"read", "trade"}
    assert store.verify_api_key(key_id, secret + "x") is None
    code, out = _run("apikey", "create", "8", "--scope", "read", "--data", data)
    assert code == 1 and "no account 8" in out
    code, out = _run("apikey", "create", "7", "--scope", "admin", "--data", data)
    assert code != 0 and "admin" in out
    code, out = _run("snapshot", "--data", data)
    assert code == 0 and ".snapshot" in out
    code, out = _run("replay", "--verify", "--data", data)
    assert code == 0 and "verified" in out


def test_unknown_series_and_account_are_one_line_errors(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    assert _run("init", "--data", data)[0] == 0
    code, out = _run("book", "H100-M40-Z99", "--data", data)
    assert code == 1 and "no listed series" in out and "Traceback" not in out
    code, out = _run("positions", "42", "--data", data)
    assert code == 1 and "no account 42" in out


def test_commands_never_create_a_data_directory(tmp_path: Path) -> None:
    """Only init and serve create one: a typo in --data must not start an empty exchange."""
    data = tmp_path / "typo"
    for args in (["book", "H100-M40-Z99"], ["positions", "1"], ["ledger", "1"], ["snapshot"], ["replay", "--verify"],
                 ["deposit", "1", "5"], ["settle", "daily", "--date", "2026-12-01"]):
        code, out = _run(*args, "--data", str(data))
        assert code == 1 and "is not an exchange data directory" in out and "exchange init" in out, (args, out)
        assert not data.exists(), args


def test_a_negative_amount_is_refused_with_its_reason(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    assert _run("init", "--data", data)[0] == 0
    for command in ("deposit", "withdraw"):
        code, out = _run(command, "7", "-5", "--data", data)
        assert code == 1 and "must be a positive number of USD" in out, out


def test_recover_needs_its_explicit_flag_and_a_data_directory(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    code, out = _run("recover", "--data", data)
    assert code == 1 and "is not an exchange data directory" in out
    assert _run("init", "--data", data)[0] == 0
    code, out = _run("recover", "--data", data)
    assert code == 1 and "--accept-loss" in out and "restore the journal from a copy" in out
    code, out = _run("recover", "--accept-loss", "--data", data)
    assert code == 0 and "no committed command was lost" in out and "loss recorded in" in out
