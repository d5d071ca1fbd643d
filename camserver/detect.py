"""Detection: the Detector protocol, the ultralytics backend, and the per-frame worker function."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np


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


def mark_frame(jpeg: bytes, text: str, jpeg_quality: int = 80) -> bytes | None:
    """The frame with a red banner saying `text` (e.g. "detector stalled"); None if it does not decode."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None
    h, w = image.shape[:2]
    scale = max(0.4, w / 800)
    band = int(32 * scale)
    cv2.rectangle(image, (0, 0), (w, band), (0, 0, 170), -1)
    cv2.putText(image, text, (8, int(band * 0.75)), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, (255, 255, 255), 2, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    return buf.tobytes() if ok else None
