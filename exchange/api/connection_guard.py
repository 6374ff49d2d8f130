"""What one client can hold of the HTTP layer: bounded, below the application (uvicorn's httptools
protocol, extended).

Uvicorn bounds idle keep-alive connections (`timeout_keep_alive`) but not a connection that never
finishes its request: without these guards a client could hold sockets forever by sending nothing, or
a header byte every few seconds (slowloris), or a body that never ends, and a few hundred such sockets
would take the server's file descriptors and event-loop time from everyone. So each connection:

- counts against its client IP (`connections_per_ip_max`) and the server (`connections_max`): over
  either, it gets `503` and is closed at once;
- must send its request head within `headers_timeout_s` of connecting (or of its first byte, for the
  next request on a keep-alive connection), else `408` and close;
- may send at most `header_bytes_max` bytes of request head, else `431` and close;
- must finish its body within `body_timeout_s` of its head, else `408` and close.

WebSocket upgrades leave these counts (their sessions have limits of their own, see ws_orders.py). The
client IP is the socket's peer: X-Forwarded-For is honoured only from `trusted_proxies` (uvicorn's own
`forwarded_allow_ips`), and these guards run before that, on the proxy's address.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from exchange.settings import Settings

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    connections_max: int
    connections_per_ip_max: int
    headers_timeout_s: float
    body_timeout_s: float
    header_bytes_max: int


class _Counts:
    """Open connections per client IP, shared by a server's protocol instances (one event loop)."""

    def __init__(self) -> None:
        self.total = 0
        self.per_ip: dict[str, int] = {}

    def add(self, ip: str) -> None:
        self.total += 1
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1

    def remove(self, ip: str) -> None:
        self.total -= 1
        left = self.per_ip[ip] - 1
        if left:
            self.per_ip[ip] = left
        else:
            del self.per_ip[ip]
        assert self.total >= 0


def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """An httptools protocol class enforcing `limits` (pass it as uvicorn's `http=`)."""
    counts = _Counts()

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _ip: str | None = None
        _timer: asyncio.TimerHandle | None = None
        _head_bytes = 0
        _head_tail = b""   # the last bytes of the head so far: its end may straddle two reads
        _in_head = True

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            ip = self.client[0] if self.client else "unknown"
            if counts.total >= limits.connections_max or counts.per_ip.get(ip, 0) >= limits.connections_per_ip_max:
                self._refuse(503, "too many connections")
                return
            self._ip = ip
            counts.add(ip)
            self._arm(limits.headers_timeout_s)

        def connection_lost(self, exc: Exception | None) -> None:
            self._release()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                # One read may hold the end of the head and the start of the body (a chunked upload
                # sends both at once): only the bytes up to the blank line that ends the head count.
                seen = self._head_tail + data
                end = seen.find(b"\r\n\r\n")
                self._head_bytes += len(data) if end < 0 else end + 4 - len(self._head_tail)
                self._head_tail = seen[-3:]
                if self._head_bytes > limits.header_bytes_max:
                    self._refuse(431, f"request head larger than {limits.header_bytes_max} bytes")
                    return
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if not self._in_head:   # the next request on a keep-alive connection: its head is timed anew
                self._in_head, self._head_bytes, self._head_tail = True, 0, b""
                self._arm(limits.headers_timeout_s)

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._arm(limits.body_timeout_s)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def handle_websocket_upgrade(self) -> None:
            self._release()   # a WebSocket session has limits of its own
            super().handle_websocket_upgrade()

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._timer = self.loop.call_later(seconds, self._timed_out)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _timed_out(self) -> None:
            self._timer = None
            cycle: Any = self.cycle
            if cycle is not None and not self._in_head and cycle.response_complete:
                return   # answered already: the keep-alive timeout takes over
            if cycle is not None and cycle.response_started:
                self.transport.close()   # too late for a status line
                return
            self._refuse(408, "the request was not sent in time")

        def _release(self) -> None:
            self._disarm()
            if self._ip is not None:
                counts.remove(self._ip)
                self._ip = None

        def _refuse(self, status: int, message: str) -> None:
            self._release()
            if self.transport.is_closing():
                return
            body = message.encode()
            self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
                                 b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body))
            self.transport.close()

    return GuardedHttpToolsProtocol


def server_config(app: Any, settings: Settings, host: str, port: int) -> uvicorn.Config:
    """The uvicorn configuration of every server of the exchange (the API and the feed gateways): the
    guarded protocol, X-Forwarded-For only from `trusted_proxies`, bounded WebSocket messages."""
    limits = ConnectionLimits(settings.connections_max, settings.connections_per_ip_max,
                              settings.headers_timeout_s, settings.body_timeout_s, settings.header_bytes_max)
    trusted = settings.trusted_proxies.strip()
    return uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, http=guarded_protocol(limits),
                          proxy_headers=bool(trusted), forwarded_allow_ips=trusted or None,
                          timeout_keep_alive=settings.keep_alive_timeout_s,
                          timeout_graceful_shutdown=settings.shutdown_drain_s,
                          ws_max_size=settings.ws_message_bytes_max, lifespan="on")
