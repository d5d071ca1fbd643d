"""Export: one MP4 of any span of a camera's recordings, remuxed (packets copied, nothing re-encoded).

A remux can only start at a keyframe, so the export starts at the last keyframe at or before
`start` (at most one keyframe interval, 2 s, early); it stops before the first frame at or after
`end` (no B-frames: any frame can end it), and its last frame shows until `end` at most, so it
covers [start, end] whenever the recordings do, and no more after it. Segments are
contiguous in time; gaps between them (the camera was offline) are kept as gaps in timestamps.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import av

from .encoder import FINISHED, TIME_BASE, _packets, abandon


@dataclass(frozen=True)
class Export:
    """What an export holds."""

    frames: int
    start: float  # wall-clock time of its first frame
    end: float  # wall-clock time its last frame stops showing
    skipped_files: int  # recordings left out: another frame size or encoder setup than the first


def export_span(sources: list[tuple[Path, float]], start: float, end: float, dst: Path) -> Export | None:
    """Write `dst` from `sources` [(file, wall-clock time of its pts 0)], oldest first; None if nothing in the span.

    The file appears in one rename, complete. A source still growing is read up to its last
    complete fragment.
    """
    tmp = dst.with_name(dst.name + ".tmp")
    out = out_stream = None
    reference: tuple[int, int, bytes | None] | None = None
    started = done = False
    gop: list[tuple[float, av.Packet[Any]]] = []
    first_t = 0.0
    last_ms = -1
    frames = skipped = 0
    last_end = 0.0

    def emit(t: float, packet: av.Packet[Any]) -> None:
        nonlocal last_ms, frames, last_end
        assert out is not None  # opened with the first keyframe, before anything is emitted
        ms = max(round((t - first_t) * 1000), last_ms + 1)
        duration = max(round(float((packet.duration or 0) * packet.time_base) * 1000), 1)
        # the last frame shows until the next one came, which may be long after `end` (a camera that lagged)
        duration = min(duration, max(round((end - t) * 1000), 1))
        packet.pts = packet.dts = ms
        packet.duration = duration
        packet.time_base = TIME_BASE
        packet.stream = out_stream
        out.mux(packet)
        last_ms = ms
        last_end = first_t + (ms + duration) / 1000
        frames += 1

    try:
        for path, file_start in sources:
            if done:
                break
            checked = False
            for stream, packet in _packets(path):
                if not checked:
                    checked = True
                    setup = (stream.codec_context.width, stream.codec_context.height, stream.codec_context.extradata)
                    if reference is None:
                        reference = setup
                        out = av.open(str(tmp), "w", format="mp4", options=FINISHED)
                        out_stream = out.add_stream_from_template(stream)
                    elif setup != reference:
                        skipped += 1  # the camera changed framesize (or the encoder settings changed)
                        break
                t = file_start + float(packet.pts * packet.time_base)
                if not started:
                    if packet.is_keyframe:
                        gop = [(t, packet)]
                    elif gop:
                        gop.append((t, packet))
                    if not gop or t < start:
                        continue
                    started = True
                    first_t = gop[0][0]
                    for held_t, held in gop:
                        emit(held_t, held)
                    gop = []
                    continue
                if t >= end:
                    done = True
                    break
                emit(t, packet)
        if out is not None:
            out.close()
    except BaseException:
        abandon(out, tmp)
        raise
    if frames == 0:
        tmp.unlink(missing_ok=True)
        return None
    os.replace(tmp, dst)
    return Export(frames, first_t, last_end, skipped)


# An export of a span still recording is made again on a later request, to show what was recorded
# since; for this long it is reused, so that the Range requests of one playback read one file.
GROWING_REUSE_S = 15.0
# An export used this recently is being played (its Range requests come one after another): it is
# not removed to make room for another one.
IN_USE_S = 30.0


class ExportRefused(Exception):
    """An export was not made: a bound was reached (429) or there is no room for it (507)."""

    def __init__(self, status: int, error: str, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.error = error
        self.text = text


class ExportCache:
    """Exports written to a folder, one file per span, reused while their sources are unchanged.

    Bounded in bytes (`max_bytes`, counted in storage.max_mb as the budget's "exports" kind): an
    export that does not fit once the least recently used ones not in use are gone is refused
    (ExportRefused 507). An export unused for `ttl_s` (monotonic) goes. Its methods run on the export
    threads and on the database's thread (the budget): the bookkeeping is under one lock, the
    writing is not.
    """

    name = "exports"  # as a kind of the storage budget
    tables: tuple[str, ...] = ()

    def __init__(self, folder: Path, ttl_s: float, max_bytes: int = 2**62,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.folder = folder
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._files: dict[Path, tuple[float, int, float]] = {}  # export -> (first frame's wall time, bytes, last used)
        self._bytes = 0
        self._reserved = 0  # bytes of exports being written
        self._growing: dict[str, tuple[Path, float]] = {}  # stable key -> (export, monotonic time made)
        self.removed = 0

    def get(self, key: str, sources: list[tuple[Path, float]], start: float, end: float,
            fresh: bool, stable: str | None = None, estimate: int = 0) -> tuple[Path, float] | None:
        """(file, time of its first frame) of the export of [start, end].

        `fresh`: a source still grows, so the export is made again, except within GROWING_REUSE_S of
        the last one made under the same `stable` key (the same clip, whatever its end is by now).
        `estimate`: about how many bytes it will take (the sources' bytes in the span).

        Raises:
            ExportRefused: 507, it does not fit in max_bytes.
            OSError: it could not be written (a full disk).
        """
        name = hashlib.sha1(key.encode()).hexdigest()[:20]
        now = self.monotonic()
        with self._lock:
            if fresh and stable is not None and (recent := self._growing.get(stable)) is not None:
                path, made = recent
                if now - made < GROWING_REUSE_S and path in self._files:
                    return path, self._use(path, now)
            dst = self.folder / (f"{name}-{time.monotonic_ns()}.mp4" if fresh else f"{name}.mp4")
            if dst in self._files:
                return dst, self._use(dst, now)
            self._make_room(estimate, now)
            self._reserved += estimate
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            result = export_span(sources, start, end, dst)
        finally:
            with self._lock:
                self._reserved -= estimate
        if result is None:
            return None
        size = dst.stat().st_size
        with self._lock:
            self._files[dst] = (result.start, size, self.monotonic())
            self._bytes += size
            if fresh and stable is not None:
                self._growing[stable] = (dst, self.monotonic())
        return dst, result.start

    def _use(self, path: Path, now: float) -> float:
        first, size, _ = self._files[path]
        self._files[path] = (first, size, now)
        return first

    def _make_room(self, need: int, now: float) -> None:
        """Remove least recently used exports not in use until `need` more bytes fit (lock held)."""
        over = self._bytes + self._reserved + need - self.max_bytes
        if over <= 0:
            return
        for path in sorted((p for p, v in self._files.items() if now - v[2] >= IN_USE_S), key=lambda p: self._files[p][2]):
            over -= self._remove(path)
            if over <= 0:
                return
        raise ExportRefused(507, "export space full",
                            f"exports in use take their share of storage.max_mb ({self.max_bytes / 2**20:.1f} MB); "
                            "try again when the ones being played are done, or ask for a shorter span")

    def _remove(self, path: Path) -> int:
        _, size, _ = self._files.pop(path)
        self._bytes -= size
        self.removed += 1
        with suppress(OSError):
            os.unlink(path)
        return size

    def clean(self, ttl_s: float | None = None) -> int:
        """Remove exports unused for `ttl_s` (default: the cache's); with 0, every file in the folder. Returns how many."""
        ttl = self.ttl_s if ttl_s is None else ttl_s
        now = self.monotonic()
        with self._lock:
            old = [p for p, (_, _, used) in self._files.items() if now - used >= ttl]
            for path in old:
                self._remove(path)
            for stable, (_, made) in list(self._growing.items()):
                if now - made >= GROWING_REUSE_S:
                    self._growing.pop(stable, None)
        if ttl <= 0 and self.folder.is_dir():  # at start-up: what an earlier run left
            for entry in os.scandir(self.folder):
                with suppress(OSError):
                    os.unlink(entry.path)
        return len(old)

    @property
    def bytes(self) -> int:
        """Bytes of the exports kept."""
        return self._bytes

    def health(self) -> dict[str, int]:
        """What /healthz shows of the exports."""
        return {"files": len(self._files), "bytes": self._bytes, "max_bytes": self.max_bytes, "removed": self.removed}

    # --- the "exports" kind of the storage budget (on the database's thread) ----------------

    def file_bytes(self) -> int:
        """Bytes of the exports kept and being written."""
        return self._bytes + self._reserved

    def sweep(self, limit: int) -> bool:
        """The folder is emptied at start-up (clean(0)): nothing to sweep."""
        return False

    def expire(self, now: float, limit: int) -> int:
        """Exports unused for ttl_s."""
        return self.clean()

    def trim(self, need: int, keep_newest_day: bool, limit: int) -> int:
        """The least recently used exports not being played, about `need` bytes; returns how many."""
        now = self.monotonic()
        removed = freed = 0
        with self._lock:
            for path in sorted((p for p, v in self._files.items() if now - v[2] >= IN_USE_S),
                               key=lambda p: self._files[p][2])[:limit]:
                if freed >= need:
                    break
                freed += self._remove(path)
                removed += 1
        return removed
