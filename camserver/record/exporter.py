"""Exports of any span of a camera's recordings, bounded so that no viewer can fill the disk or slow the recording.

- They run on their own EXPORT_THREADS threads, never the encoders': 150 viewers asking at once
  queue here, and every camera's recording goes on.
- At most EXPORTS_AT_ONCE are being made or waiting at once; more are refused (429, the route
  adds Retry-After). The same span asked for twice at once is made once; a finished span is one
  file, reused by every request for it (export.ExportCache).
- Their bytes are counted in storage.max_mb (the budget's "exports" kind, removed first) and held
  to EXPORT_SHARE of it: one that does not fit once unused ones are gone is refused (507).
- One that would write past the free-space floor (storage.min_free_mb) is refused (507), and one
  the disk fills under is answered 507 too, never a 500.
- An export lives EXPORT_TTL_S after its last use (monotonic); each is at most MAX_EXPORT_S long.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol

from .export import ExportCache, ExportRefused
from .index import RecordingIndex
from .labels import LabelChoice, choose

EXPORT_TTL_S = 600.0
MAX_EXPORT_S = 3600.0  # every clip and export is at most this long
EXPORT_THREADS = 2
EXPORTS_AT_ONCE = 6  # exports being made or waiting for an export thread; more are refused (429)
EXPORT_SHARE = 0.25  # of storage.max_mb, at most, for exports


class DiskSpace(Protocol):
    """What recording asks of the storage budget (the app passes the budget)."""

    def space_ok(self) -> bool:
        """Whether a camera paused by a write error may try again (False: the disk is full of others' files)."""
        ...

    def urgent(self) -> None:
        """A write failed: make room now (any thread)."""
        ...

    def room(self) -> int:
        """Bytes that may still be written before the free-space floor."""
        ...


class UnlimitedDisk:
    """DiskSpace for a recorder without the storage budget: no floor, always room."""

    def space_ok(self) -> bool:
        """Always True: nothing here knows the disk is full."""
        return True

    def urgent(self) -> None:
        """Nothing to make room with."""

    def room(self) -> int:
        """As good as unlimited."""
        return 2**62


@dataclass
class ClipFile:
    """A file to serve: an event's clip (its span, or an export of segments) or an export."""

    path: Path
    in_progress: bool = False  # still growing (fragmented MP4): what is recorded so far
    offset_s: float = 0.0  # where the event's clip starts in the file
    choice: LabelChoice | None = None  # an export of labels: the recordings' timeline it was cut from (labels.py)


class Exporter:
    """Event clips and exports for the HTTP routes: the export threads, the cache and the bounds; on the loop.

    Args:
        index: the recordings index.
        index_call: runs an index method on the index thread (the recorder's).
        clock: steady time (clock.Timeline.now: an open event's clip runs to now).
        disk: the free-space floor.
        max_bytes: the exports' share of storage.max_mb.
    """

    def __init__(self, index: RecordingIndex, index_call: Callable[..., Awaitable[Any]], clock: Callable[[], float],
                 disk: DiskSpace, max_bytes: int = 2**62) -> None:
        self.index = index
        self.index_call = index_call
        self.clock = clock
        self.disk = disk
        self.pool = ThreadPoolExecutor(max_workers=EXPORT_THREADS, thread_name_prefix="export")
        self.cache = ExportCache(index.root / "recordings" / ".exports", EXPORT_TTL_S, max_bytes)
        self._making: dict[str, asyncio.Future[Any]] = {}  # key -> the export being made (one per span)
        self.refused: dict[int, int] = {429: 0, 507: 0}

    async def clip_file(self, event_id: str) -> ClipFile | None:
        """The file of an event's clip (while the event is open: what is recorded so far); None if none."""
        info = await self.index_call(self.index.clip, event_id)
        if info is None or not info["has_clip"]:
            return None
        if info["path"] is not None:
            return ClipFile(self.index.file(info["path"]), info["in_progress"], info["offset_s"])
        # its steady span: what was recorded for it, whatever the labels say (a clock step)
        start = info["steady_start"]
        if info["steady_end"] is not None:
            return await self.clip(info["camera"], start, min(info["steady_end"], start + MAX_EXPORT_S), steady=True)
        # open: up to now (at most the hour), the same file for the requests of one playback (see GROWING_REUSE_S)
        return await self.clip(info["camera"], start, min(self.clock(), start + MAX_EXPORT_S),
                               stable=f"event {event_id}", steady=True)

    async def export(self, camera: str, start: float, end: float, seq: int | None = None) -> ClipFile | None:
        """An MP4 of the wall-clock labels [start, end] of the camera's recordings (remuxed, cut at keyframes).

        The span is cut in steady time from one timeline of recordings (labels.py): the one holding recording
        `seq`, else the newest, when a clock step back made two share these labels. None if nothing is there
        (or `seq` is not among the recordings there).

        Raises:
            ExportRefused: a bound was reached (429) or there is no room (507).
        """
        end = min(end, start + MAX_EXPORT_S)
        rows = await self.index_call(self.index.recordings, camera, start, end)
        choice = choose(rows, start, end, seq)
        if choice is None:
            return None
        clip = await self.clip(camera, choice.start, choice.end, steady=True)
        if clip is None:
            return None
        clip.choice = choice
        return clip

    async def clip(self, camera: str, start: float, end: float, stable: str | None = None,
                   steady: bool = False) -> ClipFile | None:
        """Like `export`, with where `start` falls in the file (it begins at the keyframe before it).

        `stable` names a clip whose end moves (an open event's) for the export cache; `steady`: start
        and end are steady times (an event's clip), else wall-clock labels (a span a viewer asks for).
        """
        end = min(end, start + MAX_EXPORT_S)
        rows = await self.index_call(self.index.recordings, camera, start, end, None, 10000, steady)
        if steady:  # the rows' times on the scale of start and end (a row from before steady times: its labels)
            rows = [{**r, "start_time": _or(r["steady_start"], r["start_time"]),
                     "end_time": _or(r["steady_end"], r["end_time"])} for r in rows]
        made = await self._made(camera, start, end, rows, stable)
        if made is None:
            return None
        path, first, growing = made
        return ClipFile(path, growing, max(0.0, start - first))

    async def _made(self, camera: str, start: float, end: float, rows: list[dict[str, Any]],
                    stable: str | None = None) -> tuple[Path, float, bool] | None:
        """(file, time of its first frame, a source still grows) of [start, end] of `rows`; None if nothing there.

        `rows` have their times on the scale of start and end (start_time: their file's time 0).

        Raises:
            ExportRefused: 429, EXPORTS_AT_ONCE are being made; 507, no room for it (its share of
                storage.max_mb, or the free-space floor), or the disk was full while writing it.
        """
        sources = [(self.index.file(r["path"]), r["start_time"]) for r in rows]
        if not sources:
            return None
        growing = any(r["in_progress"] for r in rows)
        # a finished span gives the same file every time; one that is still growing, a new one
        key = repr((camera, start, end, [(r["path"], r["bytes"]) for r in rows]))
        stable = stable or repr((camera, start, end))
        making = self._making.get(key)
        if making is None:  # the same span asked for twice at once: one export, both wait for it
            if len(self._making) >= EXPORTS_AT_ONCE:
                raise self._refuse(ExportRefused(429, "too many exports", f"{EXPORTS_AT_ONCE} exports are being made;"
                                                 " try again in a few seconds"))
            estimate = self._estimate(rows, start, end)
            if estimate > self.disk.room():
                raise self._refuse(ExportRefused(507, "disk full", "no room for this export above the free space "
                                                 "storage.min_free_mb keeps"))
            making = asyncio.get_running_loop().run_in_executor(
                self.pool, self.cache.get, key, sources, start, end, growing, stable, estimate)
            self._making[key] = making
            making.add_done_callback(lambda done: self._done(key, done))
        try:
            made = await asyncio.shield(making)
        except ExportRefused as exc:
            raise self._refuse(exc) from None
        except OSError as exc:  # the disk filled while it was written (its file was removed)
            raise self._refuse(ExportRefused(507, "disk full", "the export could not be written: "
                                             f"{exc.strerror or exc}")) from None
        if made is None:
            return None
        return made[0], made[1], growing

    def _done(self, key: str, done: asyncio.Future[Any]) -> None:
        self._making.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved: every viewer waiting for it may have gone (a closed connection)

    def _refuse(self, exc: ExportRefused) -> ExportRefused:
        self.refused[exc.status] = self.refused.get(exc.status, 0) + 1
        return exc

    def _estimate(self, rows: list[dict[str, Any]], start: float, end: float) -> int:
        """About the bytes an export of [start, end] takes: each source's share of the span, plus a keyframe interval."""
        total = 0.0
        for r in rows:
            size = r["bytes"] or 0
            if r["in_progress"]:
                try:
                    size = self.index.file(r["path"]).stat().st_size
                except OSError:
                    size = 0
            r_end = r["end_time"] if r["end_time"] is not None else end
            length = max(r_end - r["start_time"], 1e-3)
            total += size * min(1.0, max(0.0, min(end, r_end) - max(start, r["start_time"]) + 2.0) / length)
        return int(total) + 64 * 1024

    def health(self) -> dict[str, Any]:
        """What /healthz `recording.exports` shows."""
        return {**self.cache.health(), "in_flight": len(self._making),
                "refused": {str(k): v for k, v in self.refused.items()}}


def _or(value: float | None, default: float | None) -> float | None:
    return default if value is None else value
