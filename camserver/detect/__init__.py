"""Detection stage: backends behind one batched Detector protocol, the per-frame work around
inference, the worker pool and the batching scheduler."""

from .base import BackendInfo, Detection, Detector, ModelLoadError
from .frames import FrameResult, decode_frame, mark_frame, render_frame
from .backends.ultralytics import UltralyticsDetector

__all__ = [
    "BackendInfo",
    "Detection",
    "Detector",
    "FrameResult",
    "ModelLoadError",
    "UltralyticsDetector",
    "decode_frame",
    "mark_frame",
    "render_frame",
]
