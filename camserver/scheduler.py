"""Detector workers and the scheduler that feeds them: one inference per frame, fair, stall-proof."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from typing import Callable

from .detect import Detector, FrameResult, annotate_frame, mark_frame
from .hub import Camera, CameraHub, Frame
from .ratelog import ThrottledLog

log = logging.getLogger(__name__)

STALLED_TEXT = "detector stalled"
_worker_numbers = itertools.count(1)
_abandoned_threads: set[str] = set()  # names of worker threads left hanging in a stalled detector


def hung_threads_alive() -> bool:
    """Whether a stalled detector thread is still running (it would block interpreter exit)."""
    return any(t.name.rsplit("_", 1)[0] in _abandoned_threads and t.is_alive() for t in threading.enumerate())


class DetectorWorker:
    """One thread with its own model instance (ultralytics models are not thread-safe)."""

    def __init__(self) -> None:
        self.name = f"detect-{next(_worker_numbers)}"
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        self.detector: Detector | None = None
        self.ready = False
        self.busy = False

    def abandon(self) -> None:
        """Give up on a hung thread: no more work for it; it ends if its call ever returns."""
        _abandoned_threads.add(self.name)
        self.ready = False
        self.executor.shutdown(wait=False, cancel_futures=True)


class DetectorPool:
    """`size` workers; a stalled one is replaced by a fresh worker with a fresh model instance."""

    def __init__(self, factory: Callable[[], Detector] | None, size: int, jpeg_quality: int = 80) -> None:
        self.factory = factory
        self.size = size
        self.jpeg_quality = jpeg_quality
        self.workers: list[DetectorWorker] = []
        self.stalls = 0
        self._loading: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Create every worker and load its model in its own thread. Raises ModelLoadError."""
        for _ in range(self.size):
            worker = DetectorWorker()
            self.workers.append(worker)
            await self._load(worker)

    async def _load(self, worker: DetectorWorker) -> None:
        if self.factory is not None:
            worker.detector = await asyncio.get_running_loop().run_in_executor(worker.executor, self.factory)
        worker.ready = True

    @property
    def stalled(self) -> bool:
        """True from a stall until its replacement worker is ready."""
        return any(not w.ready for w in self.workers)

    def free_worker(self) -> DetectorWorker | None:
        """A ready worker with nothing to do, if any."""
        return next((w for w in self.workers if w.ready and not w.busy), None)

    def submit(self, worker: DetectorWorker, jpeg: bytes) -> asyncio.Future[FrameResult]:
        """Run annotate_frame for one frame on the worker's thread."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(worker.executor, annotate_frame, worker.detector, jpeg, self.jpeg_quality)

    def replace(self, worker: DetectorWorker) -> None:
        """Abandon a hung worker and start loading a replacement in the background."""
        self.stalls += 1
        worker.abandon()
        fresh = DetectorWorker()
        self.workers[self.workers.index(worker)] = fresh
        task = asyncio.create_task(self._load_replacement(fresh))
        self._loading.add(task)
        task.add_done_callback(self._loading.discard)

    async def _load_replacement(self, worker: DetectorWorker) -> None:
        try:
            await self._load(worker)
            log.warning("detector replaced by %s; detection resumes", worker.name)
        except Exception:
            log.error("replacement detector failed to load; frames stay unannotated", exc_info=True)

    async def stop(self) -> None:
        """Stop loading, let running calls finish in their threads, start no new ones."""
        for task in list(self._loading):
            task.cancel()
        for worker in self.workers:
            worker.executor.shutdown(wait=False, cancel_futures=True)


class DetectionScheduler:
    """Takes the newest frame of each camera, fairly, and runs one inference per frame.

    While the detector is stalled, frames go to viewers unannotated with a "detector stalled"
    banner instead of waiting.
    """

    def __init__(self, hub: CameraHub, pool: DetectorPool, stall_timeout_s: float) -> None:
        self.hub = hub
        self.pool = pool
        self.stall_timeout_s = stall_timeout_s
        self._tick = 0
        self._jobs: set[asyncio.Task[None]] = set()
        self._bad_frames = ThrottledLog(log)
        self._failures = ThrottledLog(log)

    @property
    def state(self) -> str:
        """ok or stalled, as /healthz and /api/cameras show it."""
        return "stalled" if self.pool.stalled else "ok"

    async def run(self) -> None:
        """Dispatch frames until cancelled; an idle camera costs nothing."""
        try:
            while True:
                await self.hub.frame_waiting.wait()
                self.hub.frame_waiting.clear()
                self._dispatch()
        finally:
            for job in list(self._jobs):
                job.cancel()
            for job in list(self._jobs):
                with suppress(asyncio.CancelledError):
                    await job

    def _dispatch(self) -> None:
        # Least recently served first, so a busy camera cannot starve a quiet one.
        ready = sorted((c for c in self.hub if c.slot.full and not c.in_detector), key=lambda c: c.last_dispatch)
        for cam in ready:
            worker = self.pool.free_worker()
            if worker is None and not self.pool.stalled:
                break  # all workers busy: frames wait in their slots (newest wins)
            frame = cam.slot.take()
            if frame is None:
                continue
            self._tick += 1
            cam.last_dispatch = self._tick
            cam.in_detector = True
            if worker is not None:
                worker.busy = True  # now, so the next camera in this loop gets another worker
            coro = self._process(cam, frame, worker) if worker else self._pass_marked(cam, frame)
            job = asyncio.create_task(coro)
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)

    async def _process(self, cam: Camera, frame: Frame, worker: DetectorWorker) -> None:
        future = self.pool.submit(worker, frame.jpeg)
        try:
            result = await asyncio.wait_for(asyncio.shield(future), self.stall_timeout_s)
        except TimeoutError:
            log.error("detector %s has not returned for %.1f s: replacing it", worker.name, self.stall_timeout_s)
            future.add_done_callback(_ignore_result)
            self.pool.replace(worker)
            result = await self._marked(frame)
        except Exception as exc:  # the worker itself broke: publish the frame as it came
            log.error("detection worker failed", exc_info=True)
            result = FrameResult(frame.jpeg, error=f"worker failed: {exc!r}")
        finally:
            worker.busy = False
            cam.in_detector = False
            self.hub.frame_waiting.set()
        self._publish(cam, frame, result)

    async def _pass_marked(self, cam: Camera, frame: Frame) -> None:
        try:
            result = await self._marked(frame)
        finally:
            cam.in_detector = False
            self.hub.frame_waiting.set()
        self._publish(cam, frame, result)

    async def _marked(self, frame: Frame) -> FrameResult:
        loop = asyncio.get_running_loop()
        jpeg = await loop.run_in_executor(None, mark_frame, frame.jpeg, STALLED_TEXT, self.pool.jpeg_quality)
        return FrameResult(jpeg, error=STALLED_TEXT)

    def _publish(self, cam: Camera, frame: Frame, result: FrameResult) -> None:
        if result.jpeg is None:
            cam.frames_rejected += 1
            self._bad_frames.warning(cam.id, "camera %s: frame rejected: %s", cam.id, result.error)
            return
        if result.error:
            cam.detect_errors += 1
            self._failures.warning(cam.id, "camera %s: frame published unannotated: %s", cam.id, result.error)
        cam.frames_processed += 1
        if result.inference_ms is not None:
            cam.inference_ms.append(result.inference_ms)
            cam.detections = [d.to_json() for d in result.detections]
            cam.detections_frame = frame
        out = Frame(frame.seq, result.jpeg, frame.received_at, frame.wall_time)
        cam.fps_out.mark(time.monotonic())
        cam.annotated.publish(out)


def _ignore_result(future: Future[FrameResult] | asyncio.Future[FrameResult]) -> None:
    # a hung call that returns after being given up: its result is stale, its error already logged
    if not future.cancelled():
        future.exception()
