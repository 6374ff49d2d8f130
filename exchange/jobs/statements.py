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
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exchange.domain.delivery import quantize_gpuh
from exchange.domain.engine import Engine
from exchange.domain.units import NS_PER_HOUR, micros_to_usd, ticks_to_price

if TYPE_CHECKING:
    from exchange.jobs.delivery import DeliveryOutcome, DeliveryReport

CHART_W, CHART_H = 760, 260


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
        "default": r.default, "status": outcome.status, "dry_run": outcome.status == "dry-run",
        "digest": outcome.digest,
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


def usd_text(amount: str | Decimal) -> str:
    """A USD amount for people: "$1,714.18" when it is whole cents, else every digit ("$1,714.176500")."""
    value = Decimal(amount)
    cents = value.quantize(Decimal("0.01"))
    shown = cents if cents == value else value
    return ("-" if shown < 0 else "") + f"${abs(shown):,}"


def price_text(price: str | None) -> str:
    """A price per GPU-hour for people: "$2.405 per GPU-hour"."""
    return "none published" if price is None else f"${Decimal(price):,} per GPU-hour"


def _chart(body: dict[str, Any]) -> str:
    """Each hour's effective GPU-hours (after the quality factor) against the contracted GPUs per hour:
    labelled axes with ticks and a legend, so a reader can take values off it."""
    hourly = body["hourly"]
    contracted = body["contracted_gpus"]
    top = max([contracted] + [float(h["effective_gpu_hours"]) for h in hourly]) * 1.1 or 1.0
    n = max(len(hourly) - 1, 1)
    left, right, upper, lower = 70, CHART_W - 45, 40, CHART_H - 50

    def x(i: float) -> float:
        return left + i * (right - left) / n

    def y(v: float) -> float:
        return lower - v * (lower - upper) / top

    parts = [f'<svg width="{CHART_W}" height="{CHART_H}" role="img" font-family="system-ui,sans-serif" '
             f'font-size="11" aria-label="effective GPU-hours per hour against the contracted GPUs">']
    for k in range(5):   # y ticks and grid
        value = top * k / 4
        parts.append(f'<line x1="{left}" y1="{y(value):.1f}" x2="{right}" y2="{y(value):.1f}" stroke="#e4e4e4"/>'
                     f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:,.1f}</text>')
    for k in range(min(len(hourly), 6)):   # x ticks: up to six hours, evenly spread, as UTC dates and hours
        i = round(k * (len(hourly) - 1) / max(min(len(hourly), 6) - 1, 1))
        label = html.escape(hourly[i]["hour_start"][5:16].replace("T", " "))
        parts.append(f'<line x1="{x(i):.1f}" y1="{lower}" x2="{x(i):.1f}" y2="{lower + 4}" stroke="#333"/>'
                     f'<text x="{x(i):.1f}" y="{lower + 16}" text-anchor="middle">{label}</text>')
    parts.append(f'<line x1="{left}" y1="{lower}" x2="{right}" y2="{lower}" stroke="#333"/>'
                 f'<line x1="{left}" y1="{upper}" x2="{left}" y2="{lower}" stroke="#333"/>'
                 f'<text x="{(left + right) / 2:.0f}" y="{CHART_H - 8}" text-anchor="middle">hour starting '
                 f'(UTC, MM-DD hh:mm)</text>'
                 f'<text x="14" y="{(upper + lower) / 2:.0f}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {(upper + lower) / 2:.0f})">GPU-hours in the hour</text>')
    line = y(contracted)
    parts.append(f'<line x1="{left}" y1="{line:.1f}" x2="{right}" y2="{line:.1f}" stroke="#b35900" '
                 f'stroke-dasharray="5 3" stroke-width="1.5"/>')
    points = " ".join(f"{x(i):.1f},{y(float(h['effective_gpu_hours'])):.1f}" for i, h in enumerate(hourly))
    parts.append(f'<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{points}"/>')
    parts.append(f'<g transform="translate({left + 10},14)"><line x1="0" y1="0" x2="24" y2="0" stroke="#1f6feb" '
                 f'stroke-width="2"/><text x="30" y="4">effective GPU-hours delivered (after quality)</text>'
                 f'<line x1="300" y1="0" x2="324" y2="0" stroke="#b35900" stroke-dasharray="5 3" '
                 f'stroke-width="1.5"/><text x="330" y="4">contracted: {contracted} GPUs per hour</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(body: dict[str, Any]) -> str:
    esc = html.escape
    cash_rows = "".join(f"<tr><td>{esc(c['kind'].replace('_', ' '))}</td><td>account {c['from']}</td>"
                        f"<td>account {c['to']}</td><td class=n>{esc(usd_text(c['amount']))}</td></tr>"
                        for c in body["cash"])
    rejected_rows = "".join(f"<tr><td>{esc(r['source'])}:{r['line']}</td><td>{esc(r['reason'])}</td>"
                            f"<td><code>{esc(r['record'])}</code></td></tr>" for r in body["rejected_records"])
    shown = {
        "series": body["symbol"], "seller": f"account {body['seller']}", "buyer": f"account {body['buyer']}",
        "lots": body["lots"], "contracted GPUs (G)": body["contracted_gpus"],
        "contracted quantity (Q)": f"{body['contracted_gpu_hours']:,} GPU-hours",
        "final settlement price": price_text(body["final_settlement_price"]),
        "replacement reference price": price_text(body["replacement_reference_price"]),
        "effective quantity (E)": f"{Decimal(body['effective_gpu_hours']):,} GPU-hours",
        "shortfall beyond tolerance": f"{Decimal(body['shortfall_gpu_hours']):,} GPU-hours",
        "delivery default": "yes" if body["default"] else "no", "status": body["status"],
    }
    summary = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in shown.items())
    dry = ('<p class=dry>DRY RUN: nothing was posted; this is not the statement of record.</p>'
           if body.get("dry_run") else "")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Delivery {esc(body['delivery_id'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em}}td,th{{padding:.2em .8em;text-align:left}}
.n{{text-align:right;font-variant-numeric:tabular-nums}}table{{border-collapse:collapse}}tr:nth-child(even){{background:#f4f4f4}}
.dry{{background:#fff3cd;border:1px solid #b35900;padding:.5em 1em;font-weight:bold}}</style>
</head><body><h1>Delivery {esc(body['delivery_id'])}</h1>{dry}<table>{summary}</table>
<h2>Effective GPU-hours per hour</h2>{_chart(body)}
<h2>Cash</h2><table><tr><th>kind</th><th>from</th><th>to</th><th>amount (USD)</th></tr>{cash_rows}</table>
<h2>Rejected records ({body['records']['rejected']})</h2>
<table><tr><th>where</th><th>reason</th><th>record as given</th></tr>{rejected_rows}</table>
</body></html>
"""


CSV_COLUMNS = ["line", "hour_start", "effective_gpu_hours", "contracted_gpus", "amount_usd", "from_account",
               "to_account"]


def statement_csv(body: dict[str, Any]) -> str:
    """The statement as CSV: one `hour` line per hour, then the `total` (E against Q), the `shortfall`,
    and one line per cash movement (invoice, damages) with its amount in USD and its accounts."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n", restval="")
    writer.writeheader()
    for h in body["hourly"]:
        writer.writerow({"line": "hour", **h})
    writer.writerow({"line": "total", "effective_gpu_hours": body["effective_gpu_hours"],
                     "contracted_gpus": body["contracted_gpus"]})
    writer.writerow({"line": "shortfall", "effective_gpu_hours": body["shortfall_gpu_hours"]})
    for c in body["cash"]:
        writer.writerow({"line": c["kind"], "amount_usd": c["amount"], "from_account": c["from"],
                         "to_account": c["to"]})
    return buffer.getvalue()


def write_delivery_statements(root: Path, report: DeliveryReport, engine: Engine,
                              outcomes: list[DeliveryOutcome]) -> list[Path]:
    written: list[Path] = []
    for outcome in outcomes:
        body = statement(outcome, engine)
        symbol, _, number = outcome.delivery.delivery_id.rpartition("/")
        folder = root / symbol
        folder.mkdir(parents=True, exist_ok=True)
        base = folder / f"delivery-{number}"
        for suffix, text in ((".json", json.dumps(body, indent=2) + "\n"), (".csv", statement_csv(body)),
                             (".html", render_html(body))):
            path = base.with_suffix(suffix)
            temporary = path.with_suffix(suffix + ".tmp")
            temporary.write_text(text)
            os.replace(temporary, path)
            written.append(path)
    return written
