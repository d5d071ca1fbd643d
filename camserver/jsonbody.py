"""JSON request bodies, for every route that takes one (the viewer app's and the board's).

- **Caps on what is read**, not on what is declared: `read_body` stops at the cap, so a chunked
  body (no Content-Length) is cut there with 413 instead of being read up to aiohttp's 1 MB.
- **JSON that cannot crash a handler**: `parse_json` turns nesting deep enough to exhaust the
  parser's recursion (a few thousand `[`, well within a 4 KB cap) into the same ValueError as any
  other bad JSON, so it is a 400, not a 500 with a traceback.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def parse_json(raw: bytes) -> Any:
    """The JSON value in `raw`.

    Raises:
        ValueError: not JSON, not UTF-8, or nested too deep to parse.
    """
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


async def read_body(request: web.Request, cap: int) -> bytes:
    """The request's body, at most `cap` bytes of it read.

    Raises:
        HTTPRequestEntityTooLarge: the body declares or turns out to be longer than `cap` (413).
    """
    declared = request.content_length or 0
    if declared > cap:
        raise web.HTTPRequestEntityTooLarge(max_size=cap, actual_size=declared)
    chunks: list[bytes] = []
    size = 0
    while size <= cap:
        chunk = await request.content.read(cap + 1 - size)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    # the rest stays unread: aiohttp drains it for a while after the answer, then closes the connection
    raise web.HTTPRequestEntityTooLarge(max_size=cap, actual_size=size)


async def read_json(request: web.Request, cap: int, what: str = "the body must be JSON") -> Any:
    """The request's body parsed as JSON, read up to `cap` bytes (413 past it, 400 if it is not JSON)."""
    raw = await read_body(request, cap)
    try:
        return parse_json(raw)
    except ValueError:
        raise web.HTTPBadRequest(reason="invalid JSON", text=what) from None
