"""The batching scheduler: the newest frame of every waiting camera, one inference per batch.

A batch takes the newest waiting frame of up to `max_batch` cameras, least recently served
first, never two frames of one camera. It never waits on a timer to fill up: a lone camera goes
alone. The stages overlap: while batch k infers on the detector thread, batch k+1 decodes and
batch k-1 draws and encodes in the frame pool. Boxes are drawn only for a camera whose annotated
stream has a viewer; a snapshot draws on demand.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from concurrent.futures import Future
from typing import Any, Awaitable, Callable, TypeVar

import numpy as np

from ..hub import Camera, CameraHub, Frame
from ..logsafe import ThrottledLog
from ..supervise import cancel_and_wait
from .base import Detection, first_line
from .frames import FrameResult, decode_frame, mark_frame, render_frame, render_jpeg
from .pool import DetectorPool, DetectorWorker, InferenceCall

log = logging.getLogger(__name__)

STALLED_TEXT = "detector stalled"
LAG_S = 5.0  # a camera whose frames keep arriving with none processed this long is lagging
POST_BATCHES = 4  # batches between inference and published at once; more make inference wait
T = TypeVar("T")


class DispatchState:
    """The scheduler's own state of one camera: what is in flight, and its latest detections."""

    __slots__ = ("in_pipeline", "awaiting_inference", "last_dispatch", "inference_ms", "detections",
                 "detections_frame", "detect_errors")

    def __init__(self) -> None:
        self.in_pipeline = 0  # frames taken from the slot and not yet published
        self.awaiting_inference = False  # one of them is in a batch that has not reached the model yet
        self.last_dispatch = 0  # scheduler tick of the last frame sent to the detector
        self.inference_ms: deque[float] = deque(maxlen=30)
        self.detections: list[Detection] = []  # of the latest inferred frame
        self.detections_frame: Frame | None = None  # that frame, as the camera sent it
        self.detect_errors = 0  # frames published unannotated because the detector failed or stalled


class DetectionScheduler:
    """Feeds batches of frames to the detector pool and publishes the results.

    While the detector is stalled, frames go to viewers unannotated with a "detector stalled"
    banner instead of waiting.
    """

    def __init__(self, hub: CameraHub, pool: DetectorPool, stall_timeout_s: float, jpeg_quality: int = 80) -> None:
        self.hub = hub
        self.pool = pool
        # per Camera object, so a forgotten camera's state goes with it
        self.cameras: weakref.WeakKeyDictionary[Camera, DispatchState] = weakref.WeakKeyDictionary()
        # whether someone watches the camera's annotated stream (boxes are drawn only then)
        self.watched: Callable[[str], bool] = lambda camera_id: False
        self.stall_timeout_s = stall_timeout_s
        self.jpeg_quality = jpeg_quality
        self.batch_sizes: deque[int] = deque(maxlen=200)
        self.batch_ms: deque[float] = deque(maxlen=200)
        self._tick = 0
        self._preparing = 0  # batches taken but not yet inferring
        self._post = asyncio.Semaphore(POST_BATCHES)
        self._jobs: set[asyncio.Task[None]] = set()
        self._bad_frames = ThrottledLog(log)
        self._failures = ThrottledLog(log)
        # every inferred frame's detections, watched or not (the events stage)
        self.on_detections: Callable[[Camera, Frame, tuple[int, int], list[Detection]], None] | None = None
        self.on_batch: Callable[[int, float], None] | None = None  # frames, seconds: per inference call

    def of(self, cam: Camera) -> DispatchState:
        """The scheduler's state of `cam`."""
        state = self.cameras.get(cam)
        if state is None:
            state = self.cameras[cam] = DispatchState()
        return state

    def _state(self, camera_id: str) -> DispatchState | None:
        cam = self.hub.get(camera_id)
        return None if cam is None else self.cameras.get(cam)

    def busy(self, camera_id: str) -> bool:
        """Whether a frame of this camera is being decoded, inferred or drawn."""
        state = self._state(camera_id)
        return state is not None and state.in_pipeline > 0

    def latest(self, camera_id: str) -> tuple[Frame | None, list[Detection]]:
        """The camera's latest inferred frame and its detections."""
        state = self._state(camera_id)
        return (state.detections_frame, state.detections) if state else (None, [])

    def camera_figures(self, camera_id: str) -> dict[str, Any]:
        """The scheduler's part of what /api/cameras shows for a camera."""
        state = self._state(camera_id)
        ms = state.inference_ms if state else ()
        return {"detect_errors": state.detect_errors if state else 0,
                "inference_ms": round(sum(ms) / len(ms), 1) if ms else None}

    def lagging(self, now: float) -> dict[str, str]:
        """Connected cameras whose frames arrive but none was processed for LAG_S, each with the cause."""
        out = {}
        for cam in self.hub:
            since = cam.waiting_since
            if not cam.connected or since is None or now - since < LAG_S:
                continue
            if self.pool.stalled:
                cause = "the detector is stalled"
            elif self.busy(cam.id):
                cause = "its frame is still in decode or inference"
            else:
                cause = "its frames wait for the detector (saturated)"
            out[cam.id] = f"no frame processed for {now - since:.0f} s: {cause}"
        return out

    @property
    def state(self) -> str:
        """ok or stalled, as /healthz and /api/cameras show it."""
        return "stalled" if self.pool.stalled else "ok"

    def figures(self) -> dict[str, Any]:
        """Backend, device, precision, batch size in use, and recent batch figures."""
        info = self.pool.info
        sizes, ms = self.batch_sizes, self.batch_ms
        return {
            "backend": info.backend if info else "none",
            "device": info.device if info else None,
            "precision": info.precision if info else None,
            "max_batch": self.pool.max_batch,
            "mean_batch": round(sum(sizes) / len(sizes), 2) if sizes else None,
            "batch_ms": round(sum(ms) / len(ms), 1) if ms else None,
        }

    async def run(self) -> None:
        """Dispatch frames until cancelled; an idle camera costs nothing."""
        try:
            while True:
                await self.hub.frame_waiting.wait()
                self.hub.frame_waiting.clear()
                self._dispatch()
        finally:
            await cancel_and_wait(*self._jobs)

    def _dispatch(self) -> None:
        # One batch prepares (decodes) at a time, and only while a worker has room for it (one
        # inferring, one queued behind it): frames taken any earlier would only be older by the
        # time they are inferred; until then they wait in their slots, where newer ones replace them.
        if self._preparing:
            return
        ready = sorted((c for c in self.hub if c.slot.full and not self.of(c).awaiting_inference),
                       key=lambda c: self.of(c).last_dispatch)
        if not ready:
            return
        if self.pool.free_worker() is None and not self.pool.passthrough:
            if self.pool.stalled:
                for cam in ready:  # no model can take frames now: pass them on, marked
                    self._spawn(self._pass_marked(*self._take(cam)))
            return
        batch = [self._take(cam) for cam in ready[: self.pool.max_batch]]
        self._preparing += 1
        self._spawn(self._run_batch(batch))

    def _take(self, cam: Camera) -> tuple[Camera, Frame]:
        frame = cam.slot.take()
        assert frame is not None
        self._tick += 1
        state = self.of(cam)
        state.last_dispatch = self._tick
        state.in_pipeline += 1
        state.awaiting_inference = True
        return cam, frame

    def _spawn(self, coro: Awaitable[None]) -> None:
        job = asyncio.ensure_future(coro)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _in_pool(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool.frames, fn, *args)

    async def _run_batch(self, batch: list[tuple[Camera, Frame]]) -> None:
        try:
            images = await asyncio.gather(*(self._in_pool(decode_frame, frame.jpeg) for _, frame in batch))
            decoded: list[tuple[Camera, Frame, np.ndarray]] = []
            for (cam, frame), image in zip(batch, images):
                if image is None:
                    self._done(cam)
                    self._publish(cam, frame, FrameResult(None, error="JPEG did not decode"))
                else:
                    decoded.append((cam, frame, image))
            worker = None
            if decoded and not self.pool.passthrough:
                await self._post.acquire()
                worker = await self.pool.acquire()
                if worker is None:
                    self._post.release()
        finally:
            self._preparing -= 1
            for cam, _ in batch:
                self.of(cam).awaiting_inference = False
            self.hub.frame_waiting.set()
        if not decoded:
            return
        if self.pool.passthrough:
            for cam, frame, _ in decoded:
                self._done(cam)
                self._publish(cam, frame, FrameResult(frame.jpeg))
            return
        if worker is None:  # stalled meanwhile: no model can take them
            await asyncio.gather(*(self._pass_marked(cam, frame) for cam, frame, _ in decoded))
            return
        try:
            await self._infer(worker, decoded)
        finally:
            self._post.release()

    async def _await_call(self, call: InferenceCall) -> list[list[Detection]] | None:
        """The call's result; None when it ran past the stall timeout or was dropped with a hung worker."""
        while True:
            started = call.started
            # a call queued behind another one is timed from when it starts, not from when it was queued
            timeout = self.stall_timeout_s - (time.monotonic() - started if started is not None else 0)
            try:
                return await asyncio.wait_for(asyncio.shield(call.future), max(timeout, 0))
            except TimeoutError:
                if call.started is not None and time.monotonic() - call.started >= self.stall_timeout_s:
                    return None
            except asyncio.CancelledError:
                if call.future.cancelled():  # never ran: its worker was abandoned while it waited
                    return None
                raise

    async def _infer(self, worker: DetectorWorker, decoded: list[tuple[Camera, Frame, np.ndarray]]) -> None:
        call = self.pool.submit(worker, [image for _, _, image in decoded])
        try:
            results = await self._await_call(call)
            if results is not None and len(results) != len(decoded):
                raise RuntimeError(f"detector returned {len(results)} results for {len(decoded)} frames")
        except Exception as exc:  # the detector raised: publish the frames as they came
            self.pool.release(worker)
            log.debug("detector failed on a batch", exc_info=True)
            for cam, frame, _ in decoded:
                self._done(cam)
                self._publish(cam, frame, FrameResult(frame.jpeg, error=f"detector failed: {first_line(exc)}"))
            return
        if results is None:
            if worker in self.pool.workers:  # the first of its calls to notice: replace the worker
                log.error("detector %s has not returned for %.1f s: replacing it", worker.name, self.stall_timeout_s)
                self.pool.replace(worker)
            call.future.add_done_callback(_ignore_result)
            await asyncio.gather(*(self._pass_marked(cam, frame) for cam, frame, _ in decoded))
            return
        self.pool.release(worker)
        self.hub.frame_waiting.set()  # room for the next batch
        ms = (time.monotonic() - (call.started or time.monotonic())) * 1000
        self.batch_sizes.append(len(decoded))
        self.batch_ms.append(ms)
        if self.on_batch is not None:
            self.on_batch(len(decoded), ms / 1000)
        await asyncio.gather(
            *(self._finish(cam, frame, image, dets, ms) for (cam, frame, image), dets in zip(decoded, results))
        )

    async def _finish(self, cam: Camera, frame: Frame, image: np.ndarray, detections: list[Detection], ms: float) -> None:
        """Record one inferred frame; draw and encode it only if someone watches its annotated stream."""
        try:
            state = self.of(cam)
            state.inference_ms.append(ms)
            state.detections = detections
            state.detections_frame = frame
            cam.processed(time.monotonic())
            if self.on_detections is not None:
                self.on_detections(cam, frame, (image.shape[1], image.shape[0]), detections)
            if self.watched(cam.id):
                drawer = self.pool.drawer
                assert drawer is not None
                jpeg = await self._in_pool(render_frame, drawer, image, detections, self.jpeg_quality)
                if jpeg is not None:
                    self._publish_annotated(cam, Frame(frame.seq, jpeg, frame.received_at, frame.wall_time))
        finally:
            self._done(cam)

    async def annotated_latest(self, cam: Camera) -> Frame | None:
        """The annotated frame for the camera's latest processed frame, drawn now if nobody watched it."""
        current, (source, detections) = cam.annotated.frame, self.latest(cam.id)
        if source is None or (current is not None and current.seq >= source.seq) or self.pool.drawer is None:
            return current
        jpeg = await self._in_pool(render_jpeg, self.pool.drawer, source.jpeg, detections, self.jpeg_quality)
        if jpeg is not None:
            self._publish_annotated(cam, Frame(source.seq, jpeg, source.received_at, source.wall_time))
        return cam.annotated.frame

    def _done(self, cam: Camera) -> None:
        self.of(cam).in_pipeline -= 1
        self.hub.frame_waiting.set()

    async def _pass_marked(self, cam: Camera, frame: Frame) -> None:
        self.of(cam).awaiting_inference = False
        try:
            jpeg = await self._in_pool(mark_frame, frame.jpeg, STALLED_TEXT, self.jpeg_quality)
        finally:
            self._done(cam)
        self._publish(cam, frame, FrameResult(jpeg, error=STALLED_TEXT))

    def _publish(self, cam: Camera, frame: Frame, result: FrameResult) -> None:
        """Publish a frame that needs no drawing: passed through, marked, or unannotated after an error."""
        if result.jpeg is None:
            cam.reject("undecodable")
            self._bad_frames.warning(cam.id, "camera %s: frame rejected: %s", cam.id, result.error)
            return
        if result.error:
            self.of(cam).detect_errors += 1
            self._failures.warning(cam.id, "camera %s: frame published unannotated: %s", cam.id, result.error)
        cam.processed(time.monotonic())
        self._publish_annotated(cam, Frame(frame.seq, result.jpeg, frame.received_at, frame.wall_time))

    @staticmethod
    def _publish_annotated(cam: Camera, out: Frame) -> None:
        current = cam.annotated.frame
        if current is None or out.seq > current.seq:  # batches may finish out of order
            cam.annotated.publish(out)


def _ignore_result(future: Future[Any] | asyncio.Future[Any]) -> None:
    # a hung call that returns after being given up: its result is stale, its error already logged
    if not future.cancelled():
        future.exception()
