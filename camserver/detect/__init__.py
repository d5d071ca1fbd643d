"""Detection stage: backends behind one batched Detector protocol, the per-frame work around
inference, the worker pool and the batching scheduler."""

from .base import BackendInfo, Detection, Detector, ModelLoadError
from .frames import FrameResult, annotate_frame, decode_frame, mark_frame, render_frame
from .backends.ultralytics import UltralyticsDetector

__all__ = [
    "BackendInfo",
    "Detection",
    "Detector",
    "FrameResult",
    "ModelLoadError",
    "UltralyticsDetector",
    "annotate_frame",
    "decode_frame",
    "mark_frame",
    "render_frame",
]
