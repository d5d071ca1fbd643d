"""Detector workers: one thread and one model instance each, replaced when a call hangs."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np

from ..supervise import cancel_and_wait
from .base import BackendInfo, Detection, Detector, bounded
from .cores import usable_cores

log = logging.getLogger(__name__)

# Batches handed to one worker at once: the one inferring and the next, queued in its thread, so
# the thread goes from one batch to the next without waiting for the event loop in between.
WORKER_QUEUE = 2
_worker_numbers = itertools.count(1)


class DetectorWorker:
    """One thread with its own model instance (ultralytics models are not thread-safe)."""

    def __init__(self) -> None:
        self.name = f"detect-{next(_worker_numbers)}"
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        self.detector: Detector | None = None
        self.ready = False
        self.inflight = 0  # batches submitted and not yet returned

    def abandon(self) -> None:
        """Give up on a hung thread: no more work for it; it ends if its call ever returns."""
        self.ready = False
        self.executor.shutdown(wait=False, cancel_futures=True)


class InferenceCall:
    """One batch queued on a worker: its future, and when the worker thread started it."""

    future: asyncio.Future[list[list[Detection]]]
    started: float | None = None  # time.monotonic(); None while queued behind another batch


class DetectorPool:
    """`size` inference workers, plus a thread pool for the work around inference.

    Decode, draw and encode run in `frames` (one thread per core: OpenCV releases the GIL), so
    they overlap with inference. A stalled worker is replaced by a fresh one with a fresh model.
    """

    def __init__(self, factory: Callable[[], Detector] | None, size: int) -> None:
        self.factory = factory
        self.size = size
        self.workers: list[DetectorWorker] = []
        self.abandoned: list[str] = []  # names of worker threads given up on in a stall
        self.stalls = 0
        self.frames = ThreadPoolExecutor(max_workers=max(2, usable_cores()), thread_name_prefix="frames")
        self._loading: set[asyncio.Task[None]] = set()

    @property
    def passthrough(self) -> bool:
        """No model: frames are only checked and passed on."""
        return self.factory is None

    async def start(self) -> None:
        """Create every worker and load its model in its own thread. Raises ModelLoadError."""
        if self.passthrough:
            return
        for _ in range(self.size):
            worker = DetectorWorker()
            self.workers.append(worker)
            await self._load(worker)
        info = self.info
        if info is not None:
            log.info("detector: %s on %s, %s, up to %d frames per inference",
                     info.backend, info.device, info.precision, info.max_batch)

    async def _load(self, worker: DetectorWorker) -> None:
        assert self.factory is not None
        worker.detector = await asyncio.get_running_loop().run_in_executor(worker.executor, self.factory)
        worker.ready = True

    @property
    def info(self) -> BackendInfo | None:
        """How the loaded detector runs (None in pass-through or before loading)."""
        detector = self.drawer
        return getattr(detector, "info", None)

    @property
    def drawer(self) -> Detector | None:
        """A loaded detector to draw boxes with (drawing is thread-safe; inference is not)."""
        return next((w.detector for w in self.workers if w.detector is not None), None)

    @property
    def max_batch(self) -> int:
        """Frames per inference call: the backend's choice, 1 without a model."""
        info = self.info
        return max(1, info.max_batch) if info is not None else 1

    @property
    def stalled(self) -> bool:
        """True from a stall until its replacement worker is ready."""
        return any(not w.ready for w in self.workers)

    def free_worker(self) -> DetectorWorker | None:
        """A ready worker with nothing to do, if any."""
        ready = [w for w in self.workers if w.ready and w.inflight < WORKER_QUEUE]
        return min(ready, key=lambda w: w.inflight, default=None)

    def release(self, worker: DetectorWorker) -> None:
        """The worker finished a call."""
        worker.inflight -= 1

    def submit(self, worker: DetectorWorker, images: Sequence[np.ndarray]) -> InferenceCall:
        """Queue one batched inference on the worker's thread."""
        detector = worker.detector
        assert detector is not None
        call = InferenceCall()

        def run() -> list[list[Detection]]:
            call.started = time.monotonic()
            results = detector.detect(images)
            if len(results) != len(images):  # the scheduler refuses the batch
                return results
            return [bounded(list(d), im.shape[1], im.shape[0]) for d, im in zip(results, images)]

        call.future = asyncio.get_running_loop().run_in_executor(worker.executor, run)
        return call

    async def result(self, call: InferenceCall, stall_timeout_s: float) -> list[list[Detection]] | None:
        """The call's result; None when it ran past the stall timeout or was dropped with a hung worker."""
        while True:
            started = call.started
            # a call queued behind another one is timed from when it starts, not from when it was queued
            timeout = stall_timeout_s - (time.monotonic() - started if started is not None else 0)
            try:
                return await asyncio.wait_for(asyncio.shield(call.future), max(timeout, 0))
            except TimeoutError:
                if call.started is not None and time.monotonic() - call.started >= stall_timeout_s:
                    return None
            except asyncio.CancelledError:
                if call.future.cancelled():  # never ran: its worker was abandoned while it waited
                    return None
                raise

    def replace(self, worker: DetectorWorker) -> None:
        """Abandon a hung worker and start loading a replacement in the background."""
        self.stalls += 1
        worker.abandon()
        self.abandoned.append(worker.name)
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

    def hung_threads_alive(self) -> bool:
        """Whether a thread given up on in a stall still runs (it would block interpreter exit)."""
        names = set(self.abandoned)
        return any(t.name.rsplit("_", 1)[0] in names and t.is_alive() for t in threading.enumerate())

    async def stop(self) -> None:
        """Stop loading, let running calls finish in their threads, start no new ones."""
        await cancel_and_wait(*self._loading)
        for worker in self.workers:
            worker.executor.shutdown(wait=False, cancel_futures=True)
        self.frames.shutdown(wait=False, cancel_futures=True)
