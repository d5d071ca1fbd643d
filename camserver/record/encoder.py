"""Camera JPEGs in, H.264 in MP4 out, with PyAV (FFmpeg's libraries in-process, no ffmpeg subprocess).

A file is written as fragmented MP4 while it grows (a fragment per keyframe, flushed to the
file at once), so it can be served while recording and survives a kill; `remux` then rewrites
it as a regular MP4 with its index at the front (`+faststart`), copying the packets as they are.

Every frame's timestamp is its real arrival time (ESP32 frame rates wander), so a clip lasts as
long as what it shows. Keyframes are forced by time (at most `keyframe_s` apart), not every N
frames. Everything here is synchronous and runs on a recording worker thread.
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import suppress
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import av
from av.video.frame import PictureType
from av.video.reformatter import ColorRange, VideoReformatter

# Tuned for fixed cameras on small CPUs (bench/record.py has the figures): no B-frames (every
# packet's dts is its pts, so a growing file, a repair and a concatenation of segments never need
# edit lists), a cheaper motion search and a short lookahead. `keyint` in codec_options is only a
# backstop: keyframes are forced by time.
from ..config.tables import DEFAULT_X264_PARAMS

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 1000)  # milliseconds: arrival times are not on any frame-rate grid
KEYFRAME_S = 2.0
GROWING = {
    "movflags": "frag_keyframe+empty_moov+default_base_moof",
    "frag_duration": "1000000",  # a fragment at least every second: a kill loses at most about 1.5 s (with the lookahead)
    "flush_packets": "1",  # each finished fragment reaches the file at once, not when a 32 KB buffer fills
    "video_track_timescale": "1000",
}
FINISHED = {"movflags": "+faststart", "video_track_timescale": "1000"}
MIN_FRAME_MS = 1  # a frame that arrives in the same millisecond as the previous one still gets its own time


@dataclass(frozen=True)
class EncodeSettings:
    """How clips are encoded."""

    preset: str = "veryfast"
    crf: int = 28
    x264_params: str = DEFAULT_X264_PARAMS
    keyframe_s: float = KEYFRAME_S

    def codec_options(self) -> dict[str, str]:
        """libx264 options: forced keyframes are IDR frames, so a player can start at any of them.

        B-frames stay off whatever x264_params says: the writer, the repair and the export rely on
        every packet's dts being its pts (no reordering, no edit lists).
        """
        tuning = self.x264_params
        if tuning == DEFAULT_X264_PARAMS and self.preset in ("ultrafast", "superfast"):
            tuning = ""  # those presets are already cheaper than the tuning in every respect (it would add work)
        params = ":".join(p for p in ("keyint=3000:colormatrix=bt470bg", tuning, "bframes=0") if p)
        return {"preset": self.preset, "crf": str(self.crf), "forced-idr": "1", "x264-params": params}


class JpegDecoder:
    """JPEG bytes to yuv420p frames (limited range, as H.264 players expect), with one decoder and one scaler reused."""

    def __init__(self) -> None:
        self.codec = av.CodecContext.create("mjpeg", "r")
        self.codec.thread_count = 1  # the workers already run one camera per thread
        self.scaler = VideoReformatter()  # keeps its SwsContext between frames of one size

    def decode(self, jpeg: bytes, size: tuple[int, int] | None = None) -> av.VideoFrame | None:
        """The picture as yuv420p, scaled to `size` (width, height) if given; None if it does not decode."""
        try:
            frames = self.codec.decode(av.Packet(jpeg))
        except av.error.FFmpegError:
            return None
        if not frames:
            return None
        frame = frames[-1]
        width, height = size if size is not None else (frame.width, frame.height)
        # FFmpeg's MJPEG decoder gives full-range yuvj4xxp; H.264 in MP4 is played as limited range
        return self.scaler.reformat(frame, width=width & ~1, height=height & ~1, format="yuv420p",
                                    src_color_range=ColorRange.JPEG, dst_color_range=ColorRange.MPEG, threads=1)


class SizeChanged(Exception):
    """A frame's size differs from the file's (the camera switched framesize)."""


@dataclass
class ClipStats:
    """What a closed file holds."""

    frames: int
    start: float  # the first frame's arrival time (pts 0)
    end: float  # when the last frame stops showing
    width: int
    height: int
    bytes: int


class ClipWriter:
    """One MP4 file, growing as fragments: JPEG bytes with arrival times in, H.264 out.

    Args:
        path: the file to write (its folder must exist).
        settings: preset, crf, x264 parameters, keyframe interval.
        scale: frames of another size are scaled to the first frame's size; otherwise such a
            frame raises SizeChanged and the caller starts a new file.
    """

    def __init__(self, path: Path, settings: EncodeSettings, scale: bool = False) -> None:
        self.path = path
        self.settings = settings
        self.scale = scale
        self.decoder = JpegDecoder()
        self.container: av.container.OutputContainer | None = None
        self.stream: av.video.stream.VideoStream | None = None
        self.size: tuple[int, int] | None = None
        self.start: float | None = None
        self.last_time: float | None = None
        self.last_pts = -1
        self.gap_s = 0.0  # the latest interval between frames: predicts when the next one comes
        self.last_key: float | None = None
        self.frames = 0
        self.keyframes = 0
        self._pending: av.Packet[Any] | None = None  # muxed when the next packet gives its duration

    def write(self, jpeg: bytes, when: float) -> bool:
        """Add a frame that arrived at `when` (wall-clock seconds). False: it does not decode (skipped).

        Raises:
            SizeChanged: the frame has another size and this writer does not scale.
            OSError, av.error.FFmpegError: the file cannot be written (disk full, folder gone).
        """
        frame = self.decoder.decode(jpeg, self.size if self.scale else None)
        if frame is None:
            return False
        self.write_frame(frame, when)
        return True

    def write_frame(self, frame: av.VideoFrame, when: float) -> None:
        """Add a decoded yuv420p frame (see `write`)."""
        if self.container is None:
            self._open(frame.width, frame.height, when)
        elif (frame.width, frame.height) != self.size:
            raise SizeChanged(f"{frame.width}x{frame.height} in a {'x'.join(map(str, self.size or ()))} file")
        assert self.stream is not None and self.start is not None
        pts = max(round((when - self.start) * 1000), self.last_pts + MIN_FRAME_MS)
        if self.last_time is not None:
            self.gap_s = min(max(when - self.last_time, 0.0), 1.0)
        frame.pts, frame.time_base = pts, TIME_BASE
        # decoded JPEGs come marked as I pictures; left so, every frame would be a keyframe
        since_key = when - self.last_key if self.last_key is not None else math.inf
        if since_key < 0 or since_key + self.gap_s > self.settings.keyframe_s + 0.001:  # < 0: the clock stepped back
            frame.pict_type = PictureType.I
            self.last_key = when
            self.keyframes += 1
        else:
            frame.pict_type = PictureType.NONE
        self.last_pts, self.last_time = pts, when
        self.frames += 1
        for packet in self.stream.encode(frame):
            self._mux(packet)

    def _open(self, width: int, height: int, when: float) -> None:
        self.container = av.open(str(self.path), "w", format="mp4", options=GROWING)
        try:
            stream = self.container.add_stream("libx264")
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.time_base = TIME_BASE
            stream.codec_context.time_base = TIME_BASE
            stream.codec_context.thread_count = 1
            stream.codec_context.options = self.settings.codec_options()
        except Exception:
            self.container.close()
            raise
        self.stream = stream
        self.size = (width, height)
        self.start = when

    def _mux(self, packet: av.Packet[Any]) -> None:
        assert self.container is not None
        if self._pending is not None:
            self._pending.duration = max((packet.pts or 0) - (self._pending.pts or 0), MIN_FRAME_MS)  # pts: ours, set
            self.container.mux(self._pending)
        self._pending = packet

    def close(self, end: float | None = None) -> ClipStats | None:
        """Flush the encoder and close the file; `end` is when the last frame stops showing
        (the next frame's arrival; default: one frame interval after it). None if no frame was written.

        Raises:
            OSError, av.error.FFmpegError: the file cannot be written.
        """
        if self.container is None:
            return None
        assert self.stream is not None and self.start is not None and self.last_time is not None and self.size
        try:
            for packet in self.stream.encode(None):
                self._mux(packet)
            # the last frame shows until the next one came (a segment's end) or for one interval
            last_s = end - self.last_time if end is not None and end > self.last_time else (self.gap_s or 0.1)
            last_ms = max(round(last_s * 1000), MIN_FRAME_MS)
            if self._pending is not None:
                self._pending.duration = last_ms
                self.container.mux(self._pending)
                self._pending = None
        finally:
            container, self.container = self.container, None
            container.close()
        return ClipStats(self.frames, self.start, self.start + (self.last_pts + last_ms) / 1000, *self.size,
                         self.path.stat().st_size)

    def abort(self) -> None:
        """Close after a write error, ignoring further errors (what reached the file stays; a repair can use it)."""
        container, self.container = self.container, None
        if container is not None:
            try:
                container.close()
            except Exception:  # the disk that failed the write may fail the close too
                pass


@dataclass(frozen=True)
class Probe:
    """What a file holds, read from its packets (nothing is decoded)."""

    frames: int
    keyframes: int
    duration: float  # seconds from the first frame to when the last one stops showing
    width: int
    height: int


def _packets(path: Path) -> Iterator[tuple[Any, Any]]:  # av types pts as optional: ours always have one
    """The video packets of a file, in order, up to the last complete one (a truncated tail ends the list).

    A file not there (yet: its index row comes first; or no longer), or without a complete header, has none.
    """
    try:
        container = av.open(str(path), "r")
    except (av.error.FFmpegError, OSError):
        return
    with container:
        if not container.streams.video:
            return
        stream = container.streams.video[0]
        try:
            for packet in container.demux(stream):
                if packet.dts is None or packet.size == 0:
                    continue  # the demuxer's end-of-stream marker
                if packet.is_corrupt:
                    return  # cut short by a crash: everything before it plays
                yield stream, packet
        except (av.error.FFmpegError, OSError):
            return


def probe(path: Path) -> Probe | None:
    """Frames, keyframes, duration and size of a file; None if it holds no playable video."""
    frames = keyframes = 0
    first = last_end = None
    size = (0, 0)
    try:
        for stream, packet in _packets(path):
            if frames == 0 and not packet.is_keyframe:
                return None
            t0 = float(packet.pts * packet.time_base)
            t1 = t0 + float((packet.duration or 0) * packet.time_base)
            first = t0 if first is None else first
            last_end = t1 if last_end is None else max(last_end, t1)
            frames += 1
            keyframes += packet.is_keyframe
            size = (stream.codec_context.width, stream.codec_context.height)
    except (av.error.FFmpegError, OSError):
        return None
    if frames == 0 or first is None or last_end is None:
        return None
    return Probe(frames, keyframes, last_end - first, *size)


def remux(src: Path, dst: Path) -> Probe | None:
    """Copy the packets of `src` (fragmented, maybe cut short) into a regular MP4 `dst`, index first.

    Copies from the first keyframe up to the last complete packet. `dst` may be `src`: a temporary
    file replaces it in one rename, so a reader never sees half a file. Returns what `dst` holds,
    or None (and no `dst`) if nothing plays.
    """
    tmp = dst.with_name(dst.name + ".tmp")
    frames = keyframes = 0
    size = (0, 0)
    first_pts: int | None = None
    last_end = 0.0
    out = None
    try:
        for stream, packet in _packets(src):
            if out is None:
                if not packet.is_keyframe:
                    continue  # nothing plays before the first keyframe
                out = av.open(str(tmp), "w", format="mp4", options=FINISHED)
                out_stream = out.add_stream_from_template(stream)
                size = (stream.codec_context.width, stream.codec_context.height)
                first_pts = packet.pts
            packet.pts -= first_pts
            packet.dts = packet.pts
            packet.stream = out_stream
            last_end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
            out.mux(packet)
            frames += 1
            keyframes += packet.is_keyframe
        if out is not None:
            out.close()
    except BaseException:
        abandon(out, tmp)
        raise
    if out is None:
        return None
    os.replace(tmp, dst)
    return Probe(frames, keyframes, last_end, *size)


def is_fragmented(path: Path) -> bool:
    """Whether a file is still in its growing (fragmented) form: a 'moof' box, or an empty 'moov' with 'mvex'."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64 * 1024)
    except OSError:
        return False
    return b"mvex" in head or b"moof" in head


def abandon(out: av.container.OutputContainer | None, tmp: Path) -> None:
    """A file being written failed: close its container if it was opened (errors ignored) and remove it."""
    if out is not None:
        with suppress(Exception):
            out.close()
    tmp.unlink(missing_ok=True)
