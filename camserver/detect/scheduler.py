"""The detection scheduler: every frame streamed at the camera's rate, the detector run where it matters.

Each camera's newest frame is prepared on its own in the frame pool (motion on a reduced decode,
the gate, a full decode only when needed; see pipeline.py), one frame per camera at a time, so a
camera whose frames are slow to decode never holds back another camera. Then:

- a frame the gate keeps from the detector (nothing moves) is published at once, with the boxes
  of the objects still there (the latest detection) drawn for viewers of the annotated stream;
- a frame that goes to the detector waits for it when the detector has room, and is published
  with its own boxes; when the detector is busy, the frame is published at once with the latest
  boxes and waits, newest wins, for its turn: detection may fall behind, the streams never do.

Batches take the waiting frames of up to `max_batch` cameras, least recently served first, never
two of one camera, and never wait on a timer. With the remote inference service (the triton
backend) a batch's JPEGs go as they are and nothing is decoded before inference.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

from ..config import Config, MotionConfig
from ..hub import Camera, CameraHub, Frame
from ..logsafe import ThrottledLog
from ..motion import masks_for
from ..supervise import cancel_and_wait
from .base import AsyncDetector, Detection, Detector
from .pipeline import CameraPipeline, Prepared, lag, prepare
from .publish import STALLED_TEXT, AnnotatedPublisher
from .paths import DetectionPath, LocalPath, Outcome, RemotePath
from .pool import DetectorPool

log = logging.getLogger(__name__)

HELD_EVERY_S = 1.0  # how often the events stage hears that a camera's held frames still show the scene
TICK_S = 1.0  # motion switches turn off and throttled cameras resume even when no frame comes
T = TypeVar("T")
Batch = list[tuple[Camera, "CameraPipeline", "Prepared"]]


def _nobody(camera_id: str) -> bool:
    return False


@dataclass(frozen=True)
class SchedulerPorts:
    """What the scheduler asks the other stages and what it tells them (None: nobody listens)."""

    watched: Callable[[str], bool] = _nobody  # someone watches the camera's annotated stream
    objects_moving: Callable[[str], bool] = _nobody  # a tracked object of the camera still moves
    on_detections: Callable[[Camera, Frame, tuple[int, int], list[Detection]], None] | None = None
    on_held: Callable[[Camera, float], None] | None = None  # a held frame: what was seen is still there
    on_motion: Callable[[Camera, bool, float], None] | None = None  # the debounced motion state changed
    on_batch: Callable[[int, float], None] | None = None  # frames, seconds: per inference call


class DetectionScheduler:
    """Prepares, batches and publishes every camera's frames.

    Args:
        hub: the cameras.
        pool: the local detector workers and the frame pool (no workers with a remote detector).
        stall_timeout_s: a local inference call running longer is given up and its worker replaced.
        jpeg_quality: of the annotated frames.
        remote: the shared inference service's client, instead of local workers.
        motion: the motion config of a camera (None: no gate, every frame goes to the detector).
    """

    def __init__(self, hub: CameraHub, pool: DetectorPool, stall_timeout_s: float, jpeg_quality: int = 80,
                 remote: AsyncDetector | None = None,
                 motion: Callable[[str], MotionConfig] | None = None, ports: SchedulerPorts | None = None) -> None:
        self.hub = hub
        self.pool = pool
        # where batches go: the remote service's client, or the pool's workers
        self.path: DetectionPath = RemotePath(remote) if remote is not None else LocalPath(pool, stall_timeout_s)
        self.stall_timeout_s = stall_timeout_s
        self.jpeg_quality = jpeg_quality
        self.motion_for = motion
        # what draws the boxes and puts frames on the annotated channels
        self.publisher = AnnotatedPublisher(pool.frames, lambda: self.drawer, lambda camera_id: self.watched(camera_id),
                                            jpeg_quality)
        self.motion_masks: Callable[[str], list[Any]] = lambda camera_id: []
        self.batch_sizes: deque[int] = deque(maxlen=200)
        self.batch_ms: deque[float] = deque(maxlen=200)
        self.batches = 0  # inference calls answered
        self.undetected = 0  # frames published without detection because the remote detector was away
        self._tick = 0
        self._jobs: set[asyncio.Task[None]] = set()
        self._bad_frames = ThrottledLog(log)
        self._failures = ThrottledLog(log)
        self._costly = ThrottledLog(log, interval_s=30.0)
        # per Camera object, so a forgotten camera's state goes with it
        self.cameras: weakref.WeakKeyDictionary[Camera, CameraPipeline] = weakref.WeakKeyDictionary()
        # what the scheduler asks the other stages and tells them (SchedulerPorts)
        ports = ports or SchedulerPorts()
        self.watched = ports.watched
        self.objects_moving = ports.objects_moving
        self.on_detections = ports.on_detections
        self.on_held = ports.on_held
        self.on_motion = ports.on_motion
        self.on_batch = ports.on_batch

    @classmethod
    def from_config(cls, hub: CameraHub, pool: DetectorPool, config: Config,
                    remote: AsyncDetector | None = None, ports: SchedulerPorts | None = None) -> DetectionScheduler:
        """The scheduler with the detect section's limits and each camera's motion settings."""
        d = config.detect
        scheduler = cls(hub, pool, d.stall_timeout_s, d.jpeg_quality, remote, config.motion_for, ports)
        scheduler.motion_masks = lambda camera_id: masks_for(config.motion, camera_id)
        return scheduler

    # --- state and figures ---------------------------------------------------------------------------

    @property
    def detector(self) -> bool:
        """Whether there is a detector at all (not `--model none`)."""
        return self.path.detects

    def of(self, cam: Camera) -> CameraPipeline:
        """The scheduler's state of `cam`."""
        state = self.cameras.get(cam)
        if state is None:
            motion = None
            if self.detector:  # without a model there is nothing to gate; without a config, every frame goes
                motion = self.motion_for(cam.id) if self.motion_for is not None else MotionConfig(enabled=False)
            state = self.cameras[cam] = CameraPipeline(motion, self.motion_masks(cam.id))
        return state

    def _state(self, camera_id: str) -> CameraPipeline | None:
        cam = self.hub.get(camera_id)
        return None if cam is None else self.cameras.get(cam)

    def busy(self, camera_id: str) -> bool:
        """Whether a frame of this camera is being prepared, waits for the detector or is detected."""
        state = self._state(camera_id)
        return state is not None and state.busy

    def latest(self, camera_id: str) -> tuple[Frame | None, list[Detection]]:
        """The camera's latest detected frame and its detections."""
        state = self._state(camera_id)
        return (state.detections_frame, state.detections) if state else (None, [])

    def camera_figures(self, camera_id: str) -> dict[str, Any]:
        """The scheduler's part of what /api/cameras shows for a camera."""
        state = self._state(camera_id)
        if state is None:
            return {"frames_detected": 0, "detect_errors": 0, "inference_ms": None, "boxes_age_s": None,
                    "motion": None}
        return state.figures(time.monotonic())

    def lagging(self, now: float) -> dict[str, str]:
        """Connected cameras whose frames arrive but are not published, or not detected, for LAG_S, with the cause."""
        out = {}
        for cam in self.hub:
            if cam.connected and (why := lag(cam, self.cameras.get(cam), self.path.stalled, now)) is not None:
                out[cam.id] = why
        return out

    @property
    def state(self) -> str:
        """ok, stalled (a local detector hung) or degraded (the remote one is away), as /healthz shows it."""
        return self.path.state

    @property
    def reason(self) -> str | None:
        """Why the state is not ok (the remote detector's reason), if known."""
        return self.path.reason

    @property
    def drawer(self) -> Detector | AsyncDetector | None:
        """What draws boxes: the remote detector's draw (local), or a loaded local detector."""
        return self.path.drawer

    def figures(self) -> dict[str, Any]:
        """Backend, device, precision, batch size in use, and recent batch figures."""
        info = self.path.info
        sizes, ms = self.batch_sizes, self.batch_ms
        out: dict[str, Any] = {
            "backend": info.backend if info else "none",
            "device": info.device if info else None,
            "precision": info.precision if info else None,
            "max_batch": self.max_batch,
            "mean_batch": round(sum(sizes) / len(sizes), 2) if sizes else None,
            "batch_ms": round(sum(ms) / len(ms), 1) if ms else None,
        }
        out.update(self.path.figures(self.undetected))
        return out

    @property
    def max_batch(self) -> int:
        """Frames per inference call."""
        return self.path.max_batch

    # --- the loop -----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Prepare, dispatch and publish frames until cancelled; an idle camera costs nothing."""
        waiting = self.hub.frame_waiting
        try:
            while True:
                try:
                    async with asyncio.timeout(TICK_S):
                        await waiting.wait()
                except TimeoutError:
                    self._tick_motion()
                waiting.clear()
                self._dispatch()
        finally:
            await cancel_and_wait(*self._jobs)

    def _dispatch(self) -> None:
        now = time.monotonic()
        for cam in self.hub:
            if not cam.slot.full:
                continue
            state = self.of(cam)
            if state.preparing:
                continue
            if now < state.not_before:
                held = cam.slot.waiting
                if held is not None and held.seq != state.throttled_seq:  # each frame once, however often it is passed
                    state.throttled += 1
                    state.throttled_seq = held.seq
                continue
            frame = cam.slot.take()
            assert frame is not None
            state.preparing = True
            self._spawn(self._prepare(cam, state, frame))
        self._dispatch_batches()

    def _spawn(self, coro: Any) -> None:
        job = asyncio.ensure_future(coro)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _in_pool(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool.frames, fn, *args)

    # --- preparation -----------------------------------------------------------------------------------

    async def _prepare(self, cam: Camera, state: CameraPipeline, frame: Frame) -> None:
        local = self.path.detects and self.path.decodes
        # the picture is needed to draw boxes for a viewer, or (no model) to refuse a frame that does not decode
        decode = not self.detector or (self.watched(cam.id) and bool(state.detections))
        try:
            prepared = await self._in_pool(prepare, state, frame, cam.size, self.objects_moving(cam.id), decode, local)
        except BaseException:
            state.preparing = False
            raise
        finally:
            self.hub.frame_waiting.set()
        now = time.monotonic()
        if state.finished(prepared.cost_s, now):
            self._costly.warning(cam.id, "camera %s: a frame took %.0f ms of CPU to prepare; taking at most one "
                                 "every %.1f s from it", cam.id, prepared.cost_s * 1000, state.not_before - now)
            asyncio.get_running_loop().call_at(asyncio.get_running_loop().time() + state.not_before - now,
                                               self.hub.frame_waiting.set)
        if prepared.error is not None:
            cam.reject("undecodable")
            self._bad_frames.warning(cam.id, "camera %s: frame rejected: %s", cam.id, prepared.error)
            return
        if prepared.motion is not None and state.switch is not None:
            self._motion_state(cam, state, state.switch.update(frame.steady, prepared.motion.motion), frame.steady)
        if prepared.detect is None or not self.detector:
            await self.publisher.publish(cam, frame, prepared.image, state.detections)
            if self.detector and self.on_held is not None and frame.steady - state.held_at >= HELD_EVERY_S:
                state.held_at = frame.steady
                self.on_held(cam, frame.steady)
            return
        await self._to_detector(cam, state, prepared)

    def _motion_state(self, cam: Camera, state: CameraPipeline, changed: bool | None, when: float) -> None:
        if changed is not None and self.on_motion is not None:
            self.on_motion(cam, changed, when)

    def _tick_motion(self) -> None:
        """Motion switches turn off after their delay even when a camera sends nothing."""
        now = self.hub.clock()
        for cam, state in list(self.cameras.items()):
            if state.switch is not None:
                self._motion_state(cam, state, state.switch.update(now, False), now)

    async def _to_detector(self, cam: Camera, state: CameraPipeline, prepared: Prepared) -> None:
        """A frame the gate sends to the detector: now if it has room (published after), else published and queued."""
        refusal = self.path.refusal()
        if refusal == "unavailable":  # the remote detector is away: nothing waits for it
            self.undetected += 1
            await self.publisher.publish(cam, prepared.frame, prepared.image, state.detections)
            return
        if refusal == "stalled":
            await self._publish_marked(cam, state, prepared.frame)
            return
        if state.wanting_since is None:
            state.wanting_since = time.monotonic()
        room = not state.detecting and self.path.free()
        state.pending = prepared
        if not room:  # detection falls behind; the stream does not
            prepared.published = True
            await self.publisher.publish(cam, prepared.frame, prepared.image, state.detections)
        self._dispatch_batches()

    # --- batches -----------------------------------------------------------------------------------------

    def _dispatch_batches(self) -> None:
        while True:
            # a frame held back from the stream for its own boxes goes first, then the least recently served
            waiting = sorted(((c, s) for c, s in self.cameras.items() if s.pending is not None and not s.detecting),
                             key=lambda cs: (cs[1].pending.published, cs[1].last_dispatch))  # type: ignore[union-attr]
            if not waiting:
                return
            if not self.path.free():
                return
            batch = []
            for cam, state in waiting[: self.max_batch]:
                self._tick += 1
                state.last_dispatch, state.detecting = self._tick, True
                item, state.pending = state.pending, None
                assert item is not None
                batch.append((cam, state, item))
            self._spawn(self._run(batch, self.path.submit([item for _, _, item in batch])))

    async def _run(self, batch: Batch, outcome: Awaitable[Outcome]) -> None:
        """One inference call; the cameras stay out of batches until its answer."""
        done = await outcome
        if done.kind == "detected":
            await self._detected(batch, done.results, done.ms)
        elif done.kind == "failed":  # publish the frames as they came
            await self._failed(batch, f"detector failed: {done.error}")
        elif done.kind == "stalled":  # the late result is ignored; the worker is being replaced
            for cam, state, item in batch:
                state.detecting = False
                if not item.published:
                    await self._publish_marked(cam, state, item.frame)
        else:  # unavailable: the frames go out with the latest boxes
            self.undetected += len(batch)
            for cam, state, item in batch:
                state.detecting, state.wanting_since = False, None
                if not item.published:
                    await self.publisher.publish(cam, item.frame, item.image, state.detections)

    async def _publish_marked(self, cam: Camera, state: CameraPipeline, frame: Frame) -> None:
        state.detect_errors += 1
        self._failures.warning(cam.id, "camera %s: frame published unannotated: %s", cam.id, STALLED_TEXT)
        await self.publisher.publish_marked(cam, frame)

    async def _failed(self, batch: Batch, error: str) -> None:
        for cam, state, item in batch:
            state.detecting = False
            state.detect_errors += 1
            self._failures.warning(cam.id, "camera %s: frame published unannotated: %s", cam.id, error)
            if not item.published:
                await self.publisher.publish(cam, item.frame, None, [])
        self.hub.frame_waiting.set()

    async def _detected(self, batch: Batch, results: list[list[Detection]], ms: float) -> None:
        self.batches += 1
        self.batch_sizes.append(len(batch))
        self.batch_ms.append(ms)
        if self.on_batch is not None:
            self.on_batch(len(batch), ms / 1000)
        now = time.monotonic()
        for (cam, state, item), detections in zip(batch, results):
            state.detecting, state.wanting_since = False, None
            state.frames_detected += 1
            state.inference_ms.append(ms)
            state.detections, state.detections_frame, state.detections_at = detections, item.frame, now
            if self.on_detections is not None:
                image = item.image
                size = (image.shape[1], image.shape[0]) if image is not None else (cam.size or (0, 0))
                self.on_detections(cam, item.frame, size, detections)
        self.hub.frame_waiting.set()  # these cameras, and the detector's room, are free again
        await asyncio.gather(*(self.publisher.publish(cam, item.frame, item.image, dets)
                               for (cam, _, item), dets in zip(batch, results) if not item.published))

    async def annotated_latest(self, cam: Camera) -> Frame | None:
        """The camera's latest annotated frame, with the latest boxes drawn now if nobody watched it."""
        state = self.cameras.get(cam)
        return await self.publisher.latest(cam, state.detections if state else [])

