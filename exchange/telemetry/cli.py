"""`exchange probe ...`: the reference probe's telemetry files.

    exchange probe sign IN OUT                 sign (or re-sign) every record; CSV/JSONL by extension
    exchange probe generate OUT --delivery H100-M40-Z26/1 --start 2026-12-01 --hours 744 --nodes 1000
    exchange probe check FILE... --delivery ID --start ISO --hours N --gpus G [--rejects OUT]

The probe key is EXCHANGE_PROBE_KEY (hex) or <data>/probe.key, which `exchange init` and `exchange serve`
create; these commands never invent one (they fail and say where the key is expected).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from exchange.domain.units import NS_PER_HOUR, UnitError, to_decimal
from exchange.telemetry.files import Format
from exchange.telemetry.generator import GeneratorConfig, write_telemetry
from exchange.telemetry.reader import read_telemetry
from exchange.telemetry.record import DeliveryWindow, RecordError, RejectedRecord, parse_hour_start
from exchange.telemetry.report import RejectsWriter, TelemetrySummary
from exchange.telemetry.signing import load_probe_key, sign_file

DataOption = Annotated[Path | None,
                       typer.Option("--data", help="data directory holding probe.key (default $EXCHANGE_DATA_DIR)")]
DeliveryOption = Annotated[str, typer.Option("--delivery", help="delivery id, e.g. H100-M40-Z26/1")]
StartOption = Annotated[str, typer.Option("--start", metavar="ISO8601",
                                          help="first delivery hour, UTC: 2026-12-01 or 2026-12-01T00:00:00Z")]
HoursOption = Annotated[int, typer.Option("--hours", min=1, help="delivery hours")]


def parse_start(text: str) -> int:
    """`2026-12-01` (midnight UTC) or an on-the-hour UTC instant -> ns."""
    text = text.strip()
    try:
        return parse_hour_start(f"{text}T00:00:00Z" if len(text) == 10 else text)
    except RecordError as error:
        raise ValueError(f"--start: {error.message}") from None


def _decimal(text: str, option: str) -> Decimal:
    try:
        return to_decimal(text, option)
    except UnitError as error:
        raise ValueError(str(error)) from None


def register(app: typer.Typer, errors: Callable[[], AbstractContextManager[None]], console: Callable[[], Any]) -> None:
    """Add the `probe` sub-app to the main `exchange` app (the CLI module owns errors and console)."""
    probe_app = typer.Typer(help="Delivery telemetry of the reference probe: sign, generate, check.",
                            no_args_is_help=True)
    app.add_typer(probe_app, name="probe")

    @probe_app.command("sign")
    def sign_command(
        source: Annotated[Path, typer.Argument(metavar="IN", help="records to sign (.csv, .jsonl, .ndjson)")],
        target: Annotated[Path, typer.Argument(metavar="OUT", help="signed records (.csv, .jsonl, .ndjson)")],
        data: DataOption = None,
    ) -> None:
        """Sign every record with the probe key (adds or replaces the signature; values kept as written)."""
        with errors():
            count = sign_file(source, target, load_probe_key(data))
            console().print(f"signed {count:,} records into {target}")

    @probe_app.command("generate")
    def generate_command(
        target: Annotated[Path, typer.Argument(metavar="OUT", help="file to write (.csv, .jsonl, .ndjson)")],
        delivery: DeliveryOption,
        start: StartOption,
        hours: HoursOption = 744,
        nodes: Annotated[int, typer.Option(min=1, help="probed nodes")] = 100,
        gpus_per_node: Annotated[int, typer.Option(min=1, help="GPUs of each node allocated to the buyer")] = 8,
        grade: Annotated[str, typer.Option(help="the product's MFU grade")] = "0.40",
        seed: Annotated[int, typer.Option(help="same seed, same file")] = 0,
        failing: Annotated[str, typer.Option(help="share of nodes consistently below the floor")] = "0.05",
        missing: Annotated[str, typer.Option(help="chance that a node-hour has no record")] = "0",
        fmt: Annotated[Format | None, typer.Option("--format", help="default: from OUT's extension")] = None,
        data: DataOption = None,
    ) -> None:
        """Write a seeded month of signed probe records: availability dips and outages, MFU around the grade."""
        with errors():
            config = GeneratorConfig(delivery, parse_start(start), hours, nodes, gpus_per_node,
                                     _decimal(grade, "--grade"), seed, _decimal(failing, "--failing"),
                                     missing=_decimal(missing, "--missing"))
            count = write_telemetry(target, config, load_probe_key(data), fmt)
            console().print(f"wrote {count:,} records to {target}: {nodes:,} nodes x {hours:,} hours, "
                            f"{config.failing_count:,} failing; delivery {delivery} of "
                            f"{config.window.contracted_gpus:,} GPUs")

    @probe_app.command("check")
    def check_command(
        files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="telemetry files")],
        delivery: DeliveryOption,
        start: StartOption,
        hours: HoursOption,
        gpus: Annotated[int, typer.Option("--gpus", min=1, help="contracted GPUs G of the delivery")],
        rejects: Annotated[Path | None, typer.Option(help="write rejected records here (.csv or .jsonl)")] = None,
        data: DataOption = None,
    ) -> None:
        """Validate telemetry against one delivery: counts by outcome and reason; optionally the rejects."""
        with errors():
            start_ns = parse_start(start)
            window = DeliveryWindow(start_ns, start_ns + hours * NS_PER_HOUR, gpus)
            items = read_telemetry(files, {delivery: window}, load_probe_key(data))
            summary = TelemetrySummary()
            writer = RejectsWriter(rejects) if rejects is not None else None
            try:
                for item in items:
                    summary.add(item)
                    if writer is not None and isinstance(item, RejectedRecord):
                        writer.write(item)
            finally:
                if writer is not None:
                    writer.close()
            table = Table(title=f"Telemetry for {delivery}", box=box.SIMPLE_HEAD, title_style="bold")
            table.add_column("outcome")
            table.add_column("records", justify="right")
            table.add_row("accepted", f"{summary.accepted:,}")
            table.add_row("duplicate (ignored)", f"{summary.duplicate:,}")
            for reason, count in summary.reasons():
                table.add_row(f"rejected: {reason}", f"{count:,}")
            table.caption = f"{summary.records:,} records in {len(files)} file(s)" + (
                f"; {summary.rejected:,} rejects written to {rejects}" if rejects is not None else "")
            console().print(table)
