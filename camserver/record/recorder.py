"""Recording orchestration: which frames go into which file, on the loop; encoding on worker threads.

On the loop (cheap, per frame): a camera's frame goes into its pre-capture ring (events mode) and,
when a file is being written, into the camera's command queue. Worker threads drain each camera's
queue in order (one camera is never encoded on two threads at once): decode, encode, write,
finish. The index (SQLite) is written on the thread that owns the events database.

- events: an event's clip spans `pre_capture_s` before its start to `post_capture_s` after its
  end. Events of one camera that overlap share ONE file (a "span"): a span stays open, not
  encoding, for `pre_capture_s` after its last event's post-capture, so an event starting then
  continues it from the ring instead of encoding the same frames into a second file.
- continuous: every frame, in files cut at multiples of `segment_s` of wall-clock time.
- motion: continuous segments, kept only where motion or an event happened (padded by pre and
  post capture); until a camera reports motion at all, every segment is kept.

Frames come with the server's steady time (clock.Timeline) and a wall-clock label: lengths, pre
and post capture, cuts and clip spans are steady times; a file's label is its first frame's.
A camera switching framesize mid-file is scaled to the file's size; the next file (span or
segment) takes the new size. When a camera's encoder falls behind, frames are dropped from the
recording only (counted, logged at most once a minute). A write error (disk full, folder not
writable) pauses that camera's recording for `retry_s` (a second), counted, logged at most once a
minute; the storage budget is told at once and makes room (storage.min_free_mb), and while it
finds nothing of camserver's own left to remove (`DiskSpace.space_ok` false) the pause lasts
until it does. Exports run on their own threads, bounded (exporter.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, Callable, TypeVar

from ..clock import steady
from ..config import RecordConfig
from ..supervise import Spawn, cancel_and_wait
from .buffer import PreCaptureBuffer
from .encoder import EncodeSettings
from .exporter import MAX_EXPORT_S, DiskSpace, Exporter, UnlimitedDisk
from .index import RecordingIndex, recording_path
from .recovery import RecoveryReport, recover
from .worker import CameraState, EncodeWorkers, Span

log = logging.getLogger(__name__)
T = TypeVar("T")

PRE_SLACK_S = 3.0  # the ring keeps this much more than pre_capture_s: an event is confirmed a few frames after it starts
HOUSEKEEPING_S = 1.0
RETENTION_EVERY_S = 60.0
STALE_S = 5.0  # a camera that sent nothing this long has its file finished (the frames may never come)
RETRY_S = 1.0  # a camera's recording tries again this soon after a write error


class Recorder:
    """Recording for every camera (see the module docstring).

    Args:
        config: the [record] table.
        root: storage.dir; files go under <root>/recordings/<camera>/<YYYY-MM-DD>/.
        index: the recordings index on the events database.
        index_executor: runs every index call: one thread, in submission order (the events thread).
        clock: steady time (clock.Timeline.now), for pauses and for files of cameras that stopped sending.
        workers: encoding threads (default: one per core, at most 4).
        retry_s: how long recording pauses after a write error (at least: while `disk` says the disk is full, longer).
        disk: the storage budget's free-space floor (default: none).
        export_max_bytes: the exports' share of storage.max_mb.
        modes: camera id -> its own recording mode ([cameras.<id>] record); the others record in config.mode.
        housekeeping_s: how often time-driven decisions run (files of silent cameras, motion verdicts).
    """

    def __init__(self, config: RecordConfig, root: Path, index: RecordingIndex, index_executor: Executor,
                 clock: Callable[[], float] = steady, workers: int | None = None, retry_s: float = RETRY_S,
                 housekeeping_s: float = HOUSEKEEPING_S, disk: DiskSpace | None = None,
                 export_max_bytes: int = 2**62, modes: dict[str, str] | None = None) -> None:
        self.config = config
        self.modes = dict(modes or {})  # [cameras.<id>] record: the cameras that record in a mode of their own
        self.root = root
        self.index = index
        self.index_executor = index_executor
        self.clock = clock
        self.retry_s = retry_s
        self.housekeeping_s = housekeeping_s
        self.settings = EncodeSettings(config.preset, config.crf, config.x264_params)
        self.encoders = EncodeWorkers(index, index_executor, self.settings, clock, retry_s, workers)
        self.workers = self.encoders.pool
        self.disk = disk or UnlimitedDisk()
        self.encoders.on_write_error = self.disk.urgent
        self.cameras: dict[str, CameraState] = {}
        self.exporter = Exporter(index, self._index, clock, self.disk, export_max_bytes)
        self.exports = self.exporter.cache
        # for the HTTP routes: an event's clip, any span's export (exporter.py)
        self.clip_file, self.export, self.export_clip = self.exporter.clip_file, self.exporter.export, self.exporter.clip
        self.recovered = RecoveryReport()
        self.latest_steady = -math.inf  # the latest steady time the index holds (a run before this one)
        self._housekeeping: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def mode(self) -> str:
        """off | events | motion | continuous: [record] mode."""
        return self.config.mode

    def mode_of(self, camera: str) -> str:
        """The camera's recording mode: its own, else [record] mode."""
        return self.modes.get(camera, self.config.mode)

    # --- lifecycle (loop) ------------------------------------------------------------------------

    async def start(self, spawn: Spawn | None = None) -> RecoveryReport:
        """Create the index tables, repair what a crash left (see recovery.recover), start housekeeping
        (with `spawn`, the app's Supervisor.spawn: a long-lived task of the record stage)."""
        self.recovered = await self._index(self._start_sweep)
        if self.recovered:
            log.warning("recordings after a crash: %s", self.recovered)
        self._housekeeping = spawn("record", self._housekeep(), "record-housekeeping") if spawn is not None \
            else asyncio.create_task(self._housekeep(), name="record-housekeeping")
        return self.recovered

    def _start_sweep(self) -> RecoveryReport:
        self.index.create()
        report = recover(self.index)
        self.exports.clean(0.0)
        self.latest_steady = self.index.latest_steady()  # the app starts steady time after it (clock.not_before)
        return report

    async def stop(self) -> None:
        """Finish every file (flush, make it a regular MP4, index it), then stop the workers."""
        self._stopping = True
        await cancel_and_wait(self._housekeeping)
        for cam in self.cameras.values():
            self._finish_current(cam, None)
            cam.verdicts.clear()  # motion verdicts not reached: keep what was recorded
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.encoders.shutdown)
        await loop.run_in_executor(None, self.exporter.pool.shutdown)
        await self._index(lambda: None)  # the index thread runs in order: every finish before this is done

    # --- per frame and per event (loop) ------------------------------------------------------------

    def on_frame(self, camera: str, jpeg: bytes, when: float, wall: float | None = None) -> None:
        """A frame the camera sent, at steady time `when`, labelled `wall` (default `when`); for every frame, on the loop."""
        if self._stopping or self.mode_of(camera) == "off":
            return
        cam = self._camera(camera)
        cam.offset = 0.0 if wall is None else wall - when
        if cam.ring is not None:
            cam.ring.append(when, jpeg)
        if when > cam.last_frame:
            cam.gap_s = min(when - cam.last_frame, 1.0)
        cam.last_frame = when
        if cam.failed and not self._resume(cam):
            if cam.span is not None or cam.mode in ("continuous", "motion"):
                cam.frames_paused += 1
            return
        if cam.mode == "events":
            self._span_frame(cam, jpeg, when)
        else:
            self._segment_frame(cam, jpeg, when)

    def event_started(self, camera: str, event_id: str, start: float, label: float | None = None) -> None:
        """An event began at steady time `start`, labelled `label`: its clip starts pre_capture_s before."""
        if self.mode_of(camera) == "off":
            return
        cam = self._camera(camera)
        pre = self.config.pre_capture_s
        label = start if label is None else label
        if cam.mode != "events":
            self._index_soon(self.index.set_clip, event_id, camera, None, label - pre, None, start - pre)
            if cam.mode == "motion":
                cam.activity[f"event:{event_id}"] = [start - pre, math.inf]
            return
        span = cam.span
        if span is not None and event_id in span.events:
            return
        if span is None and not cam.failed:
            frames = cam.ring.since(start - pre) if cam.ring is not None else []
            first = frames[0][0] if frames else max(cam.last_frame, start - pre)
            span = cam.span = Span(recording_path(camera, "span", first + cam.offset, first), first)
            self._open(cam, span.path, "span", first)
            self.encoders.push_batch(cam, frames)
            span.last_fed = frames[-1][0] if frames else span.last_fed
        elif span is not None and span.lingering:
            # a new event inside the linger: the frames since the span stopped come from the ring
            span.lingering = False
            frames = cam.ring.since(span.last_fed + 1e-6) if cam.ring is not None else []
            self.encoders.push_batch(cam, frames)
            span.last_fed = frames[-1][0] if frames else span.last_fed
        if span is None:
            return  # paused by a write error: no clip
        span.events.add(event_id)
        clip_start = max(start - pre, span.start)
        self._index_soon(self.index.set_clip, event_id, camera, span.path, label - (start - clip_start), None, clip_start)

    def event_ended(self, camera: str, event_id: str, end: float, label: float | None = None) -> bool:
        """The event ended at steady time `end`, labelled `label`: its clip ends post_capture_s after.

        Returns whether the event has a clip: recording was on for it and is not paused by a write error.
        """
        if self.mode_of(camera) == "off":
            return False
        cam = self._camera(camera)
        clip_end, post = end + self.config.post_capture_s, self.config.post_capture_s
        capped = cam.capped.pop(event_id, None)
        if capped is not None:  # its span reached the hour while it went on: the clip ended there
            return True
        self._index_soon(self.index.end_clip, event_id, (end if label is None else label) + post, clip_end)
        if cam.mode != "events":
            if f"event:{event_id}" in cam.activity:
                cam.activity[f"event:{event_id}"][1] = clip_end
            return not cam.failed
        span = cam.span
        if span is not None and event_id in span.events:
            span.events.discard(event_id)
            span.deadline = max(span.deadline, clip_end)
            return not cam.failed
        return False

    def motion(self, camera: str, active: bool, when: float | None = None) -> None:
        """Motion started or stopped on a camera (motion mode keeps only segments near motion or events)."""
        if self.mode_of(camera) == "off":
            return
        cam = self._camera(camera)
        when = self.clock() if when is None else when
        cam.motion_reported = True
        if active and cam.motion_since is None:
            cam.motion_since = when
            cam.motion_count += 1
            cam.activity[f"motion:{cam.motion_count}"] = [when - self.config.pre_capture_s, math.inf]
        elif not active and cam.motion_since is not None:
            cam.motion_since = None
            cam.activity[f"motion:{cam.motion_count}"][1] = when + self.config.post_capture_s

    def camera_offline(self, camera: str) -> None:
        """The camera went away: its file is finished now (no more frames will come for it)."""
        cam = self.cameras.get(camera)
        if cam is None:
            return
        self._finish_current(cam, cam.last_frame + cam.gap_s)
        if cam.ring is not None:
            cam.ring.clear()

    def set_config(self, config: RecordConfig, modes: dict[str, str] | None = None) -> None:
        """New [record] keys and cameras' own modes, taken at once (PATCH /api/config); the encoder's keys wait
        for a restart. A camera whose mode changes finishes its open file first (under the old mode: motion keeps
        its verdicts); its next frame starts what the new mode records."""
        pre_changed = config.pre_capture_s != self.config.pre_capture_s
        self.config, self.modes = config, dict(self.modes if modes is None else modes)
        for cam in self.cameras.values():
            if cam.mode != self.mode_of(cam.id) or pre_changed:
                self._finish_current(cam, cam.last_frame + cam.gap_s)
                cam.mode, cam.ring = self.mode_of(cam.id), self._ring(self.mode_of(cam.id))

    # --- figures ----------------------------------------------------------------------------------

    def camera_stats(self, camera: str) -> dict[str, Any]:
        """What /api/cameras shows of a camera's recording."""
        cam = self.cameras.get(camera)
        if cam is None:
            return {"mode": self.mode_of(camera), "recording": False, "buffer_frames": 0, "buffer_bytes": 0}
        return {
            "mode": self.mode_of(camera),
            "recording": cam.writing is not None or cam.span is not None or cam.segment is not None,
            "paused": cam.failed,
            "buffer_frames": cam.ring.frames if cam.ring else 0,
            "buffer_bytes": cam.ring.bytes if cam.ring else 0,
            "buffer_s": round(cam.ring.seconds, 2) if cam.ring else 0.0,
            "frames_recorded": cam.frames_recorded, "frames_dropped": cam.frames_dropped,
            "frames_paused": cam.frames_paused, "write_errors": cam.write_errors,
        }

    def health(self) -> dict[str, Any]:
        """What /healthz shows of recording."""
        cams = self.cameras.values()
        return {
            "record_mode": self.config.mode,
            "record_write_errors": self.encoders.write_errors,
            "record_paused_cameras": sorted(c.id for c in cams if c.failed),
            "record_frames_dropped": sum(c.frames_dropped for c in cams),
            "exports": self.exporter.health(),
        }

    # --- for the HTTP routes ----------------------------------------------------------------------

    async def list_recordings(self, camera: str, after: float | None, before: float | None,
                              since_steady: float | None = None) -> list[dict[str, Any]]:
        """A camera's recordings overlapping the labels [after, before] (ending after steady `since_steady`), in the order made."""
        return await self._index(self.index.recordings, camera, after, before, None, 10000, False, since_steady)

    # --- loop-side decisions ------------------------------------------------------------------------

    def _camera(self, camera: str) -> CameraState:
        cam = self.cameras.get(camera)
        if cam is None:
            mode = self.mode_of(camera)
            cam = self.cameras[camera] = CameraState(camera, self._ring(mode), mode)
        return cam

    def _ring(self, mode: str) -> PreCaptureBuffer | None:
        """Events mode's pre-capture ring (the other modes keep none)."""
        cfg = self.config
        return PreCaptureBuffer(cfg.pre_capture_s + PRE_SLACK_S, int(cfg.buffer_mb * 1024 * 1024)) if mode == "events" else None

    def _span_frame(self, cam: CameraState, jpeg: bytes, when: float) -> None:
        span = cam.span
        if span is None:
            return
        if span.lingering:
            if when > span.deadline + self.config.pre_capture_s:
                self._finish_current(cam, None)
            return
        if not span.events and when > span.deadline:
            span.lingering = True  # this frame waits in the ring in case another event starts
            return
        if when > span.start + MAX_EXPORT_S:
            # a span is at most an hour, like every clip: its open events' clips end there, the events go on
            cap = span.start + MAX_EXPORT_S
            for event_id in span.events:
                cam.capped[event_id] = cap
                self._index_soon(self.index.end_clip, event_id, cap + cam.offset, cap)
            self._finish_current(cam, cap)
            return
        self.encoders.push_frame(cam, jpeg, when)
        span.last_fed = when

    def _segment_frame(self, cam: CameraState, jpeg: bytes, when: float) -> None:
        if cam.segment is None or when >= cam.segment_end:
            if cam.segment is not None:
                self._finish_current(cam, when)
            seg, label = self.config.segment_s, when + cam.offset
            cam.segment = recording_path(cam.id, "segment", label, when)
            cam.segment_start = when
            # cut where the label reaches a multiple of segment_s, measured in steady time from here
            cam.segment_end = when + (math.floor(label / seg) + 1) * seg - label
            self._open(cam, cam.segment, "segment", when)
        self.encoders.push_frame(cam, jpeg, when)

    def _finish_current(self, cam: CameraState, end: float | None) -> None:
        """Close the camera's current file (span or segment); `end`: when its last frame stops showing."""
        if cam.span is not None:
            cam.span = None
            self.encoders.enqueue(cam, ("close", end))
        if cam.segment is not None:
            if cam.mode == "motion":
                end = end if end is not None else cam.last_frame + cam.gap_s
                cam.verdicts.append((cam.segment, cam.segment_start, end))
            cam.segment = None
            self.encoders.enqueue(cam, ("close", end))

    def _open(self, cam: CameraState, path: str, kind: str, start: float) -> None:
        """Start a file at steady time `start`, labelled with the camera's offset now."""
        try:  # the row before the file
            row = self.index_executor.submit(self.index.add, path, cam.id, kind, start + cam.offset, start)
        except RuntimeError as exc:  # the events thread has stopped: the worker pauses this camera
            row = Future()
            row.set_exception(exc)
        self.encoders.enqueue(cam, ("open", path, row, cam.offset))

    def _resume(self, cam: CameraState) -> bool:
        """After a write error: True once the pause is over and the disk has room (the next frame starts a new file)."""
        if self.clock() < cam.paused_until or not self.disk.space_ok():
            return False
        cam.failed = False
        cam.span = None
        cam.segment = None
        return True

    def _index_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        self.encoders.index_later(fn, *args)

    async def _index(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.index_executor, fn, *args)

    async def _housekeep(self) -> None:
        last_retention = -math.inf
        while True:
            await asyncio.sleep(self.housekeeping_s)
            now = self.clock()
            try:
                self.tick(now)
                # retention by age is the storage budget's (RecordingsKind.expire, in keep-time); here only
                # the exports unused for EXPORT_TTL_S, for a recorder without a budget
                if time.monotonic() - last_retention >= RETENTION_EVERY_S:
                    last_retention = time.monotonic()
                    await asyncio.get_running_loop().run_in_executor(self.exporter.pool, self.exports.clean)
            except Exception:
                log.error("recording housekeeping failed", exc_info=True)

    def tick(self, now: float) -> None:
        """Time-driven decisions (called every second): files of cameras that stopped sending, motion verdicts."""
        for cam in self.cameras.values():
            stale = now - cam.last_frame > STALE_S
            span = cam.span
            if span is not None and not span.events and stale and now > span.deadline:
                self._finish_current(cam, None)
            if cam.segment is not None and stale and now > cam.segment_end:
                self._finish_current(cam, cam.last_frame + cam.gap_s)
            if cam.verdicts:
                self._judge(cam, now)

    def _judge(self, cam: CameraState, now: float) -> None:
        """Motion mode: keep a closed segment if motion or an event touched it; decided once later activity cannot."""
        waiting = []
        for path, start, end in cam.verdicts:
            if now < end + self.config.pre_capture_s + 1.0:
                waiting.append((path, start, end))
                continue
            if cam.motion_reported and not any(a < end and b > start for a, b in cam.activity.values()):
                self.encoders.enqueue(cam, ("discard", path))
        cam.verdicts = waiting
        horizon = now - 2 * (self.config.segment_s + self.config.pre_capture_s + self.config.post_capture_s)
        cam.activity = {k: a for k, a in cam.activity.items() if a[1] > horizon}

