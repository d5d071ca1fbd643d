"""Every JSON answer strict: a NaN or Infinity a handler let through is served as null, counted.

The stages encode their own documents with camserver.jsonsafe; this middleware is the last line,
so that no route (present or added later) can answer JSON that a strict parser refuses.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from aiohttp import web

from ..jsonsafe import strict_body
from ..logsafe import printable


@web.middleware
async def strict_json(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Re-encode a JSON response that holds NaN or Infinity (json.dumps' default) with them as null."""
    resp = await handler(request)
    if isinstance(resp, web.Response) and resp.content_type == "application/json" and isinstance(resp.body, bytes):
        fixed = strict_body(resp.body, f"the answer to {request.method} {printable(request.path, 100)}")
        if fixed is not None:
            resp.body = fixed
    return resp
