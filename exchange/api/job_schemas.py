"""The settlement commands a job submits over the operator API (`POST /v1/admin/commands`), as typed
JSON: one object per command kind, discriminated by `kind`. Whatever the schema admits the core takes
as a command; the core's own checks (an unknown series, a conflicting digest...) answer as events in
the journal, which the job reads there. Integers are bounded to what the journal encodes (64 bits)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from exchange.api.schemas import Strict, WholeNumber
from exchange.domain.commands import AdvanceTime, AssignDeliveries, Command, SettleDaily, SettleDelivery

INT_MAX = 4 * 10**18   # below 2**63 even read as a double (see exchange.api.schemas)
POSTINGS_MAX = 1_000_000
SymbolField = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{0,31}$", description="the series' symbol",
                                   examples=["H100-M40-261203"])]
DigestField = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="the job's input digest (SHA-256, hex): "
                                   "the same digest again posts nothing",
                                   examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"])]
Count = Annotated[int, Field(ge=0, le=INT_MAX), WholeNumber]
Posting = Annotated[list[Annotated[int, Field(ge=-INT_MAX, le=INT_MAX), WholeNumber]],
                    Field(min_length=2, max_length=2, description="[account id, variation margin in micro-dollars]")]


class AdvanceTimeCommand(Strict):
    """A no-op carrying the sequencer's time: a job sends it first as a barrier (once it is durable, every
    command sequenced before is too)."""

    kind: Literal["advance_time"] = Field(description="the command kind", examples=["advance_time"])


class SettleDailyCommand(Strict):
    """A series' settlement price for a day and each account's variation margin (rulebook §6)."""

    kind: Literal["settle_daily"] = Field(description="the command kind", examples=["settle_daily"])
    symbol: SymbolField
    date_ns: Count = Field(description="00:00 UTC of the settlement date, in ns", examples=[1796169600000000000])
    price_ticks: Annotated[int, Field(ge=1, le=INT_MAX), WholeNumber] = Field(
        description="the settlement price in ticks", examples=[480])
    postings: list[Posting] = Field(
        max_length=POSTINGS_MAX, description="[account id, variation margin in micro-dollars] by ascending account "
        "(the core refuses an order or an account it does not hold)", examples=[[[1001, 92160], [1002, -92160]]])
    digest: DigestField
    amend: bool = Field(default=False, description="replace an earlier settlement of the day (post the differences)",
                        examples=[False])


class AssignDeliveriesCommand(Strict):
    """Turn a terminated, finally settled series' positions into deliveries (rulebook §7)."""

    kind: Literal["assign_deliveries"] = Field(description="the command kind", examples=["assign_deliveries"])
    symbol: SymbolField


class SettleDeliveryCommand(Strict):
    """A delivery's invoice and liquidated damages from the probe's telemetry (rulebook §8)."""

    kind: Literal["settle_delivery"] = Field(description="the command kind", examples=["settle_delivery"])
    delivery_id: str = Field(pattern=r"^[A-Z0-9][A-Z0-9-]{0,31}/[0-9]{1,9}$", description="the delivery's id",
                             examples=["H100-M40-261203/1"])
    digest: DigestField
    effective_micro_gpuh: Count = Field(description="E in millionths of a GPU-hour", examples=[190500000])
    invoice_micros: Count = Field(description="the invoice, buyer to seller, in micro-dollars", examples=[457200000])
    damages_micros: Count = Field(description="liquidated damages, seller to buyer, in micro-dollars", examples=[0])
    default: bool = Field(description="whether the seller defaulted", examples=[False])
    amend: bool = Field(default=False, description="post the differences to an earlier settlement", examples=[False])


JobCommand = Annotated[AdvanceTimeCommand | SettleDailyCommand | AssignDeliveriesCommand | SettleDeliveryCommand,
                       Field(discriminator="kind")]


class CommandBody(Strict):
    """One settlement command."""

    command: JobCommand = Field(description="the command, by `kind`")


class CommandOut(BaseModel):
    """The command's place in the journal, once durable."""

    seq: int = Field(description="its journal seq: its outcome is that record's events", examples=[120345])
    ts_ns: int = Field(description="the sequencer's time of it, in ns", examples=[1796225400000000000])
    events: list[str] = Field(description="the kinds of events it produced", examples=[["DailySettlement",
                                                                                        "CashMoved"]])


def to_command(body: AdvanceTimeCommand | SettleDailyCommand | AssignDeliveriesCommand | SettleDeliveryCommand,
               ) -> Command:
    if isinstance(body, AdvanceTimeCommand):
        return AdvanceTime()
    if isinstance(body, SettleDailyCommand):
        return SettleDaily(body.symbol, body.date_ns, body.price_ticks, tuple((p[0], p[1]) for p in body.postings),
                           body.digest, body.amend)
    if isinstance(body, AssignDeliveriesCommand):
        return AssignDeliveries(body.symbol)
    return SettleDelivery(body.delivery_id, body.digest, body.effective_micro_gpuh, body.invoice_micros,
                          body.damages_micros, body.default, body.amend)


def command_json(command: Command) -> dict[str, Any]:
    """The JSON a job sends for `command` (the inverse of `to_command`)."""
    if isinstance(command, AdvanceTime):
        return {"kind": "advance_time"}
    if isinstance(command, SettleDaily):
        return {"kind": "settle_daily", "symbol": command.symbol, "date_ns": command.date_ns,
                "price_ticks": command.price_ticks, "postings": [list(p) for p in command.postings],
                "digest": command.digest, "amend": command.amend}
    if isinstance(command, AssignDeliveries):
        return {"kind": "assign_deliveries", "symbol": command.symbol}
    if isinstance(command, SettleDelivery):
        return {"kind": "settle_delivery", "delivery_id": command.delivery_id, "digest": command.digest,
                "effective_micro_gpuh": command.effective_micro_gpuh, "invoice_micros": command.invoice_micros,
                "damages_micros": command.damages_micros, "default": command.default, "amend": command.amend}
    raise ValueError(f"{type(command).__name__} is not a settlement command")


class JobProgressOut(BaseModel):
    """How far a run got."""

    done: int = Field(description="steps done (daily: series-dates settled; delivery: records read)", examples=[12])
    total: int | None = Field(description="steps in all, when known", examples=[255])


class JobRunOut(BaseModel):
    """One run of a settlement job by the exchange's scheduler."""

    run_id: int = Field(description="the run's id, increasing", examples=[42])
    kind: str = Field(description="daily, delivery or retention (journal segments archived)", examples=["daily"])
    key: str = Field(description="what it settles (daily:DATE, or delivery:COUNT:DIGEST of the deliveries due)",
                     examples=["daily:2026-12-02"])
    trigger: str = Field(description="schedule (on time), catch-up (its time passed while the exchange was down) "
                         "or retry (after a failed or interrupted run)", examples=["schedule"])
    attempt: int = Field(description="the attempt at this key, from 1", examples=[1])
    state: str = Field(description="running, succeeded, failed or interrupted (the exchange stopped during it)",
                       examples=["succeeded"])
    started_ts_ns: int = Field(description="when it started (market time, ns)", examples=[1796227205000000000])
    finished_ts_ns: int | None = Field(description="when it ended; null while running", examples=[1796227208000000000])
    duration_ms: int | None = Field(description="how long it took; null while running", examples=[2900])
    progress: JobProgressOut = Field(description="how far it got")
    counts: dict[str, Any] = Field(description="the job's summary: plans, posted, unchanged, refused, expired, "
                                   "margin_calls, statements (daily); records and settlements (delivery)",
                                   examples=[{"mode": "live", "plans": 255, "posted": 255, "refused": 0}])
    error: str | None = Field(description="why it failed (the refusals, or the end of the job's error output)",
                              examples=[None])


class JobRunsOut(BaseModel):
    """Job runs, newest first."""

    items: list[JobRunOut] = Field(description="this page's runs")
    next_cursor: str | None = Field(description="pass as `cursor` for older runs; null on the last page",
                                    examples=[None])
    scheduler: bool = Field(description="whether this server runs the settlement calendar", examples=[True])


class StatementLinksOut(BaseModel):
    """Where the statement is, in each form."""

    json_: str = Field(alias="json", description="the JSON of record", examples=["/v1/statements/daily/2026-12-02"
                                                                               "?format=json"])
    csv: str = Field(description="CSV", examples=["/v1/statements/daily/2026-12-02?format=csv"])
    html: str = Field(description="a self-contained HTML page",
                      examples=["/v1/statements/daily/2026-12-02?format=html"])


class StatementSummaryOut(BaseModel):
    """One statement of the account."""

    kind: str = Field(description="daily or delivery", examples=["daily"])
    ref: str = Field(description="the settlement date (daily) or the delivery id", examples=["2026-12-02"])
    date_ns: int = Field(description="the settlement date or the delivery's start, ns", examples=[1796169600000000000])
    links: StatementLinksOut = Field(description="the statement in each form")
    date: str | None = Field(default=None, description="daily: the settlement date", examples=["2026-12-02"])
    total_variation_margin: str | None = Field(default=None, description="daily: the net variation margin (USD)",
                                               examples=["-92.160000"])
    margin_call: bool | None = Field(default=None, description="daily: whether the account was in margin call",
                                     examples=[False])
    delivery_id: str | None = Field(default=None, description="delivery: its id", examples=["H100-M40-261203/1"])
    symbol: str | None = Field(default=None, description="delivery: the series", examples=["H100-M40-261203"])
    default: bool | None = Field(default=None, description="delivery: whether the seller defaulted", examples=[False])


class StatementsOut(BaseModel):
    """The account's statements, newest first."""

    items: list[StatementSummaryOut] = Field(description="this page's statements")
    next_cursor: str | None = Field(description="pass as `cursor` for older statements; null on the last page",
                                    examples=[None])
