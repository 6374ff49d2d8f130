"""A series' whole life through the real service and jobs: list, trade among several accounts, settle
daily, terminate, settle finally and assign deliveries, generate probe telemetry, settle the deliveries;
every balance is checked against an independent, by-hand computation of the rulebook's formulas."""

from __future__ import annotations

import asyncio
import csv
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from pydantic import SecretStr

from exchange.catalog import load_catalog
from exchange.domain.commands import Command, PlaceOrder
from exchange.domain.engine import Engine
from exchange.domain.events import Rejected
from exchange.domain.ledger import SETTLEMENT
from exchange.domain.order import Side, TimeInForce
from exchange.jobs.daily import run_daily
from exchange.jobs.delivery import run_delivery
from exchange.jobs.session import running_service
from exchange.settings import Settings
from exchange.telemetry.generator import GeneratorConfig, write_telemetry
from exchange.testing.api_harness import bootstrap
from exchange.testing.specs import DELIVERY_START_NS, T0_NS, make_spec

H = 3_600 * 10**9
M = 60 * 10**9
DAY = 24 * H
SYMBOL = "H100-M40-261203"
CASH = 10**6 * 10**6          # $1M each
LOT_GPUH = 8 * 24             # a daily lot: 8 GPUs x 24 h
TICK = 5_000                  # micro-dollars per GPU-hour


class Clock:
    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", master_key=SecretStr("ab" * 32), probe_key=SecretStr("cd" * 32),
                    snapshot_every_commands=0)


def _submit(settings: Settings, clock: Clock, timed: list[tuple[int, Command]]) -> None:
    async def run() -> None:
        async with running_service(settings, load_catalog(), clock) as service:
            for at_ns, command in timed:
                clock.now_ns = at_ns
                events = await service.submit(command)
                assert not [e for e in events if isinstance(e, Rejected)], events
    asyncio.run(run())


def _engine_after(settings: Settings, clock: Clock) -> Engine:
    box: list[Engine] = []

    async def run() -> None:
        async with running_service(settings, load_catalog(), clock) as service:
            assert service.engine is not None
            service.engine.audit()
            box.append(service.engine)
    asyncio.run(run())
    return box[0]


def _order(account: int, side: Side, lots: int, ticks: int) -> PlaceOrder:
    return PlaceOrder(account, SYMBOL, side, lots, ticks, tif=TimeInForce.GTC)


def test_list_trade_settle_expire_deliver(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    clock = Clock(T0_NS + H)   # Nov 30 17:00 UTC; cuts at 16:00 on Dec 1 and Dec 2 (termination)
    bootstrap(settings, clock, series=[make_spec(SYMBOL)], deposits_micros={a: CASH for a in (1, 2, 3, 4)})
    dec1_cut = T0_NS + DAY
    dec2_cut = T0_NS + 2 * DAY
    assert dec2_cut == make_spec(SYMBOL).trading_end_ns

    # Dec 1: account 1 sells 10 to account 2 at 482 (10:00); account 3 sells 4 to 4 at 490 and 6 at 486
    # in the VWAP window [15:58, 16:00).
    _submit(settings, clock, [
        (dec1_cut - 6 * H, _order(1, Side.SELL, 10, 482)), (dec1_cut - 6 * H + 1, _order(2, Side.BUY, 10, 482)),
        (dec1_cut - M, _order(3, Side.SELL, 4, 490)), (dec1_cut - M + 1, _order(4, Side.BUY, 4, 490)),
        (dec1_cut - M + 2, _order(3, Side.SELL, 6, 486)), (dec1_cut - M + 3, _order(4, Side.BUY, 6, 486)),
        (dec1_cut - M + 4, _order(2, Side.BUY, 1, 470)),      # a resting bid, no trade
    ])
    clock.now_ns = dec1_cut + 30 * M
    report = asyncio.run(run_daily(settings, load_catalog(), dec1_cut - 16 * H, clock))
    # VWAP = (4x490 + 6x486) / 10 = 487.6 -> 488 ticks.
    s1 = 488
    assert [(p.symbol, p.price_ticks, str(p.method)) for p in report.plans] == [(SYMBOL, s1, "vwap")]
    # VM (ticks x lots x GPU-h x tick): 1 sold 10 at 482 -> (482-488)x10; 2 bought -> (488-482)x10;
    # 3 sold 4@490 and 6@486 -> (490-488)x4 + (486-488)x6 = -4; 4 the opposite: +4.
    expected_vm = {1: -60, 2: 60, 3: -4, 4: 4}
    assert dict(report.plans[0].postings) == {a: v * LOT_GPUH * TICK for a, v in expected_vm.items()}
    again = asyncio.run(run_daily(settings, load_catalog(), dec1_cut - 16 * H, clock))
    assert again.plans == [] and again.posted == []   # nothing left to settle: nothing posted twice

    # Dec 2: account 2 sells 5 to account 3 at 490, then trading terminates at the 16:00 cut.
    _submit(settings, clock, [
        (dec2_cut - 3 * H, _order(2, Side.SELL, 5, 490)), (dec2_cut - 3 * H + 1, _order(3, Side.BUY, 5, 490)),
    ])
    clock.now_ns = dec2_cut + H
    report = asyncio.run(run_daily(settings, load_catalog(), dec2_cut - 16 * H, clock))
    # No trade in the window; last trade 490 clamped into [bid 470, no ask] -> 490 = FSP.
    fsp = 490
    assert [(p.price_ticks, str(p.method)) for p in report.plans] == [(fsp, "last_trade")]
    # VM Dec 2: prior positions 1:-10, 2:+10, 3:-10, 4:+10; S-S1 = 2; trades: 2 sold 5 @490, 3 bought 5 @490.
    day2 = {1: -10 * 2, 2: 10 * 2 + (490 - fsp) * -5, 3: -10 * 2 + (fsp - 490) * 5, 4: 10 * 2}
    assert dict(report.plans[0].postings) == {a: v * LOT_GPUH * TICK for a, v in day2.items()}
    assert report.expired == [(SYMBOL, 3)]

    engine = _engine_after(settings, clock)
    deliveries = sorted(engine.deliveries.values(), key=lambda d: d.delivery_id)
    # Shorts: 1 (10 lots), 3 (5 lots); longs: 2 (5 lots), 4 (10 lots); greedy in account order.
    assert [(d.delivery_id, d.seller, d.buyer, d.lots) for d in deliveries] == [
        (f"{SYMBOL}/1", 1, 2, 5), (f"{SYMBOL}/2", 1, 4, 5), (f"{SYMBOL}/3", 3, 4, 5)]

    # Telemetry: 5 lots = 40 GPUs = 5 nodes of 8 for each delivery, 24 hours, some failing nodes.
    files = []
    for n, d in enumerate(deliveries):
        path = tmp_path / f"probe-{n}.csv"
        write_telemetry(path, GeneratorConfig(delivery_id=d.delivery_id, start_ns=DELIVERY_START_NS, hours=24,
                                              nodes=d.gpus // 8, seed=n, failing=Decimal("0.2")),
                        settings.load_probe_key())
        files.append(path)
    report_d = asyncio.run(run_delivery(settings, load_catalog(), files, rejects_path=tmp_path / "rejects.csv",
                                        clock_ns=clock))
    assert report_d.summary.rejected == 0 and report_d.summary.accepted == 3 * 5 * 24
    assert [o.status for o in report_d.outcomes] == ["posted"] * 3

    # Independent computation of every delivery's cash from the files (rulebook §8, by hand).
    expected_cash = {a: CASH for a in (1, 2, 3, 4)}
    for a, v in expected_vm.items():
        expected_cash[a] += v * LOT_GPUH * TICK
    for a, v in day2.items():
        expected_cash[a] += v * LOT_GPUH * TICK
    fee = 200  # ppm of notional, takers pay
    for taker, lots, ticks in ((2, 10, 482), (4, 4, 490), (4, 6, 486), (3, 5, 490)):
        notional = ticks * TICK * lots * LOT_GPUH
        expected_cash[taker] -= (notional * fee + 500_000) // 1_000_000   # no exact halves here
    for d, path in zip(deliveries, files, strict=True):
        per_hour: dict[str, Fraction] = {}
        with path.open() as handle:
            for row in csv.DictReader(handle):
                mfu, grade = Fraction(row["probe_mfu"]), Fraction("0.40")
                p = mfu / grade
                phi = Fraction(0) if mfu < grade - Fraction("0.05") else (Fraction(1) if p >= Fraction("0.97") else p)
                per_hour[row["hour_start"]] = per_hour.get(row["hour_start"], Fraction(0)) + \
                    int(row["gpus"]) * Fraction(row["available"]) * phi
        e = sum(min(Fraction(d.gpus), v) for v in per_hour.values())
        e_micro = round(e * 10**6)     # Python rounds half to even
        q = d.gpus * 24
        fsp_usd = Fraction(fsp * TICK, 10**6)
        invoice = round(fsp_usd * Fraction(e_micro, 10**6) * 10**6)
        shortfall = max(Fraction(0), Fraction(98, 100) * q - Fraction(e_micro, 10**6))
        damages = round(shortfall * (Fraction(25, 100) * fsp_usd) * 10**6)
        outcome = next(o for o in report_d.outcomes if o.delivery.delivery_id == d.delivery_id)
        assert (outcome.result.effective_micro_gpuh, outcome.result.invoice_micros, outcome.result.damages_micros) \
            == (e_micro, invoice, damages)
        assert outcome.result.default == (Fraction(e_micro, 10**6) < Fraction(q, 2))
        expected_cash[d.buyer] += damages - invoice
        expected_cash[d.seller] += invoice - damages

    engine = _engine_after(settings, clock)
    assert {a: engine.cash_micros(a) for a in (1, 2, 3, 4)} == expected_cash
    assert engine.ledger.total() == 0
    assert engine.cash_micros(SETTLEMENT) == -sum(v for v in expected_vm.values()) * LOT_GPUH * TICK \
        - sum(day2.values()) * LOT_GPUH * TICK
    # Statements exist for every delivery, readable HTML included.
    html = (settings.data_dir / "statements" / "delivery" / SYMBOL / "delivery-1.html").read_text()
    assert "<svg" in html and "delivery invoice" in html
    # A rerun of the delivery job posts nothing new.
    rerun = asyncio.run(run_delivery(settings, load_catalog(), files, clock_ns=clock))
    assert [o.status for o in rerun.outcomes] == ["unchanged"] * 3
    assert {a: _engine_after(settings, clock).cash_micros(a) for a in (1, 2, 3, 4)} == expected_cash


def _through_expiry(tmp_path: Path) -> tuple[Settings, Clock]:
    """One account sells 4 lots to another, the series settles and expires: delivery <symbol>/1."""
    settings = _settings(tmp_path)
    clock = Clock(T0_NS + H)
    bootstrap(settings, clock, series=[make_spec(SYMBOL)], deposits_micros={1: CASH, 2: CASH})
    cut = T0_NS + 2 * DAY
    _submit(settings, clock, [(cut - H, _order(1, Side.SELL, 4, 480)), (cut - H + 1, _order(2, Side.BUY, 4, 480))])
    clock.now_ns = cut + H
    report = asyncio.run(run_daily(settings, load_catalog(), cut - 16 * H, clock))
    assert report.expired == [(SYMBOL, 1)]
    return settings, clock


def _telemetry(settings: Settings, path: Path, seed: int) -> Path:
    write_telemetry(path, GeneratorConfig(delivery_id=f"{SYMBOL}/1", start_ns=DELIVERY_START_NS, hours=24, nodes=4,
                                          seed=seed, failing=Decimal("0.25")), settings.load_probe_key())
    return path


@pytest.mark.parametrize("amend", [False, True])
def test_changed_telemetry_is_refused_unless_amended(tmp_path: Path, amend: bool) -> None:
    settings, clock = _through_expiry(tmp_path)
    first = _telemetry(settings, tmp_path / "first.csv", seed=1)
    report = asyncio.run(run_delivery(settings, load_catalog(), [first], clock_ns=clock))
    assert [o.status for o in report.outcomes] == ["posted"]
    cash_after_first = {a: _engine_after(settings, clock).cash_micros(a) for a in (1, 2)}
    second = _telemetry(settings, tmp_path / "second.csv", seed=2)
    report = asyncio.run(run_delivery(settings, load_catalog(), [second], amend=amend, clock_ns=clock))
    (outcome,) = report.outcomes
    engine = _engine_after(settings, clock)
    if not amend:
        assert outcome.status.startswith("refused: settlement_conflict")
        assert {a: engine.cash_micros(a) for a in (1, 2)} == cash_after_first
    else:
        assert outcome.status == "amended"
        # The corrections bring the cash to what the second input alone would have posted.
        fresh_settings, fresh_clock = _through_expiry(tmp_path / "fresh")
        fresh = asyncio.run(run_delivery(fresh_settings, load_catalog(), [second], clock_ns=fresh_clock))
        assert fresh.outcomes[0].result == outcome.result
        fresh_engine = _engine_after(fresh_settings, fresh_clock)
        assert {a: engine.cash_micros(a) for a in (1, 2)} == {a: fresh_engine.cash_micros(a) for a in (1, 2)}
    assert engine.ledger.total() == 0


def test_dry_run_posts_nothing_and_bad_records_still_let_good_ones_settle(tmp_path: Path) -> None:
    settings, clock = _through_expiry(tmp_path)
    path = _telemetry(settings, tmp_path / "probe.csv", seed=3)
    lines = path.read_text().splitlines(keepends=True)
    tampered = lines[1].replace(",8,", ",9,", 1)          # gpus changed after signing: bad signature
    path.write_text("".join([lines[0], tampered, *lines[2:], lines[2]]))   # and one exact duplicate
    before = {a: _engine_after(settings, clock).cash_micros(a) for a in (1, 2)}
    dry = asyncio.run(run_delivery(settings, load_catalog(), [path], dry_run=True, clock_ns=clock,
                                   rejects_path=tmp_path / "rejects.csv"))
    assert [o.status for o in dry.outcomes] == ["dry-run"]
    assert (dry.summary.rejected, dry.summary.duplicate) == (1, 1)
    assert "bad_signature" in (tmp_path / "rejects.csv").read_text()
    assert {a: _engine_after(settings, clock).cash_micros(a) for a in (1, 2)} == before
    real = asyncio.run(run_delivery(settings, load_catalog(), [path], clock_ns=clock))
    assert [o.status for o in real.outcomes] == ["posted"] and real.outcomes[0].result == dry.outcomes[0].result


def test_settlements_and_deliveries_are_published_over_rest(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from exchange.api.app import create_app
    from exchange.signing import derive_secret
    from exchange.store import Store
    from exchange.testing.api_harness import Credentials, signed_headers

    settings, clock = _through_expiry(tmp_path)
    asyncio.run(run_delivery(settings, load_catalog(), [_telemetry(settings, tmp_path / "p.csv", seed=4)],
                             clock_ns=clock))
    with Store(settings.store_url()) as store:
        master_key = settings.load_master_key()
        key_id, secret = store.create_api_key(2, ["read"], clock(), lambda k: derive_secret(master_key, k))
    buyer = Credentials(2, key_id, secret, ("read",))
    with TestClient(create_app(settings, clock_ns=clock, list_calendar=False)) as client:
        published = client.get(f"/v1/settlements?symbol={SYMBOL}").json()["items"]
        assert [(s["date"], s["price"], s["final"]) for s in published] == [("2026-12-01", "2.400", False),
                                                                       ("2026-12-02", "2.400", True)]
        path = "/v1/deliveries"
        headers = signed_headers(buyer, "GET", path, b"", clock() // 10**9)
        (delivery,) = client.get(path, headers=headers).json()["items"]
        assert (delivery["delivery_id"], delivery["seller"], delivery["buyer"], delivery["status"]) == \
            (f"{SYMBOL}/1", 1, 2, "settled")
        assert delivery["invoice"] is not None and delivery["effective_gpu_hours"] is not None
