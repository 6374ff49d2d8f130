"""`exchange settle delivery --telemetry FILE...`: goodput-adjusted delivery settlement (rulebook §8).

The probe's records are streamed (never a whole file in memory), checked (`exchange.telemetry`) and
folded into one exact sum per delivery and hour, `Σ gpus × available × φ`; nothing per record is kept
but the reader's duplicate check. Then per delivery: `e_h = min(G, sum)`, E, the invoice, shortfall,
damages and default (`exchange.domain.delivery.settle_delivery`), and one `SettleDelivery` command
whose digest covers the accepted records (order-independent) and the replacement price: a rerun with
the same input posts nothing, different input is refused unless `--amend`, which posts corrections.

The telemetry deadline (rulebook §8 v2): records of a delivery are accepted until
`telemetry_deadline_hours` (48) after its period ends, judged by when the file reached the exchange:
a file in the telemetry inbox when it entered it (its modification time: an upload stamps the
exchange's time), any other file when the job reads it. A run at or after a delivery's deadline rejects its
records as `late` (an `--amend` run takes them), and settles every assigned delivery past its deadline
that is not settled yet, with what was accepted before: a delivery with no accepted record settles
with E = 0 (no invoice, full damages, a default), so silence is never cheaper than a bad measurement.
Before its deadline a delivery is settled only once it has accepted records (a file that does not
mention a delivery says nothing about it; the summary lists deliveries without telemetry). Rejected records go
to the rejects file with the record as given and the reason; statements (JSON, CSV, HTML) per
delivery show each hour against the contracted line, its rejected records and the cash lines.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from exchange.catalog import Catalog
from exchange.domain import delivery as math
from exchange.domain.commands import SettleDelivery
from exchange.domain.engine import Delivery
from exchange.domain.events import DeliverySettled, DeliverySettlementDuplicate, Rejected
from exchange.domain.spec import SeriesSpec
from exchange.domain.units import NS_PER_HOUR, price_to_ticks
from exchange.jobs.inbox import inbox_dir
from exchange.jobs.session import job_session
from exchange.settings import Settings
from exchange.telemetry.reader import read_telemetry
from exchange.telemetry.record import AcceptedRecord, DeliveryWindow, DuplicateRecord, RejectedRecord
from exchange.telemetry.report import RejectsWriter, TelemetrySummary

DIGEST_MODULUS = 2**256
REJECTS_PER_STATEMENT_MAX = 200   # a statement shows this many rejected records (all are in the rejects file)
PROGRESS_EVERY_RECORDS = 10_000


@dataclass
class DeliveryInput:
    """What the telemetry said about one delivery, folded as it streamed by."""

    hourly: dict[int, Fraction] = field(default_factory=dict)    # hour start -> Σ gpus × available × φ
    accepted: int = 0
    rejected: list[tuple[str, int, str, str]] = field(default_factory=list)   # (source, line, reason, raw)
    rejected_count: int = 0
    digest_sum: int = 0                                          # Σ sha256(record) mod 2^256


@dataclass(frozen=True)
class DeliveryOutcome:
    delivery: Delivery
    result: math.DeliveryResult
    rrp_ticks: int | None
    digest: str
    status: str                  # posted | amended | unchanged | refused: ... | dry-run
    input: DeliveryInput


@dataclass
class DeliveryReport:
    summary: TelemetrySummary
    outcomes: list[DeliveryOutcome] = field(default_factory=list)
    without_telemetry: list[str] = field(default_factory=list)
    statements: list[Path] = field(default_factory=list)
    rejects_path: Path | None = None


def _record_digest(record: AcceptedRecord) -> int:
    canonical = "|".join((record.delivery_id, record.node_id, str(record.hour_start_ns), str(record.gpus),
                          str(record.available), str(record.probe_mfu)))
    return int.from_bytes(hashlib.sha256(canonical.encode()).digest(), "big")


def fold(items: Any, deliveries: dict[str, Delivery], specs: dict[str, SeriesSpec], catalog: Catalog,
         summary: TelemetrySummary, rejects: RejectsWriter | None,
         progress: Callable[[int], None] | None = None) -> dict[str, DeliveryInput]:
    """Stream the reader's items into per-delivery, per-hour exact sums."""
    rules = catalog.rules.settlement
    inputs: dict[str, DeliveryInput] = {}
    phi_cache: dict[tuple[Decimal, Decimal], Fraction] = {}
    for seen, item in enumerate(items, 1):
        summary.add(item)
        if progress is not None and seen % PROGRESS_EVERY_RECORDS == 0:
            progress(seen)
        if isinstance(item, AcceptedRecord):
            spec = specs[deliveries[item.delivery_id].symbol]
            key = (item.probe_mfu, spec.mfu_grade)
            phi = phi_cache.get(key)
            if phi is None:
                if len(phi_cache) > 100_000:
                    phi_cache.clear()
                phi = phi_cache[key] = math.quality_factor(item.probe_mfu, spec.mfu_grade, rules.mfu_deadband,
                                                           rules.mfu_floor_offset)
            state = inputs.setdefault(item.delivery_id, DeliveryInput())
            if phi:
                contribution = item.gpus * Fraction(item.available) * phi
                state.hourly[item.hour_start_ns] = state.hourly.get(item.hour_start_ns, Fraction(0)) + contribution
            state.accepted += 1
            state.digest_sum = (state.digest_sum + _record_digest(item)) % DIGEST_MODULUS
        elif isinstance(item, RejectedRecord):
            if rejects is not None:
                rejects.write(item)
            delivery_id = item.delivery_id
            if delivery_id in deliveries:
                state = inputs.setdefault(delivery_id, DeliveryInput())
                state.rejected_count += 1
                if len(state.rejected) < REJECTS_PER_STATEMENT_MAX:
                    state.rejected.append((item.source, item.line_no, str(item.reason), item.raw[:500]))
        else:
            assert isinstance(item, DuplicateRecord)
    return inputs


def compute(delivery: Delivery, spec: SeriesSpec, state: DeliveryInput, rrp_ticks: int | None,
            catalog: Catalog) -> tuple[math.DeliveryResult, str]:
    hours = range(spec.delivery_start_ns, spec.delivery_end_ns, NS_PER_HOUR)
    e_by_hour = [min(Fraction(delivery.gpus), state.hourly.get(h, Fraction(0))) for h in hours]
    result = math.settle_delivery(delivery.fsp_ticks, rrp_ticks, spec.tick_micros, delivery.gpus, len(e_by_hour),
                                  e_by_hour, catalog.rules.settlement)
    digest = hashlib.sha256(f"delivery|{delivery.delivery_id}|{state.digest_sum:064x}|{rrp_ticks}".encode())
    return result, digest.hexdigest()


async def run_delivery(settings: Settings, catalog: Catalog, paths: Sequence[Path], *, dry_run: bool = False,
                       amend: bool = False, rrp: dict[str, Decimal] | None = None,
                       rejects_path: Path | None = None,
                       progress: Callable[[int], None] | None = None,
                       clock_ns: Callable[[], int] = time.time_ns, url: str | None = None,
                       only: set[str] | None = None) -> DeliveryReport:
    """`only`: settle just these deliveries (the scheduler's run at their telemetry deadline); records
    of the others are read and checked but settle nothing."""
    summary = TelemetrySummary()
    report = DeliveryReport(summary, rejects_path=rejects_path)
    async with job_session(settings, catalog, clock_ns, url) as session:
        engine = session.engine
        deliveries = dict(engine.deliveries)
        for delivery_id in sorted(only or ()):
            if delivery_id not in deliveries:
                raise ValueError(f"--delivery {delivery_id}: no such assigned delivery")
        specs = {d.symbol: engine.series[d.symbol].spec for d in deliveries.values()}
        now_ns = clock_ns()
        deadline_ns = catalog.rules.settlement.telemetry_deadline_hours * NS_PER_HOUR
        past_deadline = {d.delivery_id for d in deliveries.values()
                         if now_ns >= specs[d.symbol].delivery_end_ns + deadline_ns}
        windows = {d.delivery_id: DeliveryWindow(specs[d.symbol].delivery_start_ns, specs[d.symbol].delivery_end_ns,
                                                 d.gpus, deadline_ns=None if amend else
                                                 specs[d.symbol].delivery_end_ns + deadline_ns)
                   for d in deliveries.values()}
        # When each file reached the exchange: an inbox file when it entered the inbox (an upload stamps
        # it with the exchange's time), any other when this run reads it.
        inbox = inbox_dir(settings.data_dir).resolve()
        arrivals = {Path(p): (Path(p).stat().st_mtime_ns if Path(p).resolve().parent == inbox else now_ns)
                    for p in paths}
        # Every input is checked before the first posting: a wrong --rrp is an error, never ignored.
        for symbol, price in (rrp or {}).items():
            if symbol not in specs:
                raise ValueError(f"--rrp {symbol}: no assigned delivery of that series (assigned: "
                                 f"{', '.join(sorted(specs)) or 'none'})")
            if price <= 0:
                raise ValueError(f"--rrp {symbol}={price}: a replacement reference price must be positive")
        rrp_ticks = {symbol: price_to_ticks(price, specs[symbol].tick_micros, f"RRP of {symbol}")
                     for symbol, price in (rrp or {}).items()}
        items = read_telemetry(paths, windows, settings.load_probe_key(), arrivals=arrivals)
        if rejects_path is not None:
            with RejectsWriter(rejects_path) as rejects:
                inputs = fold(items, deliveries, specs, catalog, summary, rejects, progress)
        else:
            inputs = fold(items, deliveries, specs, catalog, summary, None, progress)
        report.without_telemetry = sorted(set(deliveries) - {d for d, s in inputs.items() if s.accepted})
        # Past the deadline, a delivery never settled is settled now on what it has: nothing (E = 0).
        silent = {d for d in past_deadline if deliveries[d].settlement is None and not (
            d in inputs and inputs[d].accepted)}
        for delivery_id in silent:
            inputs.setdefault(delivery_id, DeliveryInput())
        for delivery_id in sorted(inputs, key=_delivery_order):
            state = inputs[delivery_id]
            if (not state.accepted and delivery_id not in silent) or (only is not None and delivery_id not in only):
                continue
            delivery = deliveries[delivery_id]
            ticks = rrp_ticks.get(delivery.symbol)
            result, digest = compute(delivery, specs[delivery.symbol], state, ticks, catalog)
            status = "dry-run"
            if not dry_run:
                command = SettleDelivery(delivery_id, digest, result.effective_micro_gpuh, result.invoice_micros,
                                         result.damages_micros, result.default, amend)
                status = _status(await session.submit(command))
            engine = session.engine   # live: the replica, now past the command
            report.outcomes.append(DeliveryOutcome(engine.deliveries[delivery_id], result, ticks, digest, status,
                                                   state))
        from exchange.jobs.statements import statement, write_delivery_statements
        # The statements of record are those of what was posted; a dry run writes its own, marked, elsewhere,
        # and a refused settlement leaves the record's statement as it was.
        root = settings.data_dir / "statements" / ("dry-run/delivery" if dry_run else "delivery")
        kept = [o for o in report.outcomes if not o.status.startswith("refused")]
        report.statements = write_delivery_statements(root, report, engine, kept)
        if not dry_run:
            for outcome in kept:   # each party reads it over REST (GET /v1/statements)
                d = outcome.delivery
                body = statement(outcome, engine)
                start_ns = engine.series[d.symbol].spec.delivery_start_ns
                session.statements.write("delivery", d.delivery_id,
                                         [(party, start_ns, body) for party in sorted({d.seller, d.buyer})], clock_ns())
    return report


def _delivery_order(delivery_id: str) -> tuple[str, int]:
    symbol, _, n = delivery_id.rpartition("/")
    return symbol, int(n) if n.isdigit() else 0


def _status(events: list[Any]) -> str:
    for event in events:
        if isinstance(event, DeliverySettled):
            return "amended" if event.amended else "posted"
        if isinstance(event, DeliverySettlementDuplicate):
            return "unchanged"
        if isinstance(event, Rejected):
            return f"refused: {event.code}: {event.message}"
    raise AssertionError(f"SettleDelivery produced no outcome: {events!r}")

