"""Recording workers: each camera's commands run in order on a small thread pool (decode, encode,
write, finish), and the index is updated on the index thread.

A camera's queue holds commands: open a file, frames, a burst of pre-capture frames, close,
discard. Only frames count against MAX_QUEUED_FRAMES; commands are never dropped. One drain job
per camera at a time, so a camera's frames are encoded in order and never on two threads at once.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import deque
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import av

from ..logsafe import ThrottledLog
from ..storage import disk_full
from .buffer import PreCaptureBuffer
from .encoder import ClipWriter, EncodeSettings, remux
from .index import RecordingIndex, parse_recording_path

log = logging.getLogger(__name__)

MAX_QUEUED_FRAMES = 50  # per camera: 5 s of VGA at 10 fps waiting for its encoder before frames are dropped


@dataclass
class Span:
    """Events mode: the file that the overlapping events of one camera share."""

    path: str
    start: float
    events: set[str] = field(default_factory=set)  # open events
    deadline: float = -math.inf  # when the last ended event's post-capture ends
    last_fed: float = -math.inf  # arrival time of the newest frame queued for it
    lingering: bool = False  # past its deadline: not encoding, waiting pre_capture_s for another event


@dataclass
class CameraState:
    """One camera's recording: loop side (span or segment, ring, motion) and worker side (writer), with counters."""

    id: str
    ring: PreCaptureBuffer | None
    mode: str = "events"  # off | events | motion | continuous: [cameras.<id>] record, else [record] mode
    queue: deque[tuple[Any, ...]] = field(default_factory=deque)
    queued_frames: int = 0
    draining: bool = False
    capped: dict[str, float] = field(default_factory=dict)  # open events whose span reached the hour -> its end
    lock: threading.Lock = field(default_factory=threading.Lock)
    span: Span | None = None  # events mode: the file being written, if any
    segment: str | None = None
    segment_start: float = 0.0  # steady time of the current segment's first frame
    segment_end: float = 0.0  # the steady time where the current segment is cut (a wall-clock multiple of segment_s)
    last_frame: float = -math.inf  # steady time of the camera's latest frame
    offset: float = 0.0  # its wall-clock label minus its steady time (changes when the wall clock steps)
    gap_s: float = 0.1
    # motion mode
    motion_reported: bool = False
    motion_since: float | None = None
    # motion or event -> [start, end], padded by pre/post capture; end is inf while it lasts
    activity: dict[str, list[float]] = field(default_factory=dict)
    motion_count: int = 0
    verdicts: list[tuple[str, float, float]] = field(default_factory=list)  # closed segments awaiting keep/discard
    # worker side
    writer: ClipWriter | None = None
    writing: str | None = None  # the relative path the writer writes
    writer_offset: float = 0.0  # label minus steady time of the writer's file: its labels follow its first frame's
    unfinished: list[str] = field(default_factory=list)  # files a write error left growing: repaired on resume
    failed: bool = False
    paused_until: float = 0.0
    # counters
    frames_recorded: int = 0
    frames_dropped: int = 0  # the encoder was behind
    frames_paused: int = 0  # not recorded while paused by a write error
    frames_bad: int = 0  # did not decode
    write_errors: int = 0
    files: int = 0


class EncodeWorkers:
    """The encoding threads and what runs on them.

    Args:
        index: the recordings index (called on the index thread only, through index_executor).
        index_executor: one thread, in submission order (the events thread).
        settings: how files are encoded.
        clock: steady time, for pauses.
        retry_s: how long a camera's recording pauses after a write error.
        threads: encoding threads (default: one per core, at most 4).
    """

    def __init__(self, index: RecordingIndex, index_executor: Executor, settings: EncodeSettings,
                 clock: Callable[[], float], retry_s: float, threads: int | None = None) -> None:
        self.index = index
        self.index_executor = index_executor
        self.settings = settings
        self.clock = clock
        self.retry_s = retry_s
        self.pool = ThreadPoolExecutor(max_workers=threads or min(4, os.cpu_count() or 1), thread_name_prefix="record")
        self.write_errors = 0
        self.on_write_error: Callable[[], None] = lambda: None  # the storage budget looks at the free space now
        self._drop_log = ThrottledLog(log, interval_s=60.0)
        self._disk_log = ThrottledLog(log, interval_s=60.0)

    # --- on the loop ------------------------------------------------------------------------------

    def push_frame(self, cam: CameraState, jpeg: bytes, when: float) -> None:
        """Queue a frame for the camera's file; dropped (counted, logged once a minute) when its queue is full."""
        with cam.lock:
            if cam.queued_frames >= MAX_QUEUED_FRAMES:
                # the oldest or the newest: either way the recording loses one frame; commands never go
                cam.frames_dropped += 1
                full = True
            else:
                full = False
                cam.queued_frames += 1
                cam.queue.append(("frame", when, jpeg))
                self._schedule(cam)
        if full:
            self._drop_log.warning(cam.id, "camera %s: the recording encoder is behind; %d frame(s) dropped from the"
                                   " recording so far (detection and viewers are not affected)",
                                   cam.id, cam.frames_dropped)

    def push_batch(self, cam: CameraState, frames: list[tuple[float, bytes]]) -> None:
        """Queue the pre-capture frames of a new or continued span as one command."""
        if not frames:
            return
        with cam.lock:
            # not counted against MAX_QUEUED_FRAMES: the burst is bounded by the ring, and live
            # frames queue behind it while it is encoded (50 VGA frames: about 0.15 s)
            cam.queue.append(("frames", frames))
            self._schedule(cam)

    def enqueue(self, cam: CameraState, command: tuple[Any, ...]) -> None:
        """Queue a command (open, close, discard): never dropped."""
        with cam.lock:
            cam.queue.append(command)
            self._schedule(cam)

    def _schedule(self, cam: CameraState) -> None:
        """Start a drain job for the camera unless one runs (call with cam.lock held)."""
        if not cam.draining:
            cam.draining = True
            self.pool.submit(self.drain, cam)

    def index_later(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run an index call on the index thread, errors logged (from any thread)."""
        try:
            self.index_executor.submit(_logged, fn, *args)
        except RuntimeError:  # the events thread has stopped (shutdown): nothing more to index
            log.debug("recordings index closed; %s not recorded", getattr(fn, "__name__", fn))

    def shutdown(self) -> None:
        """Wait for every queued command, then stop the threads (blocking: run it in an executor)."""
        self.pool.shutdown(wait=True)

    # --- on a worker thread ---------------------------------------------------------------------

    def drain(self, cam: CameraState) -> None:
        """Run the camera's commands in order until its queue is empty (on a worker thread)."""
        while True:
            with cam.lock:
                if not cam.queue:
                    cam.draining = False
                    return
                command = cam.queue.popleft()
                if command[0] == "frame":
                    cam.queued_frames -= 1
            try:
                self._run(cam, command)
            except Exception as exc:
                self._failed(cam, exc)

    def _run(self, cam: CameraState, command: tuple[Any, ...]) -> None:
        kind = command[0]
        if kind == "frame":
            self._write(cam, command[1], command[2])
        elif kind == "frames":
            for when, jpeg in command[1]:
                self._write(cam, when, jpeg)
        elif kind == "open":
            self._close_writer(cam, None)
            path, row, cam.writer_offset = command[1], command[2], command[3]
            row.result(timeout=60)  # its row exists before its file
            cam.writing = path  # from here a failure leaves it to repair (or to remove, with its row)
            if cam.unfinished:
                self._repair_unfinished(cam)
            file = self.index.file(path)
            file.parent.mkdir(parents=True, exist_ok=True)
            cam.writer = ClipWriter(file, self.settings, scale=True)
            cam.files += 1
        elif kind == "close":
            self._close_writer(cam, command[1])
        elif kind == "discard":
            self.index_later(self.index.remove, command[1])

    def _write(self, cam: CameraState, when: float, jpeg: bytes) -> None:
        if cam.writer is None:
            return  # its file failed to open: paused
        if cam.writer.write(jpeg, when):
            cam.frames_recorded += 1
        else:
            cam.frames_bad += 1

    def _close_writer(self, cam: CameraState, end: float | None) -> None:
        writer, path = cam.writer, cam.writing
        cam.writer = cam.writing = None
        if writer is None or path is None:
            return
        try:
            stats = writer.close(end)
            if stats is None:
                self.index_later(self.index.remove, path)  # nothing was written
                return
            result = remux(writer.path, writer.path)  # regular MP4, index first, replacing the growing file in one rename
        except BaseException:
            cam.unfinished.append(path)  # repaired when writing works again, or at the next start
            raise
        if result is None:
            self.index_later(self.index.remove, path)
            return
        start = stats.start + cam.writer_offset  # frames carry steady times: the label is the first one's, the end that
        self.index_later(self.index.finish, path, start, start + result.duration,  # plus what was recorded
                         result.frames, writer.path.stat().st_size, stats.width, stats.height, stats.start)

    def _failed(self, cam: CameraState, exc: BaseException) -> None:
        """A write error: drop the writer (its file is repaired later), pause this camera's recording."""
        if cam.writer is not None:
            cam.writer.abort()
        if cam.writing is not None:
            cam.unfinished.append(cam.writing)
        cam.writer = cam.writing = None
        cam.write_errors += 1
        cam.paused_until = self.clock() + self.retry_s
        cam.failed = True
        self.write_errors += 1
        if isinstance(exc, (OSError, av.error.FFmpegError)) or disk_full(exc):  # a row that found no room too
            self.on_write_error()
            self._disk_log.warning("disk", "recording paused: cannot write under %s (%s); it tries again in %.0f s,"
                                   " once the free-space floor has made room; %d write error(s) so far",
                                   self.index.root / "recordings", exc, self.retry_s, self.write_errors)
        else:
            log.error("camera %s: recording failed; paused for %.0f s", cam.id, self.retry_s, exc_info=exc)

    def _repair_unfinished(self, cam: CameraState) -> None:
        """Files a write error left growing: made final now that writing works again (or removed)."""
        for path in cam.unfinished:
            file = self.index.file(path)
            result = remux(file, file) if file.exists() else None
            if result is None:
                self.index_later(self.index.remove, path)
            else:
                parsed = parse_recording_path(path)
                start = parsed[2] if parsed else 0.0
                self.index_later(self.index.finish, path, start, start + result.duration,
                                           result.frames, file.stat().st_size, result.width, result.height)
        cam.unfinished.clear()


def _logged(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:
        log.error("recordings index: %s failed", getattr(fn, "__name__", fn), exc_info=True)
        return None
