"""The viewer port's own budget: a cap on open HTTP connections, so that a flood of sockets to it
can never take the descriptors the cameras' port needs.

aiohttp itself closes a connection that sends no complete request within its keepalive timeout
(also the first request: the "header read timeout"); it has no cap on open connections. The cap
sits in front of aiohttp's protocol: over it, a new connection gets a plain 503 and is closed
before aiohttp sees it. Viewers with open streams are connections too: `http.max_viewers` is
always below the cap. Connections that have not proven themselves share only part of the cap
(`http.unauthenticated_share`, see ConnectionLimit).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any, Awaitable, Callable

from aiohttp import web

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
    """Counts the viewer port's open connections; refuses new ones over `cap`; keeps room for proven ones.

    A connection is *unproven* until one of its requests carries a valid credential or is answered
    with success (a page file, /healthz, an OTA image, a login); a request with a body and no
    credential makes it unproven again. Unproven connections may hold at most `unproven_share` of
    the cap: a new connection over that share (or over the cap) evicts the oldest unproven
    connection that is waiting for its headers or for a body (one whose complete request is being
    answered is left alone) of the address holding the most unproven connections; it is refused
    when there is none, or when its own address already holds at least half the average share per
    address of the unproven room (a refusal before aiohttp sees the connection costs far less than
    an eviction). So a flood of connections that never send their
    body, or never send anything, cannot keep viewers, Home Assistant or a board's OTA download
    out: it is refused or evicts itself, and what it holds is closed by the body deadline (or the
    header timeout). Clients behind the flood's own address (a NAT) share its fate.
    """

    def __init__(self, cap: int, unproven_share: float = 1.0) -> None:
        self.cap = cap
        self.unproven_cap = max(1, int(cap * unproven_share))
        self.open = 0
        self.refused = 0
        self.evicted = 0
        self._unproven: dict[str, dict[_Guarded, None]] = {}  # by client address, oldest first
        self._unproven_count = 0
        self._by_transport: dict[Any, _Guarded] = {}
        self._log = ThrottledLog(log, interval_s=10.0)

    @property
    def unproven(self) -> int:
        """Open connections that have not proven themselves."""
        return self._unproven_count

    def _doubt(self, conn: _Guarded) -> None:
        peer = self._unproven.setdefault(conn.peer, {})
        if conn not in peer:
            peer[conn] = None
            self._unproven_count += 1

    def _trust(self, conn: _Guarded) -> None:
        peer = self._unproven.get(conn.peer)
        if peer is not None and peer.pop(conn, 0) is None:
            self._unproven_count -= 1
            if not peer:
                del self._unproven[conn.peer]

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for loop.create_server that guards `inner` (aiohttp's web.Server)."""
        return lambda: _Guarded(self, inner)

    def _evict(self) -> bool:
        """Close an unproven connection that waits for headers or a body; False if there is none.

        The victim is the oldest such connection of the address that holds the most unproven
        connections: a flood evicts itself, and a viewer arriving from elsewhere is not evicted by it.
        """
        for conns in sorted(self._unproven.values(), key=len, reverse=True):  # a few addresses, usually
            conn = next((c for c in conns if c.waiting()), None)
            if conn is None:
                continue
            self._forget(conn)
            self.evicted += 1
            assert conn.transport is not None
            if conn.request is None or conn.request.writer.output_size == 0:
                conn.transport.write(REFUSAL)  # type: ignore[attr-defined]
            conn.transport.close()
            return True
        return False

    def _forget(self, conn: _Guarded) -> None:
        if conn.counted:
            conn.counted = False
            self.open -= 1
            self._trust(conn)
            self._by_transport.pop(conn.transport, None)

    def admit(self, conn: _Guarded) -> bool:
        """Whether a new connection may be served (making room by eviction where it can)."""
        if self.open >= self.cap or self._unproven_count >= self.unproven_cap:
            mine = len(self._unproven.get(conn.peer, ()))
            if mine and 2 * mine * len(self._unproven) >= self._unproven_count:
                # an address holding at least half the average share per address (a flood's): refused
                # at once, which costs far less than an eviction
                return False
            if not self._evict():
                return False
            self._log.warning("evict", "HTTP connection evicted to make room: %d unproven of %d open "
                              "(http.unauthenticated_share); %d evicted so far", self._unproven_count,
                              self.open, self.evicted)
        if self.open >= self.cap:
            return False
        conn.counted = True
        self.open += 1
        self._doubt(conn)
        self._by_transport[conn.transport] = conn
        return True

    def middleware(self, proves: Callable[[Any], bool]) -> Callable[..., Awaitable[Any]]:
        """Middleware that tells this limit which connections proved themselves.

        Args:
            proves: whether a request carries a valid credential.
        """

        @web.middleware
        async def track(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
            conn = self._by_transport.get(request.transport)
            if conn is None:
                return await handler(request)
            if proves(request):
                self._trust(conn)
            elif request.body_exists:
                self._doubt(conn)  # unproven again (if it was proven: as the newest)
            conn.request = request
            try:
                resp = await handler(request)
            finally:
                conn.request = None
            if resp.status < 400 and conn.counted:
                self._trust(conn)
            return resp

        return track


class _Guarded(asyncio.Protocol):
    """Passes everything to aiohttp's protocol, unless the connection is over the cap."""

    def __init__(self, limit: ConnectionLimit, inner: Callable[[], asyncio.Protocol]) -> None:
        self.limit = limit
        self.make_inner = inner
        self.inner: Any = None
        self.transport: asyncio.BaseTransport | None = None
        self.counted = False
        self.request: Any = None  # the request being handled, if any
        self.peer = "?"  # the client's address

    def waiting(self) -> bool:
        """Whether this connection waits for a request's headers or for its body (not answering one)."""
        request = self.request
        return request is None or not request.content.is_eof()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        limit = self.limit
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else "?"
        if not limit.admit(self):
            limit.refused += 1
            limit._log.warning("cap", "HTTP connection from %s refused: %d open (http.max_connections), %d unproven; "
                               "%d refused so far", self.peer, limit.open, limit.unproven, limit.refused)
            transport.write(REFUSAL)  # type: ignore[attr-defined]
            transport.close()
            return
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
            self.limit._forget(self)
            self.inner.connection_lost(exc)
            self.inner = None
