"""The fast engine against the naive reference engine, command by command (Hypothesis stateful).

After every step: the same events (rejection messages aside), the same books order by order in
priority, the same cash, positions, entry costs and margin, and the fast engine's own audit passes.
Small limits (order size, position, open orders, cash) make every rejection path reachable.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from exchange.domain.book import BUY, SELL
from exchange.domain.commands import (
    AdvanceTime,
    AmendOrder,
    CancelAllAfter,
    CancelOrder,
    CreateAccount,
    Deposit,
    HaltSeries,
    ListSeries,
    MassCancel,
    PlaceOrder,
    SetAccountEnabled,
    SettleDaily,
    TerminateTrading,
    Withdraw,
)
from exchange.domain.engine import Engine, EngineLimits
from exchange.domain.events import OrderAccepted, Rejected, Trade
from exchange.domain.order import OrderType, Side, StpMode, TimeInForce
from exchange.domain.statehash import state_dump
from exchange.domain.units import NS_PER_SECOND
from exchange.testing.reference import NS_PER_DAY, ReferenceEngine
from exchange.testing.specs import T0_NS, make_spec

SPECS = [
    make_spec("H100-M40-261203", max_order_lots=30, max_position_lots=60),
    make_spec("B200-M35-261203", reference_price_ticks=1000, max_order_lots=30, max_position_lots=60,
              maker_fee_ppm=100, trading_end_ns=T0_NS + 400 * NS_PER_SECOND),
]
SYMBOLS = [s.symbol for s in SPECS]
ACCOUNTS = [1, 2, 3]
MAX_OPEN = 6


def _normalise(events: list[Any]) -> list[Any]:
    return [e._replace(message="", details=()) if isinstance(e, Rejected) else e for e in events]


class EngineVersusReference(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fast = Engine(EngineLimits(max_open_orders_per_account=MAX_OPEN))
        self.ref = ReferenceEngine(max_open_orders=MAX_OPEN)
        self.now = T0_NS
        self.order_ids: list[int] = []
        self.client_ids: list[tuple[int, str]] = []

    def run(self, command: Any) -> list[Any]:
        fast = self.fast.apply(command, self.now)
        ref = self.ref.apply(command, self.now)
        assert _normalise(fast) == _normalise(ref), f"{command}\nfast: {fast}\nref:  {ref}"
        for event in fast:
            if isinstance(event, OrderAccepted):
                self.order_ids.append(event.order_id)
            elif isinstance(event, Trade):
                # Rulebook §4 v2: every trade prints inside the band in force (after this command).
                series = self.ref.series[event.symbol]
                assert series.low <= event.price_ticks <= series.high, (event, series.low, series.high)
        return fast

    @initialize(cash=st.lists(st.integers(0, 3_000_000_000).map(lambda c: 3_000_000_000 - c), min_size=3, max_size=3))
    def setup(self, cash: list[int]) -> None:
        for spec in SPECS:
            self.run(ListSeries(spec))
        for account_id, amount in zip(ACCOUNTS, cash, strict=True):
            self.run(CreateAccount(account_id))
            if amount:
                self.run(Deposit(account_id, amount))

    @rule(account=st.sampled_from(ACCOUNTS), symbol=st.sampled_from(SYMBOLS), side=st.sampled_from(Side),
          qty=st.sampled_from([0, 1, 2, 3, 5, 8, 13, 31]), offset=st.integers(-60, 60),
          kind=st.sampled_from(OrderType), tif=st.sampled_from(TimeInForce), post_only=st.booleans(),
          stp=st.sampled_from(StpMode), cid=st.one_of(st.none(), st.sampled_from(["a", "b", "c", ""])),
          expire_s=st.one_of(st.none(), st.integers(-1, 30)), retry=st.booleans(), data=st.data())
    def place(self, account: int, symbol: str, side: Side, qty: int, offset: int, kind: OrderType,
              tif: TimeInForce, post_only: bool, stp: StpMode, cid: str | None, expire_s: int | None,
              retry: bool, data: st.DataObject) -> None:
        ref_price = 480 if symbol == SYMBOLS[0] else 1000
        price = None if kind == OrderType.MARKET and offset % 7 else ref_price + offset
        expire = None if expire_s is None else self.now + expire_s * NS_PER_SECOND
        if retry and self.client_ids:
            account, cid = data.draw(st.sampled_from(self.client_ids))
        self.run(PlaceOrder(account, symbol, side, qty, price, kind, tif, post_only, stp, cid, expire))
        if cid:
            self.client_ids.append((account, cid))

    @rule(account=st.sampled_from(ACCOUNTS), symbol=st.sampled_from(SYMBOLS), side=st.sampled_from(Side),
          qty=st.sampled_from([1, 2, 3, 5, 8, 12]), offset=st.sampled_from([-9, -6, -3, -1, 1, 3, 6, 9]),
          stp=st.sampled_from(StpMode),
          tif=st.sampled_from([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK]))
    def place_limit(self, account: int, symbol: str, side: Side, qty: int, offset: int, stp: StpMode,
                    tif: TimeInForce) -> None:
        """The common case, weighted up: a valid limit order near the reference price."""
        ref_price = 480 if symbol == SYMBOLS[0] else 1000
        self.run(PlaceOrder(account, symbol, side, qty, ref_price + offset, OrderType.LIMIT, tif, stp=stp))

    @rule(account=st.sampled_from(ACCOUNTS), symbol=st.sampled_from(SYMBOLS), side=st.sampled_from(Side),
          qty=st.sampled_from([1, 2, 3, 5, 8, 12]), offset=st.sampled_from([-5, -3, -1, 0, 1, 3, 5]),
          stp=st.sampled_from(StpMode))
    def place_resting(self, account: int, symbol: str, side: Side, qty: int, offset: int, stp: StpMode) -> None:
        ref_price = 480 if symbol == SYMBOLS[0] else 1000
        price = ref_price + offset - 2 if side == Side.BUY else ref_price + offset + 2
        self.run(PlaceOrder(account, symbol, side, qty, price, stp=stp))

    @rule(account=st.sampled_from(ACCOUNTS), symbol=st.sampled_from(SYMBOLS), side=st.sampled_from(Side),
          qty=st.integers(1, 20), stp=st.sampled_from(StpMode), fok=st.booleans())
    def place_market(self, account: int, symbol: str, side: Side, qty: int, stp: StpMode, fok: bool) -> None:
        self.run(PlaceOrder(account, symbol, side, qty, None, OrderType.MARKET,
                            TimeInForce.FOK if fok else TimeInForce.IOC, stp=stp))

    @rule(maker=st.sampled_from(ACCOUNTS), taker=st.sampled_from(ACCOUNTS), symbol=st.sampled_from(SYMBOLS),
          side=st.sampled_from(Side), qty=st.sampled_from([1, 2, 4, 7]), taker_qty=st.sampled_from([1, 3, 6, 11]),
          offset=st.sampled_from([-2, 0, 1, 3]), tif=st.sampled_from(TimeInForce), stp=st.sampled_from(StpMode))
    def cross(self, maker: int, taker: int, symbol: str, side: Side, qty: int, taker_qty: int, offset: int,
              tif: TimeInForce, stp: StpMode) -> None:
        """A resting order, then an order from the other side through it: trades on most runs."""
        ref_price = 480 if symbol == SYMBOLS[0] else 1000
        self.run(PlaceOrder(maker, symbol, side, qty, ref_price + offset))
        through = ref_price + offset + (2 if side == Side.SELL else -2)
        expire = self.now + NS_PER_SECOND if tif == TimeInForce.GTD else None
        self.run(PlaceOrder(taker, symbol, Side(1 - side), taker_qty, through, OrderType.LIMIT, tif, stp=stp,
                            expire_ts_ns=expire))

    @rule(data=st.data(), account=st.sampled_from(ACCOUNTS), by_client_id=st.booleans())
    def cancel(self, data: st.DataObject, account: int, by_client_id: bool) -> None:
        if by_client_id and self.client_ids:
            account, cid = data.draw(st.sampled_from(self.client_ids))
            self.run(CancelOrder(account, client_order_id=cid))
        elif self.order_ids:
            self.run(CancelOrder(account, data.draw(st.sampled_from(self.order_ids))))

    @rule(data=st.data(), account=st.sampled_from(ACCOUNTS), price=st.one_of(st.none(), st.integers(-40, 40)),
          qty=st.one_of(st.none(), st.sampled_from([0, 1, 2, 4, 9, 20, 40])))
    def amend(self, data: st.DataObject, account: int, price: int | None, qty: int | None) -> None:
        if not self.order_ids:
            return
        order_id = data.draw(st.sampled_from(self.order_ids))
        order = self.fast.orders.get(order_id)
        if order is not None and data.draw(st.booleans()):
            account = order.account_id  # mostly amend one's own live order
        base = order.price_ticks if order is not None else 480
        self.run(AmendOrder(account, order_id, None if price is None else base + price, qty))

    @rule(data=st.data(), change=st.sampled_from(["reduce", "increase", "price", "both"]))
    def amend_own(self, data: st.DataObject, change: str) -> None:
        """Amend a live order by its owner: reductions keep priority, the rest requeue."""
        if not self.fast.orders:
            return
        order = self.fast.orders[data.draw(st.sampled_from(sorted(self.fast.orders)))]
        qty = order.remaining_lots
        price = None
        if change in ("reduce", "both") and qty > 1:
            qty -= data.draw(st.integers(1, qty - 1))
        elif change == "increase":
            qty += data.draw(st.integers(1, 5))
        if change in ("price", "both"):
            price = order.price_ticks + data.draw(st.sampled_from([-3, -1, 1, 3]))
        if order.client_order_id is not None and data.draw(st.booleans()):
            self.run(AmendOrder(order.account_id, None, price, qty, client_order_id=order.client_order_id))
        else:
            self.run(AmendOrder(order.account_id, order.order_id, price, qty))

    @rule(account=st.sampled_from(ACCOUNTS), symbol=st.one_of(st.none(), st.sampled_from(SYMBOLS)),
          side=st.one_of(st.none(), st.sampled_from(Side)))
    def mass_cancel(self, account: int, symbol: str | None, side: Side | None) -> None:
        self.run(MassCancel(account, symbol, side))

    @rule(account=st.sampled_from([*ACCOUNTS, 99]), amount=st.integers(-5, 2_000_000_000), out=st.booleans())
    def cash(self, account: int, amount: int, out: bool) -> None:
        self.run(Withdraw(account, amount) if out else Deposit(account, amount))

    @rule(account=st.sampled_from([*ACCOUNTS, 99]),
          timeout_ms=st.sampled_from([0, 1, 500, 1_000, 1_000, 5_000, 20_000, -1, 86_400_000, 86_400_001]))
    def cancel_all_after(self, account: int, timeout_ms: int) -> None:
        """Arm, re-arm or disarm a dead man's switch; 1 s and 5 s tie with GTD expiries set at the same time."""
        self.run(CancelAllAfter(account, timeout_ms))

    @rule(account=st.sampled_from(ACCOUNTS), other=st.sampled_from(ACCOUNTS), symbol=st.sampled_from(SYMBOLS),
          side=st.sampled_from(Side), seconds=st.sampled_from([1, 5]))
    def gtd_and_switch_at_the_same_instant(self, account: int, other: int, symbol: str, side: Side,
                                           seconds: int) -> None:
        """A resting GTD order and dead man's switches all due at the same nanosecond: the tie order."""
        ref_price = 480 if symbol == SYMBOLS[0] else 1000
        price = ref_price - 4 if side == Side.BUY else ref_price + 4
        self.run(PlaceOrder(account, symbol, side, 1, price, OrderType.LIMIT, TimeInForce.GTD,
                            expire_ts_ns=self.now + seconds * NS_PER_SECOND))
        self.run(CancelAllAfter(other, seconds * 1_000))
        self.run(CancelAllAfter(account, seconds * 1_000))

    @rule(seconds=st.sampled_from([0, 1, 5, 20, 200]))
    def advance(self, seconds: int) -> None:
        self.now += seconds * NS_PER_SECOND
        self.run(AdvanceTime())

    @rule(symbol=st.sampled_from(SYMBOLS), halted=st.booleans())
    def halt(self, symbol: str, halted: bool) -> None:
        self.run(HaltSeries(symbol, halted))

    @rule(symbol=st.sampled_from(SYMBOLS), move_pct=st.sampled_from([-15, -11, -10, -6, -2, 0, 3, 9, 10, 12, 20]),
          days_back=st.sampled_from([0, 0, 0, 1]), digest=st.sampled_from(["a" * 64, "b" * 64]))
    def settle_daily(self, symbol: str, move_pct: int, days_back: int, digest: str) -> None:
        """A daily settlement moves the reference price (and so the band): resting orders that the new
        band leaves out are cancelled (`outside_band`). Moves of about ±10% hit the band edges."""
        base = 480 if symbol == SYMBOLS[0] else 1000
        date_ns = (self.now // NS_PER_DAY - days_back) * NS_PER_DAY
        self.run(SettleDaily(symbol, date_ns, base * (100 + move_pct) // 100, (), digest))

    @rule(account=st.sampled_from(ACCOUNTS), enabled=st.integers(0, 3))
    def kill_switch(self, account: int, enabled: int) -> None:
        self.run(SetAccountEnabled(account, enabled > 0))

    @rule(symbol=st.sampled_from(SYMBOLS), really=st.integers(0, 9))
    def terminate(self, symbol: str, really: int) -> None:
        if symbol != SYMBOLS[0] and really == 0:  # rare; keep one series trading for the whole run
            self.run(TerminateTrading(symbol))

    @invariant()
    def same_state(self) -> None:
        for symbol in self.fast.series:
            for side in (BUY, SELL):
                book = self.fast.series[symbol].book
                fast = [(o.order_id, o.price_ticks, o.remaining_lots) for o in book.orders(side)]
                assert fast == self.ref.book(symbol, side), f"{symbol} side {side}"
        for account_id, account in self.fast.accounts.items():
            assert self.fast.cash_micros(account_id) == self.ref.cash[account_id]
            assert account.cancel_all_at_ns == self.ref.cancel_all_at.get(account_id, 0)
            assert account.margin_micros == self.ref.margin(account_id)
            for symbol, exposure in account.exposures.items():
                position = self.ref.position(account_id, symbol)
                assert (exposure.position_lots, exposure.entry_cost_ticks) == (position.lots, position.cost)
        assert self.fast.ledger.balances[-2] == self.ref.cash[-2]  # fees
        self.fast.audit()

    @invariant()
    def rejections_change_nothing(self) -> None:
        # A rejected command (here: an order for an unknown series) leaves all state but seq as is.
        before = state_dump(self.fast, include_counters=False)
        self.now += 0
        events = self.fast.apply(PlaceOrder(1, "NOPE-M40-261203", Side.BUY, 1, 480), self.now)
        self.ref.seq += 1  # keep the two sequence counters aligned
        assert [type(e) for e in events] == [Rejected]
        assert state_dump(self.fast, include_counters=False) == before


TestEngineVersusReference = EngineVersusReference.TestCase
