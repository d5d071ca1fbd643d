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
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

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
    gop: list[tuple[float, av.Packet]] = []
    first_t = 0.0
    last_ms = -1
    frames = skipped = 0
    last_end = 0.0

    def emit(t: float, packet: av.Packet) -> None:
        nonlocal last_ms, frames, last_end
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


class ExportCache:
    """Exports written to a folder and reused while their sources are unchanged; old ones removed.

    Its methods run on worker threads (several at once: dict operations only, under the GIL).
    """

    def __init__(self, folder: Path, ttl_s: float) -> None:
        self.folder = folder
        self.ttl_s = ttl_s
        self._starts: dict[Path, float] = {}  # export file -> wall-clock time of its first frame
        self._growing: dict[str, tuple[Path, float]] = {}  # stable key -> (export, monotonic time made)
        self._used: dict[Path, float] = {}  # export file -> monotonic time of its last use (a clock step changes no ttl)

    def get(self, key: str, sources: list[tuple[Path, float]], start: float, end: float,
            fresh: bool, stable: str | None = None) -> tuple[Path, float] | None:
        """(file, time of its first frame) of the export of [start, end].

        `fresh`: a source still grows, so the export is made again, except within GROWING_REUSE_S of
        the last one made under the same `stable` key (the same clip, whatever its end is by now).
        """
        name = hashlib.sha1(key.encode()).hexdigest()[:20]
        if fresh and stable is not None and (recent := self._growing.get(stable)) is not None:
            path, made = recent
            if time.monotonic() - made < GROWING_REUSE_S and path in self._starts and path.exists():
                return path, self._starts[path]
        dst = self.folder / (f"{name}-{time.monotonic_ns()}.mp4" if fresh else f"{name}.mp4")
        if dst in self._starts and dst.exists():
            self._used[dst] = time.monotonic()  # in use: keep it another ttl
            return dst, self._starts[dst]
        self.clean()
        dst.parent.mkdir(parents=True, exist_ok=True)
        result = export_span(sources, start, end, dst)
        if result is None:
            return None
        self._starts[dst] = result.start
        self._used[dst] = time.monotonic()
        if fresh and stable is not None:
            self._growing[stable] = (dst, time.monotonic())
        return dst, result.start

    def clean(self, ttl_s: float | None = None) -> None:
        """Remove exports not used for `ttl_s` (default: the cache's); 0 (start-up: none is being written): all."""
        if not self.folder.is_dir():
            return
        ttl, now = self.ttl_s if ttl_s is None else ttl_s, time.monotonic()
        for entry in os.scandir(self.folder):
            path = Path(entry.path)
            used = self._used.get(path)  # None: being written (.tmp), or left by an earlier run (gone at start-up)
            if ttl <= 0 or (used is not None and now - used >= ttl):
                with suppress(OSError):
                    os.unlink(path)
                self._used.pop(path, None)
                self._starts.pop(path, None)
        for stable, (_, made) in list(self._growing.items()):
            if now - made >= GROWING_REUSE_S:
                self._growing.pop(stable, None)
