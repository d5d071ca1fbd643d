"""Viewer side of events: history API, snapshots drawn on request, and the live Server-Sent Events feed."""

from __future__ import annotations

import asyncio
import base64
import math
import re
import time
from contextlib import nullcontext
from typing import Any, Callable, ContextManager

from aiohttp import web

from ..events.engine import EventEngine
from ..events.snapshots import render_snapshot
from .stream import BoundedStream, ViewerGone

KEEPALIVE_S = 15.0
MAX_LIMIT = 500
BOOT = str(int(time.time()))  # SSE ids are BOOT.N: a client from before a restart gets the whole history
EVENT_ID_RE = re.compile(r"(?P<boot>[0-9]{1,12})\.(?P<n>[0-9]{1,15})")  # ASCII digits only


def _bad(text: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(reason="invalid query", text=text)


def _number(query: Any, key: str) -> float | None:
    if key not in query:
        return None
    try:
        value = float(query[key])
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise _bad(f"{key} must be a number (seconds since the epoch)")
    return value


def _flag(query: Any, key: str) -> bool | None:
    if key not in query:
        return None
    value = query[key].lower()
    if value not in ("0", "1", "true", "false"):
        raise _bad(f"{key} must be 0, 1, true or false")
    return value in ("1", "true")


def encode_cursor(event: dict[str, Any]) -> str:
    """An opaque cursor: the (start_time, id) of the last event on a page."""
    return base64.urlsafe_b64encode(f"{event['start_time']!r}|{event['id']}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The (start_time, id) a cursor stands for."""
    try:
        start, _, event_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return float(start), event_id
    except ValueError:
        raise _bad("cursor is not one this server gave out") from None


class EventsApi:
    """Routes under /api/events."""

    def __init__(self, engine: EventEngine, write_timeout_s: float, closed: Callable[[], bool],
                 slot: Callable[[web.Request], ContextManager[None]] = lambda request: nullcontext(),
                 max_age_s: float = 600.0) -> None:
        self.engine = engine
        self.write_timeout_s = write_timeout_s
        self.closed = closed
        self.slot = slot  # one of the viewer places, held while a stream is open
        self.max_age_s = max_age_s

    def add_routes(self, app: web.Application) -> None:
        """Register the routes (stream and facets before the {event_id} pattern)."""
        app.router.add_get("/api/events", self.list_events)
        app.router.add_get("/api/events/stream", self.stream)
        app.router.add_get("/api/events/facets", self.facets)
        app.router.add_get("/api/events/{event_id}", self.get_event)
        app.router.add_delete("/api/events/{event_id}", self.delete_event)
        app.router.add_get("/api/events/{event_id}/snapshot.jpg", self.snapshot)

    async def list_events(self, request: web.Request) -> web.Response:
        """Events newest first; filters camera, label, zone, after, before, has_snapshot; limit; cursor.

        `last_event_id` is where the live feed stood: open the stream with it to get every later change.
        """
        q = request.query
        try:
            limit = int(q.get("limit", "50"))
        except ValueError:
            raise _bad("limit must be an integer") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise _bad(f"limit must be from 1 to {MAX_LIMIT}")
        filters = {"camera": q.get("camera"), "label": q.get("label"), "zone": q.get("zone"),
                   "after": _number(q, "after"), "before": _number(q, "before"), "has_snapshot": _flag(q, "has_snapshot")}
        cursor = decode_cursor(q["cursor"]) if "cursor" in q else None
        # the feed's position before the query: a client that opens the stream from here misses no
        # change to what it got, and replays nothing older (an event deleted before never comes back)
        position = f"{BOOT}.{self.engine.feed.last_id}"
        events = await self.engine.query(filters, limit + 1, cursor)
        more = len(events) > limit
        events = events[:limit]
        return web.json_response({"events": events, "next_cursor": encode_cursor(events[-1]) if more else None,
                                  "last_event_id": position})

    async def facets(self, request: web.Request) -> web.Response:
        """The distinct cameras, labels and zones in the history (the choices of the page's filters)."""
        return web.json_response(await self.engine.facets())

    async def _record(self, request: web.Request) -> dict[str, Any]:
        record = await self.engine.get(request.match_info["event_id"])
        if record is None:
            raise web.HTTPNotFound(reason="unknown event", text=f"no event {request.match_info['event_id']!r}")
        return record

    async def get_event(self, request: web.Request) -> web.Response:
        """One event."""
        return web.json_response(await self._record(request))

    async def delete_event(self, request: web.Request) -> web.Response:
        """Remove an event and its snapshot; one still open ends there too and never comes back."""
        event_id = request.match_info["event_id"]
        if not await self.engine.delete(event_id):
            raise web.HTTPNotFound(reason="unknown event", text=f"no event {event_id!r}")
        return web.json_response({"deleted": event_id})

    async def snapshot(self, request: web.Request) -> web.Response:
        """The event's best frame: ?bbox=0 without the box, ?crop=1 around the object, ?h= a height."""
        record = await self._record(request)
        bbox = _flag(request.query, "bbox")
        crop = bool(_flag(request.query, "crop"))
        height = None
        if "h" in request.query:
            try:
                height = int(request.query["h"])
            except ValueError:
                raise _bad("h must be an integer") from None
            if not 16 <= height <= 2160:
                raise _bad("h must be from 16 to 2160")
        jpeg = await self.engine.snapshot(record["id"]) if record.get("has_snapshot") else None
        if jpeg is None:
            raise web.HTTPNotFound(reason="no snapshot", text=f"event {record['id']!r} has no snapshot")
        body = await asyncio.get_running_loop().run_in_executor(
            None, render_snapshot, jpeg, record, bbox is not False, crop, height
        )
        if body is None:
            raise web.HTTPNotFound(reason="no snapshot", text="the stored snapshot does not decode")
        return web.Response(body=body, content_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: new/update/end/delete with ids; Last-Event-ID resumes; a comment every 15 s.

        A stream counts as a viewer (http.max_viewers) and ends after http.event_stream_max_s: an
        EventSource reconnects at once and resumes with Last-Event-ID, while a client that stopped
        reading (which a quiet stream's small keepalives never reveal) lets its place go.
        """
        last = 0
        given = request.headers.get("Last-Event-ID") or request.query.get("last_event_id", "")
        if given:
            if not (m := EVENT_ID_RE.fullmatch(given)):
                raise _bad("Last-Event-ID is not an id this server gives out (BOOT.N)")
            if m["boot"] == BOOT:
                last = int(m["n"])
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        with self.slot(request):
            return await self._serve(request, resp, last)

    async def _serve(self, request: web.Request, resp: web.StreamResponse, last: int) -> web.StreamResponse:
        feed = self.engine.feed
        stream = BoundedStream(request, resp, self.write_timeout_s)
        ends = time.monotonic() + self.max_age_s
        try:
            await stream.start()
            await stream.send(b"retry: 2000\n\n")
            while not self.closed() and not stream.closing and time.monotonic() < ends:
                items = feed.after(last)
                if items:
                    await stream.send(b"".join(
                        f"id: {BOOT}.{i.id}\nevent: {i.type}\ndata: ".encode() + i.sse_data + b"\n\n" for i in items
                    ))
                    last = items[-1].id
                    continue
                version = feed.last_id
                await feed.wait(version, min(KEEPALIVE_S, max(0.0, ends - time.monotonic())))
                if feed.last_id == version and not self.closed():
                    await stream.send(b": keepalive\n\n")
        except ViewerGone:
            pass
        return resp
