"""Real-time market data: the feed gateway process (`app.py`): a read-only replica of the core
following the journal (`replica.py`), the `FeedHub` fan-out of its events (`hub.py`), and the
WebSocket sessions and REST routes (`session.py`, `routes.py`)."""

from exchange.feeds.hub import FeedError, FeedHub, Subscriber

__all__ = ["FeedError", "FeedHub", "Subscriber"]
