"""Seeded synthetic probe telemetry for a delivery: a month of node-hours for many nodes.

A tool for tests, demos and load measurement, not part of the deterministic core: it may use
`random.Random(seed)`. Only integer draws are used (values are whole basis points, 0.0001), so the
same seed writes the same bytes on every platform and Python version with the same `random`.

The model, per node:
- a base probe MFU: most nodes a little above the grade, some "weak" nodes between the floor
  (grade − floor_offset) and the deadband (grade × (1 − deadband)), and round(failing × nodes)
  failing nodes consistently below the floor;
- hourly MFU noise of up to ±1.6 points around the base (failing nodes stay below the floor);
- availability 1.0000 most hours, with short partial losses (minutes of downtime), multi-hour dips
  where some of the node's GPUs are down (e.g. 7/8 = 0.8750), whole-node outages of 1-24 hours
  (available 0, probe_mfu 0), and rare correlated outages of a contiguous block of ~2% of the nodes;
- optionally a share of node-hours with no record at all (`missing`).
Rows come hour by hour, node by node, and are signed with the probe key; memory is O(nodes).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Final

from exchange.domain.units import NS_PER_HOUR
from exchange.telemetry.files import Format, RecordWriter
from exchange.telemetry.record import DeliveryWindow, RecordError, check_identifier, format_hour_start
from exchange.telemetry.signing import Signer

BP: Final = 10_000  # values are whole basis points of 1
_PPM: Final = 1_000_000


def _bp(value: Decimal, name: str) -> int:
    scaled = value * BP
    if scaled != scaled.to_integral_value() or not 0 <= scaled <= BP:
        raise ValueError(f"{name} must be between 0 and 1 with at most 4 decimal places, not {value}")
    return int(scaled)


def format_bp(value_bp: int) -> str:
    """Basis points -> a decimal with 4 places: 9875 -> "0.9875", 10000 -> "1.0000"."""
    return f"{value_bp // BP}.{value_bp % BP:04d}"


@dataclass(frozen=True)
class GeneratorConfig:
    delivery_id: str
    start_ns: int
    hours: int
    nodes: int
    gpus_per_node: int = 8
    grade: Decimal = Decimal("0.40")
    seed: int = 0
    failing: Decimal = Decimal("0.05")  # share of nodes consistently below the floor
    floor_offset: Decimal = Decimal("0.05")
    deadband: Decimal = Decimal("0.03")
    missing: Decimal = Decimal("0")  # chance that a node-hour has no record

    def __post_init__(self) -> None:
        try:
            check_identifier(self.delivery_id, "delivery id")
        except RecordError as error:
            raise ValueError(error.message) from None
        if self.start_ns % NS_PER_HOUR:
            raise ValueError("the delivery must start on the hour")
        if self.hours < 1 or self.nodes < 1 or self.gpus_per_node < 1:
            raise ValueError("hours, nodes and GPUs per node must be positive")
        if _bp(self.grade, "grade") == 0 or _bp(self.grade - self.floor_offset, "the floor") < 0:
            raise ValueError(f"grade {self.grade} minus the floor offset {self.floor_offset} must be in 0..1")
        _bp(self.deadband, "deadband")
        if not 0 <= self.failing <= 1:
            raise ValueError(f"failing must be a share of the nodes in 0..1, not {self.failing}")
        if not 0 <= self.missing <= 1 or self.missing * _PPM != int(self.missing * _PPM):
            raise ValueError(f"missing must be in 0..1 with at most 6 decimal places, not {self.missing}")

    @property
    def window(self) -> DeliveryWindow:
        """The delivery these records are for: G = nodes × GPUs per node."""
        return DeliveryWindow(self.start_ns, self.start_ns + self.hours * NS_PER_HOUR,
                              self.nodes * self.gpus_per_node)

    @property
    def failing_count(self) -> int:
        return int((self.failing * self.nodes).to_integral_value(ROUND_HALF_EVEN))

    def node_id(self, index: int) -> str:
        return f"node-{index + 1:05d}"


@dataclass(slots=True)
class _Node:
    node_id: str
    base_bp: int
    failing: bool
    outage_left: int = 0
    dip_left: int = 0
    dip_bp: int = BP


def _nodes(config: GeneratorConfig, rng: random.Random) -> list[_Node]:
    grade_bp = _bp(config.grade, "grade")
    floor_bp = _bp(config.grade - config.floor_offset, "the floor")
    deadband_bp = grade_bp * (BP - _bp(config.deadband, "deadband")) // BP  # φ = 1 from here
    failing = set(rng.sample(range(config.nodes), config.failing_count))
    nodes = []
    for index in range(config.nodes):
        if index in failing:
            base = floor_bp - rng.randint(50, 500)
        elif rng.randrange(100) < 15:  # weak: paid pro rata, between the floor and the deadband
            base = rng.randint(min(floor_bp + 80, deadband_bp), max(deadband_bp - 20, floor_bp + 80))
        else:
            base = rng.randint(deadband_bp + 40, grade_bp + 600)
        nodes.append(_Node(config.node_id(index), min(max(base, 0), BP), index in failing))
    return nodes


def failing_nodes(config: GeneratorConfig) -> list[str]:
    """The node ids the generator makes fail (below the floor every hour)."""
    return [node.node_id for node in _nodes(config, random.Random(config.seed)) if node.failing]


def generate_rows(config: GeneratorConfig, probe_key: bytes) -> Iterator[tuple[str, str, str, str, str, str, str]]:
    """The signed rows (the seven FIELDS as strings), hour by hour, node by node."""
    rng = random.Random(config.seed)
    nodes = _nodes(config, rng)
    signer = Signer(probe_key)
    floor_bp = _bp(config.grade - config.floor_offset, "the floor")
    gpus = config.gpus_per_node
    gpus_text = str(gpus)
    missing_ppm = int(config.missing * _PPM)
    block = max(1, len(nodes) // 50)
    for hour in range(config.hours):
        hour_text = format_hour_start(config.start_ns + hour * NS_PER_HOUR)
        if rng.randrange(400) == 0:  # a correlated outage: a rack or a switch takes a block of nodes down
            first, duration = rng.randrange(len(nodes)), rng.randint(1, 6)
            for offset in range(block):
                node = nodes[(first + offset) % len(nodes)]
                node.outage_left = max(node.outage_left, duration)
        for node in nodes:
            if node.outage_left == 0 and rng.randrange(2000) == 0:
                node.outage_left = rng.randint(1, 24)
            if node.outage_left:
                node.outage_left -= 1
                available, mfu = 0, 0
            else:
                if node.dip_left == 0 and gpus > 1 and rng.randrange(150) == 0:
                    node.dip_left = rng.randint(1, 8)
                    up = gpus - rng.randint(1, gpus - 1)
                    node.dip_bp = (2 * up * BP + gpus) // (2 * gpus)  # rounded to a basis point
                if node.dip_left:
                    node.dip_left -= 1
                    available = node.dip_bp
                elif rng.randrange(40) == 0:
                    available = BP - rng.randint(1, 800)
                else:
                    available = BP
                mfu = node.base_bp + rng.randint(-80, 80) + rng.randint(-80, 80)
                mfu = min(mfu, floor_bp - 1) if node.failing else mfu
                mfu = min(max(mfu, 0), BP)
            if missing_ppm and rng.randrange(_PPM) < missing_ppm:
                continue
            values = (config.delivery_id, node.node_id, hour_text, gpus_text, format_bp(available), format_bp(mfu))
            yield (*values, signer.hexdigest("|".join(values).encode("utf-8")))


def write_telemetry(path: Path | str, config: GeneratorConfig, probe_key: bytes, fmt: Format | None = None) -> int:
    """Generate into a CSV or JSON Lines file (format from the extension unless given); the row count."""
    with RecordWriter(path, fmt) as out:
        for row in generate_rows(config, probe_key):
            out.write(row)
    return out.count
