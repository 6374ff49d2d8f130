"""Delivery statements: JSON and CSV for machines, and a readable, self-contained HTML page (inline
SVG chart of each hour's effective GPU-hours against the contracted line, the rejected records, the
cash lines). All amounts are exact decimals written as strings."""

from __future__ import annotations

import csv
import html
import io
import json
import os
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exchange.domain.delivery import quantize_gpuh
from exchange.domain.engine import Engine
from exchange.domain.units import NS_PER_HOUR, micros_to_usd, ticks_to_price

if TYPE_CHECKING:
    from exchange.jobs.delivery import DeliveryOutcome, DeliveryReport

CHART_W, CHART_H, PAD = 760, 220, 30


def _iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _gpuh(value: Fraction) -> str:
    return _micro(quantize_gpuh(value))


def _micro(micro_units: int) -> str:
    sign = "-" if micro_units < 0 else ""
    whole, frac = divmod(abs(micro_units), 1_000_000)
    return f"{sign}{whole}.{frac:06d}"


def statement(outcome: DeliveryOutcome, engine: Engine) -> dict[str, Any]:
    d, r = outcome.delivery, outcome.result
    spec = engine.series[d.symbol].spec
    hours = range(spec.delivery_start_ns, spec.delivery_end_ns, NS_PER_HOUR)
    return {
        "delivery_id": d.delivery_id, "symbol": d.symbol, "seller": d.seller, "buyer": d.buyer, "lots": d.lots,
        "contracted_gpus": d.gpus, "contracted_gpu_hours": d.gpu_hours,
        "final_settlement_price": str(ticks_to_price(d.fsp_ticks, spec.tick_micros)),
        "replacement_reference_price": (str(ticks_to_price(outcome.rrp_ticks, spec.tick_micros))
                                        if outcome.rrp_ticks is not None else None),
        "effective_gpu_hours": _micro(r.effective_micro_gpuh),
        "shortfall_gpu_hours": _micro(r.shortfall_micro_gpuh),
        "default": r.default, "status": outcome.status, "digest": outcome.digest,
        "records": {"accepted": outcome.input.accepted, "rejected": outcome.input.rejected_count},
        "cash": [
            {"kind": "delivery_invoice", "from": d.buyer, "to": d.seller,
             "amount": str(micros_to_usd(r.invoice_micros))},
            {"kind": "delivery_damages", "from": d.seller, "to": d.buyer,
             "amount": str(micros_to_usd(r.damages_micros))},
        ],
        "hourly": [{"hour_start": _iso(h), "effective_gpu_hours": _gpuh(e), "contracted_gpus": d.gpus}
                   for h, e in zip(hours, r.hourly, strict=True)],
        "rejected_records": [{"source": s, "line": n, "reason": why, "record": raw}
                             for s, n, why, raw in outcome.input.rejected],
    }


def _chart(body: dict[str, Any]) -> str:
    hourly = body["hourly"]
    top = max([body["contracted_gpus"]] + [float(h["effective_gpu_hours"]) for h in hourly]) or 1
    n = max(len(hourly) - 1, 1)

    def x(i: int) -> float:
        return PAD + i * (CHART_W - 2 * PAD) / n

    def y(v: float) -> float:
        return CHART_H - PAD - v * (CHART_H - 2 * PAD) / top

    points = " ".join(f"{x(i):.1f},{y(float(h['effective_gpu_hours'])):.1f}" for i, h in enumerate(hourly))
    line = y(body["contracted_gpus"])
    return (f'<svg width="{CHART_W}" height="{CHART_H}" role="img" aria-label="effective GPU-hours per hour">'
            f'<line x1="{PAD}" y1="{line:.1f}" x2="{CHART_W - PAD}" y2="{line:.1f}" stroke="#999" '
            f'stroke-dasharray="4"/><text x="{PAD}" y="{line - 4:.1f}" font-size="11">contracted '
            f'{body["contracted_gpus"]} GPU-h per hour</text>'
            f'<polyline fill="none" stroke="#1f6feb" stroke-width="1.5" points="{points}"/></svg>')


def render_html(body: dict[str, Any]) -> str:
    esc = html.escape
    cash_rows = "".join(f"<tr><td>{esc(c['kind'])}</td><td>{c['from']}</td><td>{c['to']}</td>"
                        f"<td class=n>{esc(c['amount'])}</td></tr>" for c in body["cash"])
    rejected_rows = "".join(f"<tr><td>{esc(r['source'])}:{r['line']}</td><td>{esc(r['reason'])}</td>"
                            f"<td><code>{esc(r['record'])}</code></td></tr>" for r in body["rejected_records"])
    summary = "".join(f"<tr><th>{esc(k.replace('_', ' '))}</th><td>{esc(str(body[k]))}</td></tr>" for k in (
        "symbol", "seller", "buyer", "lots", "contracted_gpus", "contracted_gpu_hours", "final_settlement_price",
        "replacement_reference_price", "effective_gpu_hours", "shortfall_gpu_hours", "default", "status"))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Delivery {esc(body['delivery_id'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em}}td,th{{padding:.2em .8em;text-align:left}}
.n{{text-align:right;font-variant-numeric:tabular-nums}}table{{border-collapse:collapse}}tr:nth-child(even){{background:#f4f4f4}}</style>
</head><body><h1>Delivery {esc(body['delivery_id'])}</h1><table>{summary}</table>
<h2>Effective GPU-hours per hour</h2>{_chart(body)}
<h2>Cash</h2><table><tr><th>kind</th><th>from</th><th>to</th><th>USD</th></tr>{cash_rows}</table>
<h2>Rejected records ({body['records']['rejected']})</h2>
<table><tr><th>where</th><th>reason</th><th>record as given</th></tr>{rejected_rows}</table>
</body></html>
"""


def write_delivery_statements(root: Path, report: DeliveryReport, engine: Engine) -> list[Path]:
    written: list[Path] = []
    for outcome in report.outcomes:
        body = statement(outcome, engine)
        symbol, _, number = outcome.delivery.delivery_id.rpartition("/")
        folder = root / symbol
        folder.mkdir(parents=True, exist_ok=True)
        base = folder / f"delivery-{number}"
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["hour_start", "effective_gpu_hours", "contracted_gpus"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(body["hourly"])
        for suffix, text in ((".json", json.dumps(body, indent=2) + "\n"), (".csv", buffer.getvalue()),
                             (".html", render_html(body))):
            path = base.with_suffix(suffix)
            temporary = path.with_suffix(suffix + ".tmp")
            temporary.write_text(text)
            os.replace(temporary, path)
            written.append(path)
    return written
