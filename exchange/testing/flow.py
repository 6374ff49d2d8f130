"""A seeded random command stream over a few accounts and series: every command type, every order
type and STP mode, retries with client order ids, amends, cancels, cash moves, halts, time and dead
man's switches (armed with timeouts short enough to fire within the stream, re-armed, disarmed).

Used by the determinism test (same stream in two processes), by benchmarks and, later, by crash tests.
`random.Random(seed)` is fine here: this is a test driver, not the core.
"""

from __future__ import annotations

import random

from exchange.domain.commands import (
    AdvanceTime,
    AmendOrder,
    CancelAllAfter,
    CancelOrder,
    Command,
    CreateAccount,
    Deposit,
    HaltSeries,
    ListSeries,
    MassCancel,
    PlaceOrder,
    SetAccountEnabled,
    Withdraw,
)
from exchange.domain.order import OrderType, Side, StpMode, TimeInForce
from exchange.domain.spec import SeriesSpec
from exchange.domain.units import NS_PER_SECOND
from exchange.testing.specs import T0_NS, make_spec

ACCOUNTS = (1, 2, 3, 4, 5)
# Dead man's switch timeouts (ms): mostly short enough to fire within the stream (its clock moves by
# 0, 1 ns, 1 us or 1 s per command), 0 to disarm, and rarely out of range (rejected).
TIMEOUTS_MS = (0, 1, 2, 5, 500, 1_000, 2_000, 3_000, 10_000, 60_000)


def default_specs() -> list[SeriesSpec]:
    return [make_spec("H100-M40-261203"), make_spec("B200-M35-261203", reference_price_ticks=1000,
                                                     maker_fee_ppm=50)]


def setup_commands(specs: list[SeriesSpec]) -> list[Command]:
    commands: list[Command] = [ListSeries(spec) for spec in specs]
    for account_id in ACCOUNTS:
        commands.append(CreateAccount(account_id))
        commands.append(Deposit(account_id, 2_000_000_000 * account_id))  # $2,000 × id: margin binds
    return commands


DAY_STEPS_NS = (86_400 * NS_PER_SECOND - 1, 86_400 * NS_PER_SECOND, 86_400 * NS_PER_SECOND + 1)


def _reference(rng: random.Random, used: list[str], account: int) -> str | None:
    """None mostly; else a fresh reference, one used before (a retry or a conflict), or a bad one."""
    r = rng.random()
    if r < 0.6:
        return None
    if used and r < 0.85:
        return rng.choice(used)
    if r < 0.98:
        used.append(f"ref-{account}-{rng.randrange(10**6)}")
        return used[-1]
    return rng.choice(("", "x" * 129, "tab\there"))


def random_commands(seed: int, n: int, specs: list[SeriesSpec] | None = None,
                    start_ns: int = T0_NS) -> list[tuple[Command, int]]:
    """(command, ts_ns) pairs: setup first, then `n` random commands at increasing times."""
    rng = random.Random(seed)
    specs = specs or default_specs()
    ts = start_ns
    out: list[tuple[Command, int]] = [(c, ts) for c in setup_commands(specs)]
    placed: list[tuple[int, str]] = []  # (account, client order id) of earlier orders, for retries
    references: list[str] = []          # cash move references used so far, for retries and conflicts
    days_passed = 0
    order_ids = 0
    for _ in range(n):
        ts += rng.choice((0, 1, 1_000, NS_PER_SECOND))
        spec = rng.choice(specs)
        account = rng.choice(ACCOUNTS)
        r = rng.random()
        if r < 0.55:
            ref = spec.reference_price_ticks
            side = Side(rng.randrange(2))
            kind = OrderType.MARKET if rng.random() < 0.1 else OrderType.LIMIT
            tif = (rng.choice((TimeInForce.IOC, TimeInForce.FOK)) if kind == OrderType.MARKET
                   else rng.choice((TimeInForce.GTC,) * 6 + (TimeInForce.GTD, TimeInForce.IOC, TimeInForce.FOK)))
            price = None if kind == OrderType.MARKET else ref + rng.randint(-ref // 9, ref // 9)
            cid = None
            if rng.random() < 0.3:
                if placed and rng.random() < 0.3:
                    account, cid = rng.choice(placed)  # a retry (same or different payload)
                else:
                    cid = f"c{rng.randrange(10**6)}"
                    placed.append((account, cid))
            out.append((PlaceOrder(
                account, spec.symbol, side, rng.choice((1, 1, 2, 3, 5, 10, 40)), price, kind, tif,
                post_only=kind == OrderType.LIMIT and tif in (TimeInForce.GTC, TimeInForce.GTD) and rng.random() < 0.1,
                stp=StpMode(rng.randrange(4)), client_order_id=cid,
                expire_ts_ns=ts + rng.randint(1, 5) * NS_PER_SECOND if tif == TimeInForce.GTD else None,
            ), ts))
            order_ids += 1
        elif r < 0.58:
            timeout = rng.choice(TIMEOUTS_MS) if rng.random() < 0.97 else rng.choice((-1, 86_400_001))
            out.append((CancelAllAfter(account if rng.random() < 0.98 else 99, timeout), ts))
        elif r < 0.75:
            out.append((CancelOrder(account, rng.randint(max(1, order_ids - 15), order_ids + 1)), ts))
        elif r < 0.87:
            out.append((AmendOrder(account, rng.randint(max(1, order_ids - 15), order_ids + 1),
                                   rng.choice((None, spec.reference_price_ticks + rng.randint(-20, 20))),
                                   rng.choice((None, 1, 2, 5, 20)) if rng.random() < 0.8 else 1), ts))
        elif r < 0.90:
            out.append((MassCancel(account, rng.choice((None, spec.symbol)), rng.choice((None, Side.BUY))), ts))
        elif r < 0.94:
            out.append((Deposit(account, rng.randint(1, 10**9), _reference(rng, references, account)), ts))
        elif r < 0.97:
            out.append((Withdraw(account, rng.randint(1, 10**9), _reference(rng, references, account)), ts))
        elif r < 0.975:
            out.append((HaltSeries(spec.symbol, rng.random() < 0.3), ts))
        elif r < 0.995:
            out.append((SetAccountEnabled(account, rng.random() < 0.9), ts))
        else:
            # Mostly 3 s; once per stream at most, a day (the 24 h windows of client order ids and cash
            # references close; a second day would end the series' trading, which is 48 h from the start).
            step = 3 * NS_PER_SECOND
            if not days_passed and rng.random() < 0.3:
                step, days_passed = rng.choice(DAY_STEPS_NS), 1
            out.append((AdvanceTime(), ts + step))
            ts += step
    return out
