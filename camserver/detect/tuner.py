"""`detect.precision = "auto"`: measure every precision on this machine once, in the background, and switch.

After start-up, while the runtime's default serves, one thread compiles each candidate (f32, bf16,
fp16 where the CPU has them, int8 where a calibrated model exists) with one inference thread, checks
it against f32 on held-out frames (the cameras' latest frames, filled up with synthetic scenes) and
times it in short chunks, interleaved, pausing while any camera's detection lags; the whole pass
stops at DEADLINE_S. The fastest candidate that passes the gate (tuning.py) is compiled for each
worker and installed on the worker's own thread between two inferences, so no frame is dropped.
The result is cached by model, shape, CPU, runtime and threads, so the next start switches at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from .backends import openvino as ov
from .backends.tuned import tuning_folders
from .tuning import (
    AGREEMENT_MIN,
    BASELINE,
    MATCH_IOU,
    SCORE_DIFF_MAX,
    Candidate,
    TuningCache,
    agreement,
    cache_key,
    candidates_of,
    choose,
    result_of,
    synthetic_frames,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
START_DELAY_S = 5.0  # after start-up: the first frames are served by the default first
DEADLINE_S = 120.0  # the whole pass, pauses included
ROUNDS = 5  # timed chunks per candidate, interleaved so that a load spike hits every candidate alike
CHUNK = 4  # inferences per timed chunk (plus one untimed)
HELD_OUT = 8  # frames the gate compares on
PAUSE_S = 0.5


def letterboxed(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A BGR image as the model's (1, 3, h, w) float input: scaled to fit, padded grey, RGB, 0..1."""
    h, w = shape
    scale = min(h / image.shape[0], w / image.shape[1])
    nh, nw = max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))
    canvas = np.full((h, w, 3), 114, np.uint8)
    top, left = (h - nh) // 2, (w - nw) // 2
    canvas[top:top + nh, left:left + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(canvas[:, :, ::-1].transpose(2, 0, 1)[None], np.float32) / 255.0


def held_out(jpegs: Sequence[bytes], count: int = HELD_OUT) -> list[np.ndarray]:
    """The cameras' latest frames, decoded, filled up with synthetic scenes (tuning.synthetic_frames)."""
    images = [img for j in jpegs[:count] if (img := cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR))
              is not None]
    return images + synthetic_frames(count - len(images))


def detections(compiled: Any, tensors: Sequence[np.ndarray], conf: float, iou: float) -> list[np.ndarray]:
    """Each input's detections through NMS: rows of x1, y1, x2, y2, score, class."""
    import torch
    from ultralytics.utils.nms import non_max_suppression

    request = compiled.create_infer_request()
    out = []
    for x in tensors:
        raw = next(iter(request.infer({0: x}).values()))
        out.append(non_max_suppression(torch.from_numpy(np.array(raw)), conf, iou)[0].numpy())
    return out


def timed_chunk(request: Any, tensors: Sequence[np.ndarray], n: int = CHUNK) -> float:
    """ms per frame of `n` inferences (after one untimed, so a cold cache is not counted)."""
    request.infer({0: tensors[0]})
    started = time.perf_counter()
    for i in range(n):
        request.infer({0: tensors[i % len(tensors)]})
    return (time.perf_counter() - started) / n * 1000


class PrecisionTuner:
    """The background pass of `detect.precision = "auto"` for the OpenVINO workers of a pool.

    Args:
        folders: precision -> its IR folder (int8 only where a calibrated model exists).
        workers: the pool's workers (each `.detector` an OpenVINODetector, `.executor` its thread).
        lagging: whether a camera's detection lags now (the pass waits while it does).
        jpegs: the cameras' latest frames, for the gate.
        cache: where results are kept.
    """

    def __init__(self, folders: dict[str, Path], conf: float, iou: float, threads: int, workers: Callable[[], list[Any]],
                 lagging: Callable[[], bool], jpegs: Callable[[], list[bytes]], cache: TuningCache,
                 start_delay_s: float | None = None, deadline_s: float = DEADLINE_S) -> None:
        self.folders = folders
        self.conf, self.iou, self.threads = conf, iou, threads
        self.workers, self.lagging, self.jpegs, self.cache = workers, lagging, jpegs, cache
        self.start_delay_s, self.deadline_s = start_delay_s, deadline_s
        self.state = "waiting"  # waiting, measuring, switching, done, failed
        self.candidates: list[Candidate] = []
        self.winner: str | None = None
        self.why: str | None = None
        self.cached = False
        self.elapsed_s: float | None = None
        self.paused_s = 0.0
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="precision-tuning")

    def figures(self) -> dict[str, Any]:
        """What /healthz `detection.tuning` shows: the state, every candidate's figures, the winner and why."""
        return {"state": self.state, "winner": self.winner, "why": self.why, "cached": self.cached,
                "elapsed_s": self.elapsed_s, "paused_s": round(self.paused_s, 1),
                "gate": {"agreement_min": AGREEMENT_MIN, "score_diff_max": SCORE_DIFF_MAX, "match_iou": MATCH_IOU},
                "candidates": [c.figures() for c in self.candidates]}

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.thread, fn, *args)

    async def run(self) -> None:
        """Tune once, switch, then wait until cancelled (a failure is logged; the default keeps serving)."""
        try:
            await asyncio.sleep(START_DELAY_S if self.start_delay_s is None else self.start_delay_s)
            await self.tune()
        except Exception:
            self.state = "failed"
            log.exception("precision tuning failed; the runtime's default precision keeps serving")
        finally:
            self.thread.shutdown(wait=False, cancel_futures=True)
        await asyncio.Event().wait()

    async def tune(self) -> None:
        """Measure (or read the cached result), choose, and install the winner in every worker."""
        started = time.monotonic()
        if not all(isinstance(w.detector, ov.OpenVINODetector) for w in self.workers()):
            self.state, self.why = "off", "the detector is not OpenVINO (its export or runtime failed)"
            return
        key = await self._in_thread(self._key)
        cached = self.cache.load(key)
        if cached is not None:
            self.candidates, self.winner, self.why, self.cached = candidates_of(cached), cached["winner"], cached["why"], True
        else:
            self.state = "measuring"
            await self._measure(started)
            winner, why = choose(self.candidates)
            if winner is None:  # the deadline came before f32 was timed once: nothing to choose, nothing to keep
                self.state, self.why = "done", "ran out of time while detection lagged; the default keeps serving"
                self.elapsed_s = round(time.monotonic() - started, 1)
                log.warning("precision tuning: %s (measured again next start)", self.why)
                return
            self.winner, self.why = winner.precision, why
            self.cache.save(key, result_of(self.candidates, winner, why, time.monotonic() - started))
        self.state = "switching"
        await self._switch(self.winner)
        self.elapsed_s = round(time.monotonic() - started, 1)
        self.state = "done"
        log.info("precision tuning: %s%s; %s", self.why, " (cached)" if self.cached else "",
                 ", ".join(f"{c.precision} {c.ms} ms" if c.ms else f"{c.precision} skipped: {c.skipped}"
                           for c in self.candidates))

    def _key(self) -> str:
        int8 = self.folders.get("int8")
        return cache_key(self.folders[BASELINE].name, int8.name if int8 else None, ov.cpu_model(),
                         ov.cpu_capabilities(), ov.runtime_version(), self.threads)

    def _compile_candidates(self) -> dict[str, Any]:
        """Each candidate compiled with one thread, or skipped with the reason; f32 first."""
        capabilities = ov.cpu_capabilities()
        compiled: dict[str, Any] = {}
        for precision in ov.PRECISIONS:
            candidate = Candidate(precision)
            self.candidates.append(candidate)
            if ov.CAPABILITY[precision] not in capabilities:
                has = ", ".join(c for c in capabilities if c in ov.CAPABILITY.values())
                candidate.skipped = f"no {ov.CAPABILITY[precision]} on this CPU (it has {has})"
            elif precision not in self.folders:
                candidate.skipped = "no calibrated model (python -m camserver.detect.calibrate)"
            else:
                model = ov.compile_ir(self.folders[precision], precision, 1)
                candidate.executed = ov.executed(model)["precision"]
                if precision != BASELINE and candidate.executed == "fp32":
                    candidate.skipped = "the CPU plugin runs it as fp32"
                else:
                    compiled[precision] = model
        return compiled

    async def _measure(self, started: float) -> None:
        compiled = await self._in_thread(self._compile_candidates)
        tensors = await self._in_thread(lambda: [letterboxed(im, self._shape(compiled)) for im in held_out(self.jpegs())])
        reference = await self._in_thread(detections, compiled[BASELINE], tensors, self.conf, self.iou)
        by_name = {c.precision: c for c in self.candidates}
        for precision, model in compiled.items():
            if precision != BASELINE:
                found = await self._in_thread(detections, model, tensors, self.conf, self.iou)
                by_name[precision].agreement, by_name[precision].score_diff = agreement(reference, found)
        requests = {p: m.create_infer_request() for p, m in compiled.items()}
        for _ in range(ROUNDS):
            for precision, request in requests.items():
                if not await self._may_run(started):
                    return
                by_name[precision].samples_ms.append(await self._in_thread(timed_chunk, request, tensors))

    @staticmethod
    def _shape(compiled: dict[str, Any]) -> tuple[int, int]:
        dims = compiled[BASELINE].input(0).get_shape()
        return int(dims[2]), int(dims[3])

    async def _may_run(self, started: float) -> bool:
        """False past the deadline; waits while a camera's detection lags."""
        while time.monotonic() - started < self.deadline_s:
            if not self.lagging():
                return True
            self.paused_s += PAUSE_S
            await asyncio.sleep(PAUSE_S)
        log.warning("precision tuning stopped at its %.0f s limit; choosing among what was measured", self.deadline_s)
        return False

    async def _switch(self, precision: str) -> None:
        """Compile the winner for each worker (off the loop) and install it on the worker's own thread."""
        loop = asyncio.get_running_loop()
        for worker in self.workers():
            detector = worker.detector
            if detector is None or not worker.ready:
                continue
            if detector.executed.get("requested") == precision:
                continue
            model = await self._in_thread(ov.compile_ir, self.folders[precision], precision, self.threads)
            before = detector.info.precision
            info = await loop.run_in_executor(worker.executor, detector.install, model, precision)
            log.info("detector %s: now %s (%s), was %s", worker.name, info.precision,
                     ", ".join(f"{k} {v}" for k, v in detector.executed.items()), before)


def precision_tuner(d: Any, workers: Callable[[], list[Any]], lagging: Callable[[], bool],
                    jpegs: Callable[[], list[bytes]], **kwargs: Any) -> PrecisionTuner | None:
    """The tuner `detect.precision = "auto"` asks for with the openvino backend on an exportable model, else None."""
    from .backends import exportable, resolve_backend

    if d.precision != "auto" or not exportable(d.model) or not ov.available() or resolve_backend(d) != "openvino":
        return None
    folders, path = tuning_folders(d)
    return PrecisionTuner(folders, d.conf, d.iou, d.threads, workers, lagging, jpegs, TuningCache(path), **kwargs)
