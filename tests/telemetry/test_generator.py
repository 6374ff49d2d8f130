"""The seeded generator: the same seed writes the same bytes, and everything it writes validates."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from exchange.telemetry import (
    AcceptedRecord,
    GeneratorConfig,
    failing_nodes,
    generate_rows,
    read_telemetry,
    write_telemetry,
)
from tests.telemetry.support import KEY, START_NS

CONFIG = GeneratorConfig("H100-M40-Z26/1", START_NS, hours=168, nodes=120, seed=7)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    small = GeneratorConfig("D/1", START_NS, hours=48, nodes=30, seed=3)
    paths = [tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv", tmp_path / "d.jsonl", tmp_path / "e.jsonl"]
    for path, seed in zip(paths, (3, 3, 4, 3, 3), strict=True):
        assert write_telemetry(path, GeneratorConfig("D/1", START_NS, 48, 30, seed=seed), KEY) == 48 * 30
    assert paths[0].read_bytes() == paths[1].read_bytes() != paths[2].read_bytes()
    assert paths[3].read_bytes() == paths[4].read_bytes()
    assert list(generate_rows(small, KEY))[:3] == list(generate_rows(small, KEY))[:3]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_every_generated_record_validates(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"g.{fmt}"
    config = GeneratorConfig("H100-M40-Z26/1", START_NS, hours=96, nodes=60, seed=8, failing=Decimal("0.2"))
    count = write_telemetry(path, config, KEY)
    items = list(read_telemetry([path], {config.delivery_id: config.window}, KEY))
    assert count == config.hours * config.nodes == len(items)
    assert all(isinstance(item, AcceptedRecord) for item in items)


def test_the_data_looks_like_a_month_of_probes() -> None:
    rows = list(generate_rows(CONFIG, KEY))
    floor = CONFIG.grade - CONFIG.floor_offset
    failing = set(failing_nodes(CONFIG))
    assert len(failing) == CONFIG.failing_count == 6  # 5% of 120
    available = [Decimal(r[4]) for r in rows]
    mfu_by_node: dict[str, list[Decimal]] = {}
    for r in rows:
        if r[4] != "0.0000":  # a node in an outage measures nothing
            mfu_by_node.setdefault(r[1], []).append(Decimal(r[5]))
        assert len(r[4]) == len(r[5]) == 6  # 4 decimal places, as written
    assert available.count(Decimal(1)) > 0.9 * len(rows)  # mostly fully available
    assert 0 < available.count(Decimal(0)) < 0.02 * len(rows)  # some outages
    assert any(0 < a < 1 for a in available)  # and partial dips
    for node, values in mfu_by_node.items():
        if node in failing:
            assert all(v < floor for v in values), node
    healthy = [sum(v) / len(v) for node, v in mfu_by_node.items() if node not in failing]
    assert all(mean > floor for mean in healthy)
    assert any(mean >= CONFIG.grade for mean in healthy) and any(mean < CONFIG.grade * Decimal("0.97")
                                                                 for mean in healthy)


def test_missing_node_hours_and_bad_configs() -> None:
    sparse = GeneratorConfig("D/1", START_NS, hours=100, nodes=50, seed=1, missing=Decimal("0.1"))
    assert 400 < sum(1 for _ in generate_rows(sparse, KEY)) < 4_600
    with pytest.raises(ValueError, match="on the hour"):
        GeneratorConfig("D/1", START_NS + 1, 1, 1)
    with pytest.raises(ValueError, match="4 decimal places"):
        GeneratorConfig("D/1", START_NS, 1, 1, grade=Decimal("0.40001"))
    with pytest.raises(ValueError, match="delivery id"):
        GeneratorConfig("D|1", START_NS, 1, 1)
    with pytest.raises(ValueError, match="positive"):
        GeneratorConfig("D/1", START_NS, 0, 1)
