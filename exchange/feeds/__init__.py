"""Real-time market data: the `FeedHub` fan-out of committed events to WebSocket subscribers."""

from exchange.feeds.hub import FeedError, FeedHub, Subscriber

__all__ = ["FeedError", "FeedHub", "Subscriber"]
