"""The two ways a batch reaches a detector: local worker threads, or the remote inference service.

The scheduler asks its `DetectionPath` whether there is room, hands it a batch, and gets back an
`Outcome`: detected (boxes per frame), failed (publish the frames as they came), stalled (a local
call hung; its worker is being replaced) or unavailable (the remote service is away). Everything
the scheduler used to branch on (decoding, health, drawing, figures, room) is a member here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .base import AsyncDetector, BackendInfo, Detection, Detector, DetectorUnavailable, first_line
from .pipeline import Prepared
from .pool import DetectorPool, DetectorWorker

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What became of a batch; `results` and `ms` only when detected, `error` only when failed."""

    kind: Literal["detected", "failed", "stalled", "unavailable"]
    results: list[list[Detection]] = field(default_factory=list)
    ms: float = 0.0
    error: str = ""


class DetectionPath(Protocol):
    """Where batches go: what the scheduler needs to know of a detector, whichever it is."""

    @property
    def detects(self) -> bool:
        """Whether there is a detector at all (not `--model none`)."""
        ...

    @property
    def decodes(self) -> bool:
        """Whether frames are decoded before inference (the remote service takes the JPEGs)."""
        ...

    @property
    def state(self) -> str:
        """ok, stalled or degraded, as /healthz shows it."""
        ...

    @property
    def reason(self) -> str | None:
        """Why the state is not ok, if known."""
        ...

    @property
    def stalled(self) -> bool:
        """Whether a local worker hung and is being replaced."""
        ...

    @property
    def drawer(self) -> Detector | AsyncDetector | None:
        """What draws boxes."""
        ...

    @property
    def info(self) -> BackendInfo | None:
        """Backend, device and precision."""
        ...

    @property
    def max_batch(self) -> int:
        """Frames per inference call."""
        ...

    def refusal(self) -> Literal["stalled", "unavailable"] | None:
        """Why a frame is not queued for the detector now (None: it may be)."""
        ...

    def free(self) -> bool:
        """Whether a batch may be submitted now."""
        ...

    def figures(self, undetected: int) -> dict[str, Any]:
        """What this path adds to the scheduler's figures."""
        ...

    def submit(self, items: Sequence[Prepared]) -> Awaitable[Outcome]:
        """Claim room for the batch now (call only while `free()`); await the outcome later."""
        ...


class LocalPath:
    """Batches of decoded frames to the pool's worker threads; a call running past `stall_timeout_s` is given up."""

    decodes = True

    def __init__(self, pool: DetectorPool, stall_timeout_s: float) -> None:
        self.pool = pool
        self.stall_timeout_s = stall_timeout_s

    @property
    def detects(self) -> bool:
        return not self.pool.passthrough

    @property
    def state(self) -> str:
        return "stalled" if self.pool.stalled else "ok"

    @property
    def reason(self) -> str | None:
        return None

    @property
    def stalled(self) -> bool:
        return self.pool.stalled

    @property
    def drawer(self) -> Detector | None:
        return self.pool.drawer

    @property
    def info(self) -> BackendInfo | None:
        return self.pool.info

    @property
    def max_batch(self) -> int:
        return self.pool.max_batch

    def refusal(self) -> Literal["stalled", "unavailable"] | None:
        return "stalled" if self.pool.stalled else None

    def free(self) -> bool:
        return self.pool.free_worker() is not None

    def figures(self, undetected: int) -> dict[str, Any]:
        return {}

    def submit(self, items: Sequence[Prepared]) -> Awaitable[Outcome]:
        worker = self.pool.free_worker()
        assert worker is not None, "submit without room"
        worker.inflight += 1
        return self._infer(worker, items)

    async def _infer(self, worker: DetectorWorker, items: Sequence[Prepared]) -> Outcome:
        call = self.pool.submit(worker, [item.image for item in items])  # type: ignore[misc]
        try:
            results = await self.pool.result(call, self.stall_timeout_s)
            if results is not None and len(results) != len(items):
                raise RuntimeError(f"detector returned {len(results)} results for {len(items)} frames")
        except Exception as exc:  # the detector raised: the frames go out as they came
            self.pool.release(worker)
            log.debug("detector failed on a batch", exc_info=True)
            return Outcome("failed", error=first_line(exc))
        if results is None:
            if worker in self.pool.workers:  # the first of its calls to notice: replace the worker
                log.error("detector %s has not returned for %.1f s: replacing it", worker.name, self.stall_timeout_s)
                self.pool.replace(worker)
            call.future.add_done_callback(_ignore_result)
            return Outcome("stalled")
        self.pool.release(worker)
        return Outcome("detected", results, (time.monotonic() - (call.started or time.monotonic())) * 1000)


class RemotePath:
    """Batches of JPEGs, undecoded, to the shared inference service's client."""

    detects = True
    decodes = False

    def __init__(self, client: AsyncDetector) -> None:
        self.client = client

    @property
    def state(self) -> str:
        return self.client.state

    @property
    def reason(self) -> str | None:
        return self.client.reason if self.client.state != "ok" else None

    @property
    def stalled(self) -> bool:
        return False

    @property
    def drawer(self) -> AsyncDetector:
        return self.client

    @property
    def info(self) -> BackendInfo:
        return self.client.info

    @property
    def max_batch(self) -> int:
        return max(1, self.client.info.max_batch)

    def refusal(self) -> Literal["stalled", "unavailable"] | None:
        return "unavailable" if self.client.state != "ok" else None

    def free(self) -> bool:
        return self.client.free()

    def figures(self, undetected: int) -> dict[str, Any]:
        return {"remote": self.client.figures(), "frames_undetected": undetected}

    def submit(self, items: Sequence[Prepared]) -> Awaitable[Outcome]:
        return self._run([item.frame.jpeg for item in items])

    async def _run(self, jpegs: list[bytes]) -> Outcome:
        started = time.monotonic()
        try:
            results = await self.client.detect_jpegs(jpegs)
            if len(results) != len(jpegs):
                raise RuntimeError(f"detector returned {len(results)} results for {len(jpegs)} frames")
        except DetectorUnavailable:
            return Outcome("unavailable")
        except Exception as exc:  # the service failed this batch: the frames go out as they came
            log.debug("remote detector failed on a batch", exc_info=True)
            return Outcome("failed", error=first_line(exc))
        return Outcome("detected", results, (time.monotonic() - started) * 1000)


def _ignore_result(future: Future[Any] | Any) -> None:
    # a hung call that returns after being given up: its result is stale, its error already logged
    if not future.cancelled():
        future.exception()
