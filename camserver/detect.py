"""Detection: the Detector protocol, the ultralytics backend, and the executor worker."""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from concurrent.futures import Executor
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Protocol

import cv2
import numpy as np

from .hub import Camera, CameraHub, Frame
from .ratelog import ThrottledLog

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object, its box in the original frame's pixels."""

    class_id: int
    class_name: str
    confidence: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["box"] = [round(v, 1) for v in self.box]
        d["confidence"] = round(self.confidence, 4)
        return d


class Detector(Protocol):
    """A model that finds objects in a BGR image and draws them."""

    def detect(self, image: np.ndarray) -> tuple[list[Detection], np.ndarray]:
        """Return the detections and the image with boxes drawn on it."""
        ...


class ModelLoadError(Exception):
    """The model could not be loaded; the text tells the user what to do."""


class UltralyticsDetector:
    """Any model ultralytics' YOLO() accepts: .pt, .yaml, .onnx, OpenVINO, TensorRT, Triton URL."""

    def __init__(self, model: str, device: str = "auto", conf: float = 0.25, iou: float = 0.45, imgsz: int = 640) -> None:
        try:
            from ultralytics import YOLO

            self.model = YOLO(model)
        except Exception as exc:  # ultralytics raises many kinds; all mean "cannot load"
            reason = _first_line(exc)
            hint = ""
            if model.endswith(".pt") and "/" not in model:
                hint = (
                    f" ('{model}' downloads on first use and needs internet; offline, pass a local"
                    " file with --model, or --model yolo11n.yaml for random weights)"
                )
            raise ModelLoadError(f"cannot load model '{model}': {reason}{hint}") from None
        self.predict_args: dict[str, Any] = {"conf": conf, "iou": iou, "imgsz": imgsz, "verbose": False}
        if device != "auto":
            self.predict_args["device"] = device
        try:  # the first call is slow (graph set-up); pay it now, not on the first frame
            self.detect(np.zeros((imgsz, imgsz, 3), np.uint8))
        except Exception as exc:
            raise ModelLoadError(f"model '{model}' loaded but cannot run: {_first_line(exc)}") from None

    def detect(self, image: np.ndarray) -> tuple[list[Detection], np.ndarray]:
        """Run the model once and draw the boxes as ultralytics' Results.plot() does."""
        result = self.model.predict(image, **self.predict_args)[0]
        names = result.names
        boxes = result.boxes
        detections = []
        if boxes is not None and len(boxes):
            for (x1, y1, x2, y2), cls, conf in zip(
                boxes.xyxy.cpu().numpy().tolist(), boxes.cls.cpu().numpy().tolist(), boxes.conf.cpu().numpy().tolist()
            ):
                detections.append(Detection(int(cls), str(names.get(int(cls), cls)), float(conf), (x1, y1, x2, y2)))
        return detections, result.plot()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].lstrip("❌⚠️ ").strip()


@dataclass(slots=True)
class FrameResult:
    """What the worker made of one camera JPEG."""

    jpeg: bytes | None  # bytes to publish; None when the frame did not decode
    detections: list[Detection] = field(default_factory=list)
    inference_ms: float | None = None
    error: str | None = None  # why the frame is unannotated or unpublished


def annotate_frame(detector: Detector | None, jpeg: bytes, jpeg_quality: int = 80) -> FrameResult:
    """Decode, detect, draw and encode one frame. Synchronous: runs in a worker thread.

    Args:
        detector: the model, or None for pass-through (frames published untouched).
        jpeg: the camera's JPEG bytes.
        jpeg_quality: quality of the re-encoded annotated frame.
    """
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return FrameResult(None, error="JPEG did not decode")
    if detector is None:
        return FrameResult(jpeg)
    start = time.perf_counter()
    try:
        detections, annotated = detector.detect(image)
    except Exception as exc:
        log.debug("detector failed on a frame", exc_info=True)
        return FrameResult(jpeg, error=f"detector failed: {_first_line(exc)}")
    inference_ms = (time.perf_counter() - start) * 1000
    ok, buf = cv2.imencode(".jpg", annotated, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        return FrameResult(jpeg, detections, inference_ms, error="annotated frame did not encode")
    return FrameResult(buf.tobytes(), detections, inference_ms)


class DetectorPool:
    """One detector instance per worker thread; an instance is never used by two threads at once."""

    def __init__(self, factory: Callable[[], Detector] | None, size: int, jpeg_quality: int = 80) -> None:
        self.factory = factory
        self.size = size
        self.jpeg_quality = jpeg_quality
        self._free: queue.SimpleQueue[Detector | None] = queue.SimpleQueue()

    def load(self) -> None:
        """Build every instance (slow; call in a thread). Raises ModelLoadError."""
        for _ in range(self.size):
            self._free.put(self.factory() if self.factory else None)

    def process(self, jpeg: bytes) -> FrameResult:
        """annotate_frame() with a free instance; the executor has as many threads as instances."""
        detector = self._free.get()
        try:
            return annotate_frame(detector, jpeg, self.jpeg_quality)
        finally:
            self._free.put(detector)


class DetectionScheduler:
    """Takes the newest frame of each camera, fairly, and runs one inference per frame."""

    def __init__(self, hub: CameraHub, pool: DetectorPool, executor: Executor) -> None:
        self.hub = hub
        self.pool = pool
        self.executor = executor
        self.in_flight = 0
        self._tick = 0
        self._jobs: set[asyncio.Task[None]] = set()
        self._bad_frames = ThrottledLog(log)
        self._failures = ThrottledLog(log)

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
            if self.in_flight >= self.pool.size:
                break
            frame = cam.slot.take()
            if frame is None:
                continue
            self._tick += 1
            cam.last_dispatch = self._tick
            cam.in_detector = True
            self.in_flight += 1
            job = asyncio.create_task(self._process(cam, frame))
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)

    async def _process(self, cam: Camera, frame: Frame) -> None:
        try:
            result = await asyncio.get_running_loop().run_in_executor(self.executor, self.pool.process, frame.jpeg)
        except Exception as exc:  # the worker itself broke: publish the frame as it came
            log.error("detection worker failed", exc_info=True)
            result = FrameResult(frame.jpeg, error=f"worker failed: {exc!r}")
        finally:
            cam.in_detector = False
            self.in_flight -= 1
            self.hub.frame_waiting.set()
        self._publish(cam, frame, result)

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
        cam.fps_out.mark()
        cam.annotated.publish(out)
