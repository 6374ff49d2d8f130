"""Daily statements as CSV and HTML, rendered from the statement of record's JSON (the store keeps
only the JSON: writing three files per account per date was most of the daily job's time)."""

from __future__ import annotations

import csv
import html
import io
from typing import Any

DAILY_COLUMNS = ("symbol", "settlement_price", "method", "prior_settlement_price", "position_lots",
                 "variation_margin")


def daily_csv(body: dict[str, Any]) -> str:
    """One line per series settled that date, then the total variation margin."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(DAILY_COLUMNS)
    for line in body["lines"]:
        writer.writerow([line[column] for column in DAILY_COLUMNS])
    writer.writerow(["total", "", "", "", "", body["total_variation_margin"]])
    return buffer.getvalue()


def daily_html(body: dict[str, Any]) -> str:
    e = html.escape
    rows = "".join("<tr>" + "".join(f"<td>{e(str(line[c]))}</td>" for c in DAILY_COLUMNS) + "</tr>"
                   for line in body["lines"])
    head = "".join(f"<th>{e(c.replace('_', ' '))}</th>" for c in DAILY_COLUMNS)
    call = "<p><strong>Margin call</strong>: cash is below 75% of the required margin.</p>" \
        if body.get("margin_call") else ""
    dry = "<p><strong>DRY RUN</strong>: nothing was posted.</p>" if body.get("dry_run") else ""
    return (f"<!doctype html><html><head><meta charset=utf-8><title>Daily statement {e(body['date'])} account "
            f"{body['account_id']}</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:"
            f"collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style></head><body>"
            f"<h1>Daily statement, {e(body['date'])}</h1>{dry}<p>Account {body['account_id']}, amounts in "
            f"{e(body['currency'])}, prices in USD per GPU-hour.</p><table><tr>{head}</tr>{rows}</table>"
            f"<p>Total variation margin: {e(body['total_variation_margin'])}</p>"
            f"<p>Cash: {e(str(body.get('cash')))}; required margin: {e(str(body.get('required_margin')))}</p>"
            f"{call}</body></html>\n")
