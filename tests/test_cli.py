"""The `exchange` command line: demo summary, listing calendar, symbol lookup, and clean errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from exchange.cli import app, parse_instant

AT = "2026-11-27T12:00:00Z"

runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""


def test_demo_no_live_prints_a_summary_with_trades() -> None:
    result = invoke("demo", "--no-live", "--steps", "300", "--seed", "1", "--start", AT)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Compute Exchange" in out
    assert "H100-M40-261128" in out and "B200-M35-261128" in out and "A100-M40-261128" in out
    assert "300 steps" in out
    trades_line = next(line for line in out.splitlines() if line.strip().startswith("trades"))
    assert int(trades_line.split()[1].replace(",", "")) > 0
    assert "audit" in out and "ledger sums to zero" in out


def test_demo_is_reproducible() -> None:
    args = ("demo", "--no-live", "--steps", "200", "--seed", "5", "--start", AT)

    def summary(result: Result) -> list[str]:
        # Everything but the wall-clock rate.
        return [line for line in result.stdout.splitlines() if "events/s" not in line]

    assert summary(invoke(*args)) == summary(invoke(*args))


def test_demo_chosen_symbols_and_shown_series() -> None:
    result = invoke("demo", "--no-live", "--steps", "100", "--start", AT, "-s", "H200-M45-Z26",
                    "--symbol", "H100-M40-26W49", "--show", "H100-M40-26W49")
    assert result.exit_code == 0, result.output
    assert "H100-M40-26W49  H100 GPUs" in result.stdout  # the title names the shown series
    assert "H200-M45-Z26" in result.stdout


@pytest.mark.parametrize(("args", "fragments"), [
    (("--start", "yesterday"), ("--start", "yesterday", "ISO 8601")),
    (("--start", "2026-13-01T00:00:00Z"), ("--start",)),
    (("--start", AT, "--symbol", "H100-M40-261120"), ("H100-M40-261120", "trading ended")),
    (("--start", AT, "--symbol", "nonsense"), ("nonsense",)),
    (("--start", AT, "--show", "B200-M35-Z26"), ("--show", "B200-M35-Z26")),
    (("--start", AT, "--steps", "0"), ("--steps 0",)),
])
def test_demo_errors_are_one_line(args: tuple[str, ...], fragments: tuple[str, ...]) -> None:
    assert_one_line_error(invoke("demo", "--no-live", *args), *fragments)


def test_series_lists_the_calendar() -> None:
    result = invoke("series", "--at", AT)
    assert result.exit_code == 0, result.output
    assert "H100-M40-Z26" in result.stdout
    assert "(255)" in result.stdout  # 15 products x (6 monthly + 4 weekly + 7 daily)
    assert "H100-M40-261128" in result.stdout
    assert "2026-11-27 16:00" in result.stdout  # its trading end


def test_series_for_one_product() -> None:
    result = invoke("series", "--at", AT, "--product", "H100-M40")
    assert result.exit_code == 0, result.output
    assert "(17)" in result.stdout
    assert "H100-M45" not in result.stdout
    assert_one_line_error(invoke("series", "--at", AT, "--product", "H100-M99"), "H100-M99")


def test_series_nearest_prints_the_symbol_to_trade() -> None:
    result = invoke("series", "--at", AT, "--product", "H100-M40", "--nearest")
    assert result.exit_code == 0, result.output
    assert result.stdout == "H100-M40-261128\n"   # the daily series whose trading ends first after AT
    assert_one_line_error(invoke("series", "--nearest"), "--nearest needs --product")


def test_symbol_says_when_a_series_stopped_trading() -> None:
    result = invoke("symbol", "H100-M40-Z25")
    assert result.exit_code == 0, result.output
    assert "stopped trading" in result.stdout and "--product H100-M40 --nearest" in result.stdout


def test_flags_show_no_value_type_in_help() -> None:
    assert "<bool>" not in invoke("serve", "--help").stdout


def test_series_bad_instant() -> None:
    assert_one_line_error(invoke("series", "--at", "not-a-time"), "--at", "not-a-time")


def test_symbol_explains_a_monthly_series() -> None:
    result = invoke("symbol", "H100-M40-Z26")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "5952 GPU-hours" in out
    assert "744" in out
    assert "2026-11-30 16:00 UTC" in out  # trading end
    assert "2026-12-01 00:00 UTC to 2027-01-01 00:00 UTC" in out
    assert "2.400" in out


@pytest.mark.parametrize(("symbol", "fragment"), [
    ("nonsense", "expected 3 parts"),
    ("H100-M41-Z26", "unknown product"),
    ("Rubin-M30-Z26", "not listed"),
    ("H100-M40-26W54", "week 54"),
])
def test_symbol_errors_are_one_line(symbol: str, fragment: str) -> None:
    assert_one_line_error(invoke("symbol", symbol), symbol, fragment)


def test_parse_instant() -> None:
    assert parse_instant("2026-11-27T12:00:00Z", "--at") == 1_795_780_800 * 10**9
    assert parse_instant("2026-11-27T12:00:00", "--at") == 1_795_780_800 * 10**9  # no offset: UTC
    assert parse_instant("2026-11-27T13:00:00+01:00", "--at") == 1_795_780_800 * 10**9
    assert parse_instant("2026-11-27T12:00:00.000001Z", "--at") == 1_795_780_800 * 10**9 + 1_000


def _console_script() -> Path:
    beside = Path(sys.executable).parent / "exchange"
    if beside.exists():
        return beside
    found = shutil.which("exchange")
    if found is None:
        pytest.skip("the exchange console script is not installed")
    return Path(found)


def test_installed_console_script_runs() -> None:
    completed = subprocess.run(
        [str(_console_script()), "demo", "--no-live", "--steps", "200", "--seed", "3", "--start", AT],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "Compute Exchange" in completed.stdout
    assert completed.stderr == ""


def test_installed_console_script_error_exit_code() -> None:
    completed = subprocess.run([str(_console_script()), "symbol", "nonsense"], capture_output=True, text=True,
                               timeout=120, check=False)
    assert completed.returncode == 1
    assert completed.stdout == ""
    assert completed.stderr.count("\n") == 1 and "Traceback" not in completed.stderr
