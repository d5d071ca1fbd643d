"""What every detector backend is: the Detection record and the batched Detector protocol."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from ..supervise import Spawn


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


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """How detection runs, as /healthz and /api/cameras show it."""

    backend: str  # torch, openvino, onnx, fake, ...
    device: str  # cpu, cuda:0, ...
    precision: str  # fp32, fp16
    max_batch: int  # frames in one inference call at most


class Detector(Protocol):
    """A model that finds objects in BGR images, one batched call for several cameras' frames."""

    info: BackendInfo

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """One inference over `images`; the detections of each image, in order."""
        ...

    def draw(self, image: np.ndarray, detections: list[Detection]) -> np.ndarray:
        """`image` with the detections drawn on it (may draw in place)."""
        ...


MAX_DETECTIONS = 300  # per frame, as ultralytics' max_det


def bounded(detections: list[Detection], width: int, height: int) -> list[Detection]:
    """A local model's detections made safe to draw and store: finite only, boxes clipped to the frame, 300 at most.

    A broken or fp16-overflowing model can give NaN or infinite values; they never reach drawing or events.
    """
    out = []
    for d in detections[:MAX_DETECTIONS]:
        x1, y1, x2, y2 = d.box
        if not (math.isfinite(x1) and math.isfinite(y1) and math.isfinite(x2) and math.isfinite(y2)
                and math.isfinite(d.confidence)):
            continue
        box = (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))
        out.append(d if box == d.box else Detection(d.class_id, d.class_name, d.confidence, box))
    return out


class DetectorUnavailable(Exception):
    """A remote detector cannot take frames now (the service is unreachable or busy); the text says why."""


class AsyncDetector(Protocol):
    """A detector that runs elsewhere (the triton backend): camserver sends JPEGs, gets boxes back.

    No detector thread and no decode before inference: the scheduler awaits `detect_jpegs` on the
    event loop, decodes only to draw for a watched stream, and sends a batch only while `free()`.
    """

    info: BackendInfo
    state: str  # "ok" or "degraded"
    reason: str | None  # why degraded

    def free(self) -> bool:
        """Whether a batch may be sent now (connected, and a slot for one more batch in flight)."""
        ...

    async def start(self, spawn: Spawn | None = None) -> None:
        """Connect if it can (with `spawn`, its helper tasks are supervised); never raises because the service is away."""
        ...

    async def stop(self) -> None:
        """Close connections and helper tasks."""
        ...

    async def detect_jpegs(self, jpegs: Sequence[bytes]) -> list[list[Detection]]:
        """The detections of each JPEG; raises DetectorUnavailable when it cannot, another error for a failed batch."""
        ...

    def draw(self, image: np.ndarray, detections: list[Detection]) -> np.ndarray:
        """`image` with the detections drawn on it (may draw in place)."""
        ...

    def figures(self) -> dict[str, Any]:
        """What /healthz and /metrics show: URL without credentials, state, round-trip time, batch sizes."""
        ...


class ModelLoadError(Exception):
    """The model could not be loaded; the text tells the user what to do."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text, without ultralytics' emoji prefixes."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].lstrip("❌⚠️ ").strip()
