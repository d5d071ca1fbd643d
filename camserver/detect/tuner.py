"""`detect.precision = "auto"`: measure every precision on this machine once, in the background, and switch.

After start-up, while the runtime's default serves, one thread compiles each candidate (f32, bf16,
fp16 where the CPU has them, int8 where a calibrated model exists; each in one stream, two streams
with two frames in flight, and batch 2, where the scheduler batches) with the serving threads, checks
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
    verdicts,
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


def batches(tensors: Sequence[np.ndarray], size: int) -> list[np.ndarray]:
    """The tensors stacked `size` at a time (the last group filled up from the start)."""
    return [np.concatenate([tensors[(i + k) % len(tensors)] for k in range(size)]) for i in range(0, len(tensors), size)]


def raw_outputs(runner: Any, tensors: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each input's raw model output (1, ...) through an openvino.Runner (a CompiledModel: one at a time)."""
    size = getattr(runner, "batch", 1)
    out: list[np.ndarray] = []
    for group in batches(tensors, size):
        raw = np.array(next(iter(runner(group).values())))
        out.extend(raw[i:i + 1] for i in range(size))
    return out[:len(tensors)]


def detections(runner: Any, tensors: Sequence[np.ndarray], conf: float, iou: float) -> list[np.ndarray]:
    """Each input's detections through NMS: rows of x1, y1, x2, y2, score, class."""
    import torch
    from ultralytics.utils.nms import non_max_suppression

    return [non_max_suppression(torch.from_numpy(raw), conf, iou)[0].numpy() for raw in raw_outputs(runner, tensors)]


def timed_chunk(runner: Any, tensors: Sequence[np.ndarray], n: int = CHUNK) -> float:
    """ms per frame of `n` frames through `runner` in its mode (after one untimed call, so a cold cache is not counted)."""
    size = getattr(runner, "batch", 1)
    groups = batches([tensors[i % len(tensors)] for i in range(n)], size)
    runner(groups[0])
    started = time.perf_counter()
    for group in groups:
        runner(group)
    return (time.perf_counter() - started) / (len(groups) * size) * 1000


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
                 start_delay_s: float | None = None, deadline_s: float = DEADLINE_S, max_batch: int = 2) -> None:
        self.folders = folders
        self.conf, self.iou, self.threads = conf, iou, threads
        self.workers, self.lagging, self.jpegs, self.cache = workers, lagging, jpegs, cache
        self.start_delay_s, self.deadline_s = start_delay_s, deadline_s
        self.state = "waiting"  # waiting, measuring, switching, done, failed
        self.candidates: list[Candidate] = []
        self.winner: str | None = None
        self.mode = "latency"
        self.modes: tuple[str, ...] = ov.MODES if max_batch >= 2 else ("latency",)  # pairs only where batches are
        self.why: str | None = None
        self.cached = False
        self.elapsed_s: float | None = None
        self.paused_s = 0.0
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="precision-tuning")
        self.first_pass = asyncio.Event()  # set once run()'s pass ended (remeasure() waits for it)

    def figures(self) -> dict[str, Any]:
        """What /healthz `detection.tuning` shows: the state, every candidate's figures, the winner and why."""
        return {"state": self.state, "winner": self.winner, "mode": self.mode, "why": self.why, "cached": self.cached,
                "elapsed_s": self.elapsed_s, "paused_s": round(self.paused_s, 1),
                "gate": {"agreement_min": AGREEMENT_MIN, "score_diff_max": SCORE_DIFF_MAX, "match_iou": MATCH_IOU},
                "candidates": [{**c.figures(), "verdict": v} for c, v in zip(self.candidates, verdicts(
                    self.candidates, next((c for c in self.candidates if (c.precision, c.mode) == (self.winner, self.mode)),
                                          None)), strict=True)]}

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.thread, fn, *args)

    async def run(self) -> None:
        """Tune once, switch, then wait until cancelled (a failure is logged; the default keeps serving)."""
        await self._pass("precision tuning failed; the runtime's default precision keeps serving",
                         START_DELAY_S if self.start_delay_s is None else self.start_delay_s)
        await asyncio.Event().wait()

    async def remeasure(self, int8: Path) -> None:
        """A newly calibrated INT8 model: after the first pass, measure every candidate again with it (a new cache
        key: the INT8 model's name is part of it), choose and switch; a failure leaves the current winner serving."""
        await self.first_pass.wait()
        self.folders["int8"] = int8
        self.candidates, self.cached, self.paused_s = [], False, 0.0
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="precision-tuning")
        await self._pass("precision tuning with the calibrated INT8 model failed; the current precision keeps serving")

    async def _pass(self, failure: str, delay_s: float = 0.0) -> None:
        """One pass (tune()) after `delay_s`: a failure is logged as `failure` and leaves what serves; whatever ends
        it, cancellation at shutdown too, the tuning thread is shut down and first_pass set (remeasure() waits)."""
        try:
            await asyncio.sleep(delay_s)
            await self.tune()
        except Exception:
            self.state = "failed"
            log.exception(failure)
        finally:
            self.thread.shutdown(wait=False, cancel_futures=True)
            self.first_pass.set()  # already set when remeasure() runs: its pass comes after the first

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
            self.mode = str(cached.get("mode", "latency"))
        else:
            self.state = "measuring"
            await self._measure(started)
            winner, why = choose(self.candidates)
            if winner is None:  # the deadline came before f32 was timed once: nothing to choose, nothing to keep
                self.state, self.why = "done", "ran out of time while detection lagged; the default keeps serving"
                self.elapsed_s = round(time.monotonic() - started, 1)
                log.warning("precision tuning: %s (measured again next start)", self.why)
                return
            self.winner, self.mode, self.why = winner.precision, winner.mode, why
            self.cache.save(key, result_of(self.candidates, winner, why, time.monotonic() - started))
        self.state = "switching"
        await self._switch(self.winner, self.mode)
        self.elapsed_s = round(time.monotonic() - started, 1)
        self.state = "done"
        log.info("precision tuning: %s%s; %s", self.why, " (cached)" if self.cached else "",
                 ", ".join(f"{c.name} {c.ms} ms" if c.ms else f"{c.name} skipped: {c.skipped}"
                           for c in self.candidates))

    def _key(self) -> str:
        int8 = self.folders.get("int8")
        return cache_key(self.folders[BASELINE].name, int8.name if int8 else None, ov.cpu_model(),
                         ov.cpu_capabilities(), ov.runtime_version(), self.threads)

    def _compile_candidates(self) -> dict[tuple[str, str], Any]:
        """Each candidate (precision x execution mode) compiled with the serving threads as a Runner, or skipped
        with the reason; f32 in one stream first."""
        capabilities = ov.cpu_capabilities()
        runners: dict[tuple[str, str], Any] = {}
        for precision in ov.PRECISIONS:
            for mode in self.modes:
                candidate = Candidate(precision, mode=mode)
                self.candidates.append(candidate)
                if ov.CAPABILITY[precision] not in capabilities:
                    has = ", ".join(c for c in capabilities if c in ov.CAPABILITY.values())
                    candidate.skipped = f"no {ov.CAPABILITY[precision]} on this CPU (it has {has})"
                elif precision not in self.folders:
                    candidate.skipped = "no calibrated model (python -m camserver.detect.calibrate)"
                else:
                    model = ov.compile_ir(self.folders[precision], precision, self.threads, mode)
                    candidate.executed = ov.executed(model)["precision"]
                    if precision != BASELINE and candidate.executed == "fp32":
                        candidate.skipped = "the CPU plugin runs it as fp32"
                    else:
                        runners[(precision, mode)] = ov.Runner(model, mode)
        return runners

    async def _measure(self, started: float) -> None:
        runners = await self._in_thread(self._compile_candidates)
        base = runners[(BASELINE, "latency")]
        shape = self._shape(base.compiled)
        tensors = await self._in_thread(lambda: [letterboxed(im, shape) for im in held_out(self.jpegs())])
        reference = await self._in_thread(detections, base, tensors, self.conf, self.iou)
        by_key = {(c.precision, c.mode): c for c in self.candidates}
        for key, runner in runners.items():
            if key != (BASELINE, "latency"):
                found = await self._in_thread(detections, runner, tensors, self.conf, self.iou)
                by_key[key].agreement, by_key[key].score_diff = agreement(reference, found)
        for _ in range(ROUNDS):
            for key, runner in runners.items():
                if not await self._may_run(started):
                    return
                by_key[key].samples_ms.append(await self._in_thread(timed_chunk, runner, tensors))

    @staticmethod
    def _shape(compiled: Any) -> tuple[int, int]:
        dims = compiled.input(0).get_shape()
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

    async def _switch(self, precision: str, mode: str) -> None:
        """Compile the winner for each worker (off the loop) and install it on the worker's own thread."""
        loop = asyncio.get_running_loop()
        for worker in self.workers():
            detector = worker.detector
            if detector is None or not worker.ready:
                continue
            if (detector.executed.get("requested"), detector.executed.get("mode")) == (precision, mode):
                continue
            model = await self._in_thread(ov.compile_ir, self.folders[precision], precision, self.threads, mode)
            before = detector.info.precision
            info = await loop.run_in_executor(worker.executor, detector.install, model, precision, mode)
            log.info("detector %s: now %s (%s), was %s", worker.name, info.precision,
                     ", ".join(f"{k} {v}" for k, v in detector.executed.items()), before)


def precision_tuner(d: Any, workers: Callable[[], list[Any]], lagging: Callable[[], bool],
                    jpegs: Callable[[], list[bytes]], **kwargs: Any) -> PrecisionTuner | None:
    """The tuner `detect.precision = "auto"` asks for with the openvino backend on an exportable model, else None."""
    from .backends import exportable, resolve_backend

    if d.precision != "auto" or not exportable(d.model) or not ov.available() or resolve_backend(d) != "openvino":
        return None
    folders, path = tuning_folders(d)
    return PrecisionTuner(folders, d.conf, d.iou, d.threads, workers, lagging, jpegs, TuningCache(path),
                           max_batch=d.max_batch or 2, **kwargs)
