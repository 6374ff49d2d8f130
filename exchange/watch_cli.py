"""`exchange watch SYMBOL`: a live order book and trade tape in the terminal, from the market-data
WebSocket (`exchange.client.MarketFeed`, which keeps the book, resyncs gaps and reconnects)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from exchange.client.feed import LocalBook, MarketFeed, book_channel, ticker_channel, trades_channel

DEPTH = 10
TAPE = 12
_FRAME_S = 0.1


class WatchView:
    def __init__(self, symbol: str, url: str) -> None:
        self.symbol = symbol
        self.url = url
        self.book = LocalBook(symbol)
        self.tape: deque[dict[str, Any]] = deque(maxlen=TAPE)
        self.ticker: dict[str, Any] = {}
        self.status = "connecting"

    def consume(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "trade" and message.get("symbol") == self.symbol:
            self.tape.appendleft(message)
        elif kind == "ticker" and message.get("symbol") == self.symbol:
            self.ticker = message
        elif kind == "resync":
            self.status = "gap detected: resynchronising"
        elif kind == "reconnected":
            self.status = "reconnected"
        elif kind == "book_snapshot":
            self.status = "live"

    def render(self, feed: MarketFeed | None = None) -> RenderableType:
        book = feed.books.get(self.symbol, self.book) if feed is not None else self.book
        table = Table(title=f"{self.symbol} order book (top {DEPTH})", box=box.SIMPLE_HEAD, title_style="bold")
        for name, style in (("orders", "dim"), ("lots", "green"), ("bid", "bold green"),
                            ("ask", "bold red"), ("lots", "red"), ("orders", "dim")):
            table.add_column(name, justify="right", style=style, no_wrap=True)
        bids, asks = book.top_bids(DEPTH), book.top_asks(DEPTH)
        for i in range(DEPTH):
            b = bids[i] if i < len(bids) else None
            a = asks[i] if i < len(asks) else None
            table.add_row(str(b[2]) if b else "", f"{b[1]:,}" if b else "", str(b[0]) if b else "",
                          str(a[0]) if a else "", f"{a[1]:,}" if a else "", str(a[2]) if a else "")
        tape = Table(title="Last trades", box=box.SIMPLE_HEAD, title_style="bold")
        for name in ("time UTC", "price", "lots", "aggressor"):
            tape.add_column(name, justify="right" if name in ("price", "lots") else "left", no_wrap=True)
        for trade in self.tape:
            ts = int(trade.get("ts_ns", 0))
            clock = time.strftime("%H:%M:%S", time.gmtime(ts // 1_000_000_000)) + f".{ts // 1_000_000 % 1000:03d}"
            side = str(trade.get("side", ""))
            tape.add_row(clock, str(trade.get("price", "")), f"{trade.get('amount', 0):,}",
                         Text(side, style="green" if side == "buy" else "red"))
        grid = Table.grid(padding=(0, 4))
        grid.add_row(table, tape)
        status = Text()
        status.append(f"{self.url}  ", style="dim")
        status.append(self.status if book.synced or self.status != "live" else "waiting for a snapshot",
                      style="bold")
        status.append(f"   book seq {book.seq}")
        if feed is not None:
            status.append(f"   resyncs {feed.resyncs}   reconnects {feed.reconnects}")
        if self.ticker:
            status.append(f"\nlast {self.ticker.get('last')}   24h volume {self.ticker.get('volume_24h')}   "
                          f"high {self.ticker.get('high_24h')}   low {self.ticker.get('low_24h')}   "
                          f"change {self.ticker.get('change_24h')}")
        status.append("\nCtrl-C to stop", style="dim")
        return Group(grid, status)


async def watch(symbol: str, url: str, console: Console) -> None:
    """Render the live book and tape until cancelled; ValueError on a refused subscription."""
    view = WatchView(symbol, url)
    feed = await MarketFeed.connect(url, [book_channel(symbol), trades_channel(symbol), ticker_channel(symbol)])
    async with feed:
        with Live(view.render(feed), console=console, auto_refresh=False) as live:
            shown = 0.0
            async for message in feed:   # a refused subscription raises SubscriptionError
                view.consume(message)
                now = time.monotonic()
                if now - shown >= _FRAME_S:
                    live.update(view.render(feed), refresh=True)
                    shown = now


def run(symbol: str, url: str, console: Console) -> None:
    """`exchange watch`: Ctrl-C exits cleanly."""
    try:
        asyncio.run(watch(symbol, url, console))
    except KeyboardInterrupt:
        console.print("[dim]stopped[/]")
