"""The viewer port's own budget: a cap on open HTTP connections, so that a flood of sockets to it
can never take the descriptors the cameras' port needs.

aiohttp itself closes a connection that sends no complete request within its keepalive timeout
(also the first request: the "header read timeout"); it has no cap on open connections. The cap
sits in front of aiohttp's protocol: over it, a new connection gets a plain 503 and is closed
before aiohttp sees it. Viewers with open streams are connections too: `http.max_viewers` is
always below the cap.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any, Callable

from ..logsafe import ThrottledLog

log = logging.getLogger(__name__)

REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 10\r\nContent-Type: text/plain\r\n"
           b"Content-Length: 33\r\nConnection: close\r\n\r\ntoo many connections; try again\r\n")
# descriptors kept for everything but viewers: cameras (one each), the database and its WAL,
# recordings being written, log files, the listening sockets, the detector's libraries
RESERVE_BASE = 64


def raise_descriptor_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (no privilege needed); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(configured: int, max_cameras: int) -> int:
    """The cap to use: `configured`, lowered so that the cameras' descriptors stay free."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = soft - RESERVE_BASE - 2 * max_cameras
    if configured > room:
        cap = max(16, room)
        log.warning("http.max_connections = %d does not fit %d file descriptors with %d cameras; using %d",
                    configured, soft, max_cameras, cap)
        return cap
    return configured


class ConnectionLimit:
    """Counts the viewer port's open connections; refuses new ones over `cap`."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open = 0
        self.refused = 0
        self._log = ThrottledLog(log, interval_s=10.0)

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for loop.create_server that guards `inner` (aiohttp's web.Server)."""
        return lambda: _Guarded(self, inner)


class _Guarded(asyncio.Protocol):
    """Passes everything to aiohttp's protocol, unless the connection is over the cap."""

    def __init__(self, limit: ConnectionLimit, inner: Callable[[], asyncio.Protocol]) -> None:
        self.limit = limit
        self.make_inner = inner
        self.inner: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        limit = self.limit
        if limit.open >= limit.cap:
            limit.refused += 1
            peer = transport.get_extra_info("peername")
            limit._log.warning("cap", "HTTP connection from %s refused: %d open (http.max_connections); "
                               "%d refused so far", peer[0] if peer else "?", limit.open, limit.refused)
            transport.write(REFUSAL)  # type: ignore[attr-defined]
            transport.close()
            return
        limit.open += 1
        self.inner = self.make_inner()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is not None:
            self.limit.open -= 1
            self.inner.connection_lost(exc)
            self.inner = None
