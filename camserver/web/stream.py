"""Long-lived HTTP responses (MJPEG streams, and any streaming endpoint after them) whose unsent
bytes are bounded per viewer, so that a slow viewer skips to fresh frames instead of lagging.

Linux auto-tunes a TCP socket's send buffer up to several MB, so without a bound write() keeps
succeeding long after a viewer on a slow link has fallen behind: the kernel queues seconds of
old frames, aiohttp's back-pressure never triggers, and a viewer that stopped reading holds
megabytes for a long time. Two limits close that:

- TCP_NOTSENT_LOWAT: the kernel takes no more data while this many bytes are not yet sent. It
  counts only bytes not yet on the wire, so a fast link keeps its full congestion window (unlike
  a small SO_SNDBUF, which would also cap the bytes in flight and slow fast remote viewers).
- The transport's write buffer high-water mark 0, and a drain after every write: the write of
  a frame completes only once the kernel has taken all of it.

So at most about one frame plus NOTSENT_LOWAT is waiting for a viewer; when it falls behind,
the next write waits, and the stream loop then sends the newest frame, skipping the rest.

The MJPEG framing (boundary and part headers) lives here too: each frame's part is built once.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import weakref

from aiohttp import web

from ..hub import Frame

log = logging.getLogger(__name__)

NOTSENT_LOWAT = 16 * 1024  # bytes; a fraction of a VGA frame, plenty for loopback and LAN rates
BOUNDARY = "camserverframe"
MJPEG_CONTENT_TYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
MJPEG_START = f"--{BOUNDARY}\r\n".encode()

# Each frame's part is built once and written to every viewer; it goes when the frame does.
_parts: weakref.WeakKeyDictionary[Frame, bytes] = weakref.WeakKeyDictionary()


def mjpeg_part(frame: Frame) -> bytes:
    """The frame as one multipart body part, followed by the next boundary.

    Writing the boundary right after the frame lets browsers show the frame at once instead of
    waiting for the next one to know this one ended. X-Frame-Seq numbers the camera's frames
    (0 = a placeholder picture); clients ignore it.
    """
    part = _parts.get(frame)
    if part is None:
        head = (
            f"Content-Type: image/jpeg\r\nContent-Length: {len(frame.jpeg)}\r\n"
            f"X-Frame-Seq: {frame.seq}\r\n\r\n"
        ).encode()
        part = _parts[frame] = b"".join((head, frame.jpeg, b"\r\n", MJPEG_START))
    return part


class ViewerGone(Exception):
    """The viewer closed the connection or stopped reading."""


class BoundedStream:
    """A prepared StreamResponse with bounded unsent bytes and a write timeout."""

    def __init__(self, request: web.Request, resp: web.StreamResponse, write_timeout_s: float) -> None:
        self.request = request
        self.resp = resp
        self.write_timeout_s = write_timeout_s

    async def start(self) -> None:
        """Send the headers and bound what the kernel and the transport may hold for this viewer."""
        await self.resp.prepare(self.request)
        transport = self.request.transport
        if transport is None:
            raise ViewerGone
        sock = transport.get_extra_info("socket")
        lowat = getattr(socket, "TCP_NOTSENT_LOWAT", None)
        if sock is not None and lowat is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, lowat, NOTSENT_LOWAT)
            except OSError:  # not a TCP socket after all, or an old kernel: the drain below still helps
                log.debug("TCP_NOTSENT_LOWAT not set", exc_info=True)
        transport.set_write_buffer_limits(high=0)

    @property
    def closing(self) -> bool:
        """Whether the viewer has gone (noticed before the next write)."""
        transport = self.request.transport
        return transport is None or transport.is_closing()

    async def send(self, data: bytes) -> None:
        """Write `data` and wait until the kernel took it; ViewerGone if the viewer left or stalled."""
        writer = self.resp._payload_writer  # resp.drain() is deprecated; the writer's drain() is not
        try:
            async with asyncio.timeout(self.write_timeout_s):
                await self.resp.write(data)
                if writer is not None:
                    await writer.drain()
        except TimeoutError:
            log.info("viewer %s stopped reading for %.1f s; dropped", self.request.remote, self.write_timeout_s)
            if self.request.transport is not None:
                self.request.transport.abort()  # frees what is buffered for this viewer, in the kernel too
            raise ViewerGone from None
        except (ConnectionError, RuntimeError):
            raise ViewerGone from None
