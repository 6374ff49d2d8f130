"""Streaming: reading never holds a file; memory grows by the 16-byte duplicate memory per accepted
record, not by the ~117 bytes a record takes in the file."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from exchange.telemetry import GeneratorConfig, write_telemetry
from exchange.telemetry.files import physical_lines
from tests.telemetry.support import KEY, START_NS

CONFIG = GeneratorConfig("H100-M40-Z26/1", START_NS, hours=744, nodes=135, seed=11)  # 100,440 records
REPO = Path(__file__).resolve().parents[2]

_MEASURE = """
import json, resource, sys
from exchange.telemetry import DeliveryWindow, TelemetrySummary, read_telemetry
path, delivery, start, end, gpus, key = sys.argv[1:]
window = {delivery: DeliveryWindow(int(start), int(end), int(gpus))}
items = read_telemetry([path], window, bytes.fromhex(key))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
summary = TelemetrySummary()
for item in items:
    summary.add(item)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"accepted": summary.accepted, "records": summary.records, "growth_kib": after - before}))
"""


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stream") / "month.csv"
    assert write_telemetry(path, CONFIG, KEY) == 100_440
    return path


def test_line_splitting_holds_a_chunk_not_the_file(big_file: Path) -> None:
    size = big_file.stat().st_size
    tracemalloc.start()
    try:
        with big_file.open("rb") as stream:
            lines = sum(1 for _ in physical_lines(stream))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == 100_441
    assert peak < size / 8, (peak, size)


def test_reading_and_verifying_a_month_keeps_memory_flat(big_file: Path) -> None:
    window = CONFIG.window
    args = [str(big_file), CONFIG.delivery_id, str(window.start_ns), str(window.end_ns),
            str(window.contracted_gpus), KEY.hex()]
    out = subprocess.run([sys.executable, "-c", _MEASURE, *args], cwd=REPO, capture_output=True, text=True,
                         check=True, timeout=120).stdout
    result = json.loads(out)
    assert result["accepted"] == result["records"] == 100_440
    growth = result["growth_kib"] * 1024  # ru_maxrss is in KiB on Linux
    assert growth < big_file.stat().st_size / 2, (growth, big_file.stat().st_size)
