"""`exchange probe sign | generate | check` through the real `exchange` app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exchange.cli import app
from exchange.telemetry import FIELDS, AcceptedRecord, DeliveryWindow, Reason, read_telemetry, sign
from tests.telemetry.support import DELIVERY, START_NS, csv_text, row, write

runner = CliRunner()
KEY_HEX = "5a" * 32
KEY = bytes.fromhex(KEY_HEX)
H = 3_600_000_000_000


@pytest.fixture(autouse=True)
def _probe_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_PROBE_KEY", KEY_HEX)


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())  # wrapped lines joined


def _window(hours: int = 24, gpus: int = 16) -> dict[str, DeliveryWindow]:
    return {DELIVERY: DeliveryWindow(START_NS, START_NS + hours * H, gpus)}


def test_sign_adds_signatures_and_converts(tmp_path: Path) -> None:
    unsigned = [v[:6] for v in (row(node="a"), row(node="b", available="0.50"))]
    source = write(tmp_path / "in.csv", csv_text(unsigned, header=FIELDS[:6]))
    code, out = _run("probe", "sign", str(source), str(tmp_path / "out.csv"))
    assert code == 0 and "signed 2 records" in out
    code, out = _run("probe", "sign", str(tmp_path / "out.csv"), str(tmp_path / "out.jsonl"))  # re-sign, convert
    assert code == 0
    for name in ("out.csv", "out.jsonl"):
        items = list(read_telemetry([tmp_path / name], _window(), KEY))
        assert [type(item) for item in items] == [AcceptedRecord, AcceptedRecord]
    first = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[1])
    assert first["available"] == "0.50" and first["signature"] == sign(KEY, unsigned[1])


def test_sign_refuses_what_it_cannot_sign(tmp_path: Path) -> None:
    bad = write(tmp_path / "in.jsonl", json.dumps(dict(zip(FIELDS, row(), strict=True))) + '\n{"gpus": 8}\n')
    code, out = _run("probe", "sign", str(bad), str(tmp_path / "out.jsonl"))
    assert code == 1 and "in.jsonl:2" in out and "Traceback" not in out
    assert not (tmp_path / "out.jsonl").exists()  # nothing half-written
    code, out = _run("probe", "sign", str(bad), str(tmp_path / "out.txt"))
    assert code == 1 and "unknown telemetry file type" in out


def test_generate_then_check(tmp_path: Path) -> None:
    out_file = tmp_path / "month.jsonl"
    code, out = _run("probe", "generate", str(out_file), "--delivery", DELIVERY, "--start", "2026-12-01",
                     "--hours", "48", "--nodes", "20", "--seed", "5", "--failing", "0.1")
    assert code == 0 and "wrote 960 records" in out and "2 failing" in out
    with out_file.open("a") as extra:
        extra.write(json.dumps(dict(zip(FIELDS, row(gpus="999", key=KEY), strict=True))) + "\n")
    rejects = tmp_path / "rejects.csv"
    code, out = _run("probe", "check", str(out_file), "--delivery", DELIVERY, "--start", "2026-12-01T00:00:00Z",
                     "--hours", "48", "--gpus", "160", "--rejects", str(rejects))
    assert code == 0 and "960" in out and Reason.OUT_OF_RANGE.value in out
    assert rejects.read_text().count("\n") == 2  # header and the one reject


def test_errors_are_one_line(tmp_path: Path) -> None:
    code, out = _run("probe", "generate", str(tmp_path / "g.csv"), "--delivery", DELIVERY,
                     "--start", "2026-12-01T00:30:00Z")
    assert code == 1 and "not on the hour" in out and "Traceback" not in out
    code, out = _run("probe", "generate", str(tmp_path / "g.csv"), "--delivery", DELIVERY,
                     "--start", "2026-12-01", "--grade", "abc")
    assert code == 1 and "--grade" in out
    code, out = _run("probe", "check", str(write(tmp_path / "x.csv", b"a,b\n")), "--delivery", DELIVERY,
                     "--start", "2026-12-01", "--hours", "1", "--gpus", "8")
    assert code == 1 and "missing column(s)" in out


@pytest.mark.parametrize("command", ["generate", "sign"])
def test_without_a_probe_key_nothing_is_invented(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 command: str) -> None:
    """A random key made on the spot would sign records the exchange then rejects as bad_signature."""
    monkeypatch.delenv("EXCHANGE_PROBE_KEY")
    data = tmp_path / "data"
    source = write(tmp_path / "in.csv", csv_text([row()[:6]], header=FIELDS[:6]))
    args = (["generate", str(tmp_path / "g.csv"), "--delivery", DELIVERY, "--start", "2026-12-01", "--hours", "1"]
            if command == "generate" else ["sign", str(source), str(tmp_path / "out.csv")])
    code, out = _run("probe", *args, "--data", str(data))
    assert code != 0
    assert "no probe key" in out and "EXCHANGE_PROBE_KEY" in out and str(data / "probe.key") in out
    assert not (data / "probe.key").exists() and not (tmp_path / "g.csv").exists()
