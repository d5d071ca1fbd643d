"""Viewer side of recordings: event clips, a camera's recordings, and exports of any span, as MP4.

Files are served with aiohttp's FileResponse: Range requests (206) work, which a browser needs to
seek in a video, and the bytes go out with sendfile. A file still growing (an open event) is
served as it is at the request: a fragmented MP4 that plays up to its last complete fragment.

An export or clip that cannot be made now answers JSON `{"error": ..., "detail": ...}`, never a 500:
429 with Retry-After when a bound is reached (EXPORTS_PER_CLIENT of one client at once, or the
recorder's own, see record/exporter.py), 507 when there is no room for it (a full disk, or the
exports' share of storage.max_mb in use).

Across a wall-clock step the labels (start_time, end_time, a span's start and end) can repeat: after
the clock steps back an hour, one hour of labels holds two recordings. The listing shows both, in
the order they were made, each with its `seq`; `clip.mp4?start=&end=` cuts the span from one of
them (`&seq=`: the one holding that recording; without it, the newest) and says which in
X-Clip-Seq, with X-Clip-Other-Seqs naming the others (record/labels.py).
"""

from __future__ import annotations

import errno
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable

from aiohttp import web

from ..record.export import ExportRefused
from ..record.exporter import MAX_EXPORT_S, ClipFile

DAY_S = 86400.0
EXPORTS_PER_CLIENT = 2  # exports or clips one client address waits for at once; more: 429
RETRY_AFTER_S = 2

EventClip = Callable[[str], Awaitable[ClipFile | None]]
ListRecordings = Callable[..., Awaitable[list[dict[str, Any]]]]  # (camera, after, before[, since_steady=])
Export = Callable[[str, float, float, int | None], Awaitable[ClipFile | None]]  # (camera, start, end, seq)
LISTED = ("path", "kind", "start_time", "end_time", "frames", "bytes", "width", "height", "in_progress", "seq",
          "steady_start", "steady_end")


def _bad(text: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(reason="invalid query", text=text)


def _time(query: Any, key: str, default: float | None = None) -> float | None:
    if key not in query:
        return default
    try:
        value = float(query[key])
    except ValueError:
        raise _bad(f"{key} must be a number (seconds since the epoch)") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise _bad(f"{key} must be a finite number")
    return value


def _mp4(clip: ClipFile, filename: str) -> web.FileResponse:
    headers = {
        "Content-Type": "video/mp4",
        "Content-Disposition": f'inline; filename="{filename}"',
        # a growing file changes with every fragment; a finished one never does
        "Cache-Control": "no-cache" if clip.in_progress else "max-age=3600",
        "X-Clip-Offset": f"{clip.offset_s:.3f}",  # where the event's clip starts in the file (a shared span)
    }
    if clip.in_progress:
        headers["X-Recording"] = "in-progress"
    if clip.choice is not None and clip.choice.seq is not None:  # which recordings a span of labels was cut from
        headers["X-Clip-Seq"] = str(clip.choice.seq)
        headers["X-Clip-Choice"] = "asked" if clip.choice.asked else "newest" if clip.choice.others else "only"
        if clip.choice.others:
            headers["X-Clip-Other-Seqs"] = ",".join(map(str, clip.choice.others))
    return web.FileResponse(clip.path, headers=headers)


def _refused(status: int, error: str, detail: str) -> web.Response:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status in (429, 503) else None
    return web.json_response({"error": error, "detail": detail}, status=status, headers=headers)


class RecordingsApi:
    """Routes for clips and recordings, over narrow callables (the Recorder's, in the app).

    Args:
        event_clip: event id -> the clip's file (None: no such event or no clip).
        list_recordings: (camera, after, before) -> the recordings overlapping the span.
        export: (camera, start, end, seq) -> an MP4 of the span (None: nothing recorded there).
        camera_known: whether a camera id exists (unknown: 404).
        clock: wall-clock time (the default span of a listing is the last 24 h, without `steady`).
        steady: steady time (clock.Timeline.now): the default listing is what ended in the last 24 h of it,
            whatever the wall clock did meanwhile.
    """

    def __init__(self, event_clip: EventClip, list_recordings: ListRecordings, export: Export,
                 camera_known: Callable[[str], bool], clock: Callable[[], float] = time.time,
                 steady: Callable[[], float] | None = None) -> None:
        self.event_clip = event_clip
        self.list_recordings = list_recordings
        self.export = export
        self.camera_known = camera_known
        self.clock = clock
        self.steady = steady
        self._waiting: dict[str, int] = {}  # client address -> its exports in flight (entries at 0 are removed)
        self.refused: dict[int, int] = {}

    def add_routes(self, app: web.Application) -> None:
        """Register the routes."""
        app.router.add_get("/api/events/{event_id}/clip.mp4", self.event_clip_mp4)
        app.router.add_get("/api/cameras/{camera_id}/recordings", self.recordings)
        app.router.add_get("/api/cameras/{camera_id}/clip.mp4", self.camera_clip_mp4)

    @asynccontextmanager
    async def _bounded(self, request: web.Request) -> AsyncIterator[None]:
        """One export or clip of this client at a time (up to EXPORTS_PER_CLIENT); ExportRefused when over."""
        client = request.remote or "?"
        if self._waiting.get(client, 0) >= EXPORTS_PER_CLIENT:
            raise ExportRefused(429, "too many exports", f"at most {EXPORTS_PER_CLIENT} exports of one client at once")
        self._waiting[client] = self._waiting.get(client, 0) + 1
        try:
            yield
        finally:
            left = self._waiting[client] - 1
            if left:
                self._waiting[client] = left
            else:
                del self._waiting[client]

    async def _made(self, request: web.Request, make: Awaitable[Any]) -> Any:
        """`make` awaited under the client's bound; a refusal or a full disk is a JSON answer (returned, not raised)."""
        try:
            async with self._bounded(request):
                return await make
        except ExportRefused as exc:
            return self._count(_refused(exc.status, exc.error, exc.text))
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return self._count(_refused(507, "disk full", f"no room to write the clip: {exc.strerror}"))
            return self._count(_refused(503, "storage unavailable", f"the clip could not be made: {exc.strerror or exc}"))
        finally:
            close = getattr(make, "close", None)
            if close is not None:
                close()  # refused before it ran: no "never awaited" coroutine left behind

    def _count(self, response: web.Response) -> web.Response:
        self.refused[response.status] = self.refused.get(response.status, 0) + 1
        return response

    def _camera(self, request: web.Request) -> str:
        camera = request.match_info["camera_id"]
        if not self.camera_known(camera):
            raise web.HTTPNotFound(reason="unknown camera", text=f"no camera {camera!r}")
        return camera

    async def event_clip_mp4(self, request: web.Request) -> web.StreamResponse:
        """The event's clip; while the event is open, what is recorded so far."""
        event_id = request.match_info["event_id"]
        clip = await self._made(request, self.event_clip(event_id))
        if isinstance(clip, web.Response):
            return clip
        if clip is None or not clip.path.exists():
            raise web.HTTPNotFound(reason="no clip", text=f"event {event_id!r} has no clip")
        return _mp4(clip, f"event-{event_id}.mp4")

    async def recordings(self, request: web.Request) -> web.Response:
        """The camera's recordings overlapping [after, before] (default: the last 24 h), in the order made."""
        camera = self._camera(request)
        after = _time(request.query, "after", None)
        before = _time(request.query, "before", None)
        if before is not None and after is not None and before <= after:
            raise _bad("before must be after after")
        if after is not None or self.steady is None:
            rows = await self.list_recordings(camera, self.clock() - DAY_S if after is None else after, before)
        else:  # "the last 24 h" is a duration: steady time, so a step neither hides nor doubles a day
            rows = await self.list_recordings(camera, None, before, since_steady=self.steady() - DAY_S)
        return web.json_response({"camera": camera, "recordings": [{k: r.get(k) for k in LISTED} for r in rows]})

    async def camera_clip_mp4(self, request: web.Request) -> web.StreamResponse:
        """An MP4 of [start, end] of the camera's recordings, remuxed (no re-encoding), cut at keyframes;
        `seq`: of the recordings sharing those labels after a clock step, the ones with that recording."""
        camera = self._camera(request)
        start = _time(request.query, "start")
        end = _time(request.query, "end")
        if start is None or end is None:
            raise _bad("start and end are required (seconds since the epoch)")
        if not 0 < end - start <= MAX_EXPORT_S:
            raise _bad(f"end must be after start, by at most {MAX_EXPORT_S:.0f} s")
        seq = None
        if "seq" in request.query:
            text = request.query["seq"]
            if not (text.isascii() and text.isdigit() and len(text) <= 18):
                raise _bad("seq must be a recording's seq (a whole number, from the recordings listing)")
            seq = int(text)
        clip = await self._made(request, self.export(camera, start, end, seq))
        if isinstance(clip, web.Response):
            return clip
        if clip is None:
            which = "" if seq is None else f" with recording seq {seq}"
            raise web.HTTPNotFound(reason="nothing recorded", text=f"camera {camera!r} has no recording{which} in that span")
        return _mp4(clip, f"{camera}-{int(start)}-{int(end)}.mp4")
