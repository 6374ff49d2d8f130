"""`exchange settle daily --date D`: daily settlement (rulebook §6).

For every listed series and every daily cut (16:00 UTC) up to D's that it has not been settled for,
oldest first: the settlement price by the tiered rule (`clearing.settlement_price`), each account's
variation margin, and one `SettleDaily` command carrying both plus a digest of them. The core posts
the variation margin to cash against the settlement account, moves the series' reference price (price
band and margin follow) and remembers the digest: a rerun (say after the job was killed) finds the
series settled with the same digest and posts nothing; different inputs are refused unless `--amend`.
Afterwards accounts whose cash is below 75% of their required margin are flagged for a margin call,
and per-account statements are written.

Statements are per date, covering every series settled that day; a date's folder gets a `.complete`
marker once all of its files are written. A run also (re)writes the statements of every settled date
up to D without that marker, recomputing the plans posted earlier (checked against their digests): a
run killed after posting and before its statements were written leaves them to the next run, which
would otherwise find those dates settled and write nothing for them.

Variation margin from the aggregated trading of each account since the prior settlement's cut (n
signed lots costing C signed tick-lots), its position P at that cut, and the settlement prices:

    VM = (S × n − C + P × (S − S_prior)) × lot GPU-hours × tick

which is the rulebook's Σ (S − price) × signed GPU-hours + prior GPU-hours × (S − S_prior), exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from exchange.catalog import Catalog
from exchange.domain import clearing
from exchange.domain.commands import AssignDeliveries, SettleDaily
from exchange.domain.engine import Engine, settlement_day_ns
from exchange.domain.events import DailySettlement, DeliveriesAssigned, Rejected, SettlementDuplicate
from exchange.domain.units import micros_to_usd, ticks_to_price, usd_to_micros
from exchange.jobs.cuts import CutHistory, replay_cuts
from exchange.jobs.session import job_session
from exchange.jobs.statement_formats import daily_csv
from exchange.settings import Settings

NS_PER_DAY = 86_400 * 1_000_000_000


@dataclass(frozen=True)
class DailyPlan:
    """One series' settlement for one date: what the job will post."""

    symbol: str
    date_ns: int
    cut_ns: int
    price_ticks: int
    method: str                                   # vwap | last_trade | prior
    prior_price_ticks: int
    postings: tuple[tuple[int, int], ...]         # (account, variation margin micros), by account, non-zero
    positions: dict[int, int] = field(compare=False)   # at the cut, every holder
    digest: str = ""


def plan_daily(history: CutHistory, engine: Engine, settled: dict[str, dict[int, int]], until_date_ns: int,
               ) -> list[DailyPlan]:
    """Every settlement due up to `until_date_ns`, per series in date order (each uses the one before).

    `engine` is the live core (for specs); `settled` maps symbol -> {date: price} already settled."""
    plans: list[DailyPlan] = []
    until_cut = history.cut_of(until_date_ns)
    for symbol in sorted(engine.series):
        spec = engine.series[symbol].spec
        done = dict(settled.get(symbol, {}))
        for cut_ns in sorted(history.cuts):
            if cut_ns > until_cut or cut_ns > spec.trading_end_ns:
                break
            date_ns = cut_ns - (cut_ns % NS_PER_DAY)
            if symbol not in history.cuts[cut_ns] or date_ns in done:
                continue
            earlier = [d for d in done if d < date_ns]
            prior_date = max(earlier) if earlier else None
            prior_price = done[prior_date] if prior_date is not None else spec.reference_price_ticks
            prior_cut = history.cut_of(prior_date) if prior_date is not None else -1
            plan = _plan_one(history, symbol, date_ns, cut_ns, prior_cut, prior_price, spec.lot_gpu_hours,
                             spec.tick_micros)
            plans.append(plan)
            done[date_ns] = plan.price_ticks
    return plans


def _plan_one(history: CutHistory, symbol: str, date_ns: int, cut_ns: int, prior_cut_ns: int, prior_price: int,
              lot_gpu_hours: int, tick_micros: int) -> DailyPlan:
    state = history.cuts[cut_ns][symbol]
    days = list(history.between(prior_cut_ns, cut_ns, symbol))
    last_trade = next((d.last_trade_ticks for d in reversed(days) if d.last_trade_ticks is not None), None)
    inputs = clearing.SettlementInputs(window_trades=tuple(state.window), last_trade_ticks=last_trade,
                                       best_bid_ticks=state.best_bid_ticks, best_ask_ticks=state.best_ask_ticks,
                                       prior_settlement_ticks=prior_price)
    price, method = clearing.settlement_price(inputs)
    prior = history.series_cut(prior_cut_ns, symbol)
    prior_positions = prior.positions if prior is not None else {}
    flows: dict[int, list[int]] = {}
    for day in days:
        for account, (lots, cost) in day.flows.items():
            total = flows.setdefault(account, [0, 0])
            total[0] += lots
            total[1] += cost
    postings = []
    for account in sorted(set(prior_positions) | set(flows)):
        lots, cost = flows.get(account, (0, 0))
        held = prior_positions.get(account, 0)
        assert held + lots == state.positions.get(account, 0), (symbol, account, "positions and trades disagree")
        vm = (price * lots - cost + held * (price - prior_price)) * lot_gpu_hours * tick_micros
        if vm:
            postings.append((account, vm))
    plan = DailyPlan(symbol, date_ns, cut_ns, price, method, prior_price, tuple(postings), dict(state.positions))
    return DailyPlan(**{**plan.__dict__, "digest": plan_digest(plan)})


def plan_digest(plan: DailyPlan) -> str:
    """The idempotency digest: job kind, series, date and everything posted."""
    canonical = json.dumps(["daily", plan.symbol, plan.date_ns, plan.price_ticks, [list(p) for p in plan.postings]],
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def margin_calls(engine: Engine, ratio: Decimal) -> list[tuple[int, int, int]]:
    """(account, cash, required margin) of every account whose cash is below `ratio` × its margin."""
    calls = []
    for account_id in sorted(engine.accounts):
        account = engine.accounts[account_id]
        cash = engine.cash_micros(account_id)
        if clearing.margin_call(cash, account.margin_micros, ratio):
            calls.append((account_id, cash, account.margin_micros))
    return calls


# -- the job -----------------------------------------------------------------------------------------
@dataclass
class DailyReport:
    date_ns: int
    plans: list[DailyPlan]
    posted: list[str] = field(default_factory=list)        # "<symbol>@<date>" newly settled (or amended)
    unchanged: list[str] = field(default_factory=list)     # already settled with the same digest
    refused: list[tuple[str, str]] = field(default_factory=list)
    expired: list[tuple[str, int]] = field(default_factory=list)   # (symbol, deliveries assigned)
    margin_calls: list[tuple[int, int, int]] = field(default_factory=list)
    statements: list[Path] = field(default_factory=list)   # a dry run's statement files
    dry_run: bool = False
    mode: str = "offline"                                    # offline | live (exchange.jobs.session)
    statements_written: int = 0                               # statements of record (in the store)
    restated: list[DailyPlan] = field(default_factory=list)   # posted by an earlier run, in statements now


async def run_daily(settings: Settings, catalog: Catalog, date_ns: int, clock_ns: Callable[[], int], *,
                    dry_run: bool = False, amend: bool = False,
                    progress: Callable[[int, int], None] | None = None, url: str | None = None) -> DailyReport:
    """Settle every series for every cut up to `date_ns`'s (oldest first), then expire the series whose
    trading terminated and that are finally settled, flag margin calls and write statements. Offline on
    a stopped exchange's data directory, else against the running exchange (`exchange.jobs.session`)."""
    rules = catalog.rules.settlement
    now_ns = clock_ns()
    cut_ns = date_ns + rules.daily_settlement_hour_utc * 3_600 * 1_000_000_000
    if cut_ns > now_ns:
        raise ValueError(f"the {rules.daily_settlement_hour_utc}:00 UTC cut of that date has not passed yet")
    async with job_session(settings, catalog, clock_ns, url) as session:
        engine = session.engine
        history = replay_cuts(session.journal_dir, catalog.rules.engine_limits(),
                              rules.daily_settlement_hour_utc, rules.vwap_window_seconds, cut_ns, now_ns,
                              session.until_seq)
        settled = {symbol: {d: s.price_ticks for d, s in series.settlements.items() if not (amend and d == date_ns)}
                   for symbol, series in engine.series.items()}
        plans = plan_daily(history, engine, settled, date_ns)
        report = DailyReport(date_ns, plans, dry_run=dry_run, mode=session.mode)
        for done, plan in enumerate(plans, 1):
            if not dry_run:
                command = SettleDaily(plan.symbol, plan.date_ns, plan.price_ticks, plan.postings, plan.digest,
                                      amend=amend)
                _classify(report, plan, await session.submit(command))
            if progress is not None:
                progress(done, len(plans))
        engine = session.engine   # live: the replica, now past this job's commands
        if not dry_run:
            for symbol in sorted(engine.series):
                series = engine.series[symbol]
                final_day = settlement_day_ns(series.spec.trading_end_ns)
                if series.terminated and series.delivery_ids is None and final_day in series.settlements \
                        and final_day <= date_ns:
                    events = await session.submit(AssignDeliveries(symbol))
                    assigned = [e for e in events if isinstance(e, DeliveriesAssigned)]
                    if assigned:
                        report.expired.append((symbol, assigned[0].deliveries))
        engine = session.engine
        report.margin_calls = margin_calls(engine, rules.margin_call_ratio)
        if dry_run:
            # A dry run writes its statements as files, marked, elsewhere: never over the statements of record.
            report.statements = write_daily_statements(settings.data_dir / "statements" / "dry-run" / "daily",
                                                       report, engine)
            return report
        written = session.statements.complete("daily")
        settled_days = {d for series in engine.series.values() for d in series.settlements if d <= date_ns}
        unreported = {d for d in settled_days if _date(d) not in written}
        planned = {(p.symbol, p.date_ns) for p in plans}
        earlier = {d for symbol, series in engine.series.items() for d in series.settlements
                   if d in unreported and (symbol, d) not in planned}
        report.restated = restate(history, engine, sorted(earlier), planned)
        bodies = daily_statements(report, engine)
        for day in sorted(unreported | {p.date_ns for p in plans}):
            day_bodies = [(account, day, body) for (d, account), body in sorted(bodies.items()) if d == day]
            session.statements.write("daily", _date(day), day_bodies, clock_ns())
            report.statements_written += len(day_bodies)
    return report


def restate(history: CutHistory, engine: Engine, dates: list[int], exclude: set[tuple[str, int]]) -> list[DailyPlan]:
    """The plans that posted the settlements of `dates` (but those of `exclude`), recomputed from the
    same history with the same prior prices; one whose digest is not the one posted is left out."""
    restated = []
    for day in dates:
        settled = {symbol: {d: s.price_ticks for d, s in series.settlements.items() if d != day}
                   for symbol, series in engine.series.items()}
        for plan in plan_daily(history, engine, settled, day):
            posted = engine.series[plan.symbol].settlements.get(plan.date_ns)
            if plan.date_ns == day and (plan.symbol, day) not in exclude and posted is not None \
                    and posted.digest == plan.digest:
                restated.append(plan)
    return restated


def _classify(report: DailyReport, plan: DailyPlan, events: list[Any]) -> None:
    name = f"{plan.symbol}@{_date(plan.date_ns)}"
    for event in events:
        if isinstance(event, DailySettlement):
            report.posted.append(name)
            return
        if isinstance(event, SettlementDuplicate):
            report.unchanged.append(name)
            return
        if isinstance(event, Rejected):
            report.refused.append((name, f"{event.code}: {event.message}"))
            return
    raise AssertionError(f"SettleDaily produced no outcome: {events!r}")


def _date(date_ns: int) -> str:
    return datetime.fromtimestamp(date_ns // 1_000_000_000, UTC).strftime("%Y-%m-%d")


def daily_statements(report: DailyReport, engine: Engine) -> dict[tuple[int, int], dict[str, Any]]:
    """Per (date, account): each series' settlement price, position at the cut and variation margin,
    with the account's cash and margin now."""
    by_account: dict[tuple[int, int], list[dict[str, Any]]] = {}
    refused = {name for name, _ in report.refused}   # a refused settlement posted nothing: no statement line
    for plan in sorted([*report.plans, *report.restated], key=lambda p: (p.symbol, p.date_ns)):
        if f"{plan.symbol}@{_date(plan.date_ns)}" in refused:
            continue
        spec = engine.series[plan.symbol].spec
        vm = dict(plan.postings)
        for account in sorted(set(plan.positions) | set(vm)):
            by_account.setdefault((plan.date_ns, account), []).append({
                "symbol": plan.symbol, "settlement_price": str(ticks_to_price(plan.price_ticks, spec.tick_micros)),
                "method": str(plan.method),
                "prior_settlement_price": str(ticks_to_price(plan.prior_price_ticks, spec.tick_micros)),
                "position_lots": plan.positions.get(account, 0),
                "variation_margin": str(micros_to_usd(vm.get(account, 0))),
            })
    calls = {account for account, _, _ in report.margin_calls}
    statements: dict[tuple[int, int], dict[str, Any]] = {}
    for (date_ns, account_id), lines in sorted(by_account.items()):
        holder = engine.accounts.get(account_id)
        statements[(date_ns, account_id)] = {
            "account_id": account_id, "date": _date(date_ns), "currency": "USD", "dry_run": report.dry_run,
            "lines": lines,
            "total_variation_margin": str(micros_to_usd(sum(usd_to_micros(ln["variation_margin"]) for ln in lines))),
            "cash": str(micros_to_usd(engine.cash_micros(account_id))) if holder else None,
            "required_margin": str(micros_to_usd(holder.margin_micros)) if holder else None,
            "margin_call": account_id in calls,
        }
    return statements


def write_daily_statements(root: Path, report: DailyReport, engine: Engine) -> list[Path]:
    """A dry run's statements as files: JSON and CSV per account under <root>/<date>/."""
    written: list[Path] = []
    for (date_ns, account_id), statement in daily_statements(report, engine).items():
        folder = root / _date(date_ns)
        folder.mkdir(parents=True, exist_ok=True)
        json_path = folder / f"account-{account_id}.json"
        _write_atomic(json_path, json.dumps(statement, indent=2) + "\n")
        csv_path = folder / f"account-{account_id}.csv"
        _write_atomic(csv_path, daily_csv(statement))
        written += [json_path, csv_path]
    return written


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
