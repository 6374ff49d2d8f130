"""Open order-entry WebSocket sessions per client IP and per API key (exchange/api/routes/ws_orders.py)."""

from __future__ import annotations


class SessionCounts:
    """Open order-entry sessions per client IP and per API key: each bounded by a setting, so that one
    client cannot hold the server's sockets and tasks (HTTP connections are bounded in connection_guard)."""

    def __init__(self) -> None:
        self.per_ip: dict[str, int] = {}
        self.per_key: dict[str, int] = {}

    @staticmethod
    def take(counts: dict[str, int], key: str, limit: int) -> bool:
        if counts.get(key, 0) >= limit:
            return False
        counts[key] = counts.get(key, 0) + 1
        return True

    @staticmethod
    def give_back(counts: dict[str, int], key: str) -> None:
        left = counts[key] - 1
        if left:
            counts[key] = left
        else:
            del counts[key]
