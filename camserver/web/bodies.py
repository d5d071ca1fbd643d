"""Request bodies and ranges: what a client may make the server wait for, read or parse.

- **A deadline for the body.** aiohttp bounds the wait for a request's headers (keepalive_timeout,
  `http.request_timeout_s`), not for its body: a client that declares `Content-Length: 4000` and
  sends nothing would hold the connection as long as it likes. `body_deadline` gives every body
  `http.body_timeout_s` from the request's start: past it, if the body is still incomplete, the
  client gets 408 and the connection is closed, whatever the handler was doing with it.
- **Caps on what is read, JSON that cannot crash a handler**: see camserver/jsonbody.py, shared
  with the board's routes.
- **`Range: bytes=-0`** asks for the last zero bytes of a file, which RFC 9110 calls unsatisfiable
  (416); aiohttp's FileResponse answered 206 with the whole file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from typing import Awaitable, Callable

from aiohttp import web

from ..logsafe import ThrottledLog, printable

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TIMEOUT_ANSWER = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\n"
                  b"Content-Length: 72\r\n\r\n"
                  b'{"error": "request timeout", "detail": "the body did not come in time"}\n')
ZERO_SUFFIX = re.compile(r"\s*bytes\s*=\s*-\s*0+\s*", re.IGNORECASE)

_log = ThrottledLog(log, interval_s=60.0)


def body_deadline(timeout_s: float, timeouts: list[int] | None = None) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Middleware: a body still incomplete `timeout_s` after the request started gets 408 and its connection closed.

    Args:
        timeout_s: `http.body_timeout_s`.
        timeouts: a one-item counter of the connections closed so, for /healthz.
    """
    counter = timeouts if timeouts is not None else [0]

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists:
            return await handler(request)
        expired = False

        def expire() -> None:
            nonlocal expired
            transport = request.transport
            if request.content.is_eof() or transport is None or transport.is_closing():
                return
            expired = True
            counter[0] += 1
            _log.warning("body", "%s %s from %s: the body did not come within %.0f s (http.body_timeout_s); "
                         "closed (%d so far)", printable(request.method, 20), printable(request.path, 100),
                         request.remote, timeout_s, counter[0])
            if request.writer.output_size == 0:  # nothing of an answer sent yet: say why before closing
                transport.write(TIMEOUT_ANSWER)
            transport.close()

        timer = asyncio.get_running_loop().call_later(timeout_s, expire)
        try:
            return await handler(request)
        except ConnectionError:
            # the connection went while the handler read the body: closed here (the deadline), by the
            # connection cap (an eviction) or by the client. Nobody is left to answer; aiohttp would
            # log it as an error with a traceback, one per connection of a flood
            transport = request.transport
            if expired or transport is None or transport.is_closing():
                return web.Response(status=408)
            raise
        except web.HTTPException:
            if expired:
                return web.Response(status=408)
            raise
        finally:
            if request.content.is_eof():
                timer.cancel()
            # else the timer stays: aiohttp goes on reading what is left (its "lingering close", up
            # to 10 s) after an answer given before the body came, and the deadline bounds that too

    return check


@web.middleware
async def unsatisfiable_ranges(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Middleware: a file asked for with `Range: bytes=-0` gets 416 instead of the whole file."""
    resp = await handler(request)
    # (with If-Range, aiohttp may rightly ignore the Range: left to it)
    if (isinstance(resp, web.FileResponse) and ZERO_SUFFIX.fullmatch(request.headers.get("Range", ""))
            and "If-Range" not in request.headers):
        headers = {}
        try:
            headers["Content-Range"] = f"bytes */{os.stat(resp._path).st_size}"  # aiohttp keeps the path only there
        except (AttributeError, OSError):
            pass
        raise web.HTTPRequestRangeNotSatisfiable(headers=headers, reason="range not satisfiable",
                                                 text="bytes=-0 asks for no bytes (RFC 9110)")
    return resp
