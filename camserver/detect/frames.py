"""The per-frame work around inference: decode, draw, encode, mark. Plain synchronous functions
that run in a thread pool (OpenCV releases the GIL) and that tests call directly."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .base import Detection, Detector

# BGR colours by class id, as ultralytics' default palette starts
PALETTE = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
           (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0),
           (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203),
           (200, 149, 255), (199, 55, 255)]


def decode_frame(jpeg: bytes) -> np.ndarray | None:
    """The camera JPEG as a BGR image, or None when it does not decode."""
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def encode_frame(image: np.ndarray, jpeg_quality: int = 80) -> bytes | None:
    """A BGR image as JPEG bytes, or None if encoding fails."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    return buf.tobytes() if ok else None


def draw_detections(image: np.ndarray, detections: list[Detection]) -> np.ndarray:
    """Boxes and "label score" tags drawn in place, in the style of ultralytics' plot()."""
    h, w = image.shape[:2]
    thickness = max(round((h + w) / 2 * 0.003), 2)
    scale = thickness / 3
    for d in detections:
        if not all(math.isfinite(v) for v in d.box):  # checked before (base.bounded); drawing must not raise
            continue
        color = PALETTE[d.class_id % len(PALETTE)]
        # OpenCV takes int32 points: a box far outside the frame is drawn at its edge instead of overflowing
        x1, x2 = (int(round(min(max(v, -1.0), w + 1.0))) for v in d.box[0::2])
        y1, y2 = (int(round(min(max(v, -1.0), h + 1.0))) for v in d.box[1::2])
        cv2.rectangle(image, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        label = f"{d.class_name} {d.confidence:.2f}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, max(thickness - 1, 1))
        above = y1 - th - 3 >= 0
        top = y1 - th - 3 if above else y1
        cv2.rectangle(image, (x1, top), (x1 + tw, top + th + 3), color, -1, cv2.LINE_AA)
        cv2.putText(image, label, (x1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                    max(thickness - 1, 1), cv2.LINE_AA)
    return image


def render_frame(detector: Detector, image: np.ndarray, detections: list[Detection], jpeg_quality: int = 80) -> bytes | None:
    """Draw the detections on a copy of the decoded frame and encode it: the annotated JPEG."""
    return encode_frame(detector.draw(image.copy(), detections), jpeg_quality)


def render_jpeg(detector: Detector, jpeg: bytes, detections: list[Detection], jpeg_quality: int = 80) -> bytes | None:
    """render_frame from the camera's JPEG (for a snapshot asked for while nobody watches)."""
    image = decode_frame(jpeg)
    return None if image is None else render_frame(detector, image, detections, jpeg_quality)


@dataclass(slots=True)
class FrameResult:
    """What the worker made of one camera JPEG."""

    jpeg: bytes | None  # bytes to publish; None when the frame did not decode
    detections: list[Detection] = field(default_factory=list)
    inference_ms: float | None = None
    error: str | None = None  # why the frame is unannotated or unpublished


def mark_frame(jpeg: bytes, text: str, jpeg_quality: int = 80) -> bytes | None:
    """The frame with a red banner saying `text` (e.g. "detector stalled"); None if it does not decode."""
    image = decode_frame(jpeg)
    if image is None:
        return None
    h, w = image.shape[:2]
    scale = max(0.4, w / 800)
    band = int(32 * scale)
    cv2.rectangle(image, (0, 0), (w, band), (0, 0, 170), -1)
    cv2.putText(image, text, (8, int(band * 0.75)), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, (255, 255, 255), 2, cv2.LINE_AA)
    return encode_frame(image, jpeg_quality)
