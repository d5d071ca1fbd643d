"""The inference side of the service: camera JPEGs in, packed detections out.

`JpegModel.infer` is what Triton calls for every batch it forms. It is a plain synchronous
function over numpy arrays, so tests call it directly. Decoding happens here, not in camserver:
with OpenCV in a thread pool on the CPU, or, for torch on CUDA, with torchvision's
`decode_jpeg` on the GPU (nvJPEG) and the letterbox done on the device (`gpu.py`).

Nothing is decoded before its header is read: each JPEG passes the same structural checks and
size limits as camserver's ingest (ingest/jpeg.py) first, and one that fails is refused on its
own, with the reason in the `error` output, while the rest of the batch is detected.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from ..detect.base import Detection, Detector
from ..detect.frames import decode_frame
from ..detect.backends.triton_contract import pack_detections
from ..ingest.jpeg import BadFrame, inspect_jpeg
from ..logsafe import ThrottledLog

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FrameLimits:
    """What the service decodes at most: camserver's ingest limits (ingest.max_frame_bytes, max_width, max_height)."""

    max_bytes: int = 1024 * 1024
    max_width: int = 2592
    max_height: int = 1944

    def refusal(self, jpeg: bytes) -> str | None:
        """Why this JPEG is not decoded (`reason: text`), or None when it may be."""
        if len(jpeg) > self.max_bytes:
            return f"too_big: {len(jpeg)} bytes, over the {self.max_bytes} limit"
        try:
            inspect_jpeg(jpeg, self.max_width, self.max_height)
        except BadFrame as exc:
            return f"{exc.reason}: {exc}"
        return None


class JpegBatchDetector(Protocol):
    """Something that detects straight from JPEG bytes (the GPU path)."""

    def detect_jpegs(self, jpegs: Sequence[bytes]) -> tuple[list[list[Detection]], list[tuple[int, int]]]:
        """Detections and (width, height) per JPEG; (0, 0) and no detections for one that does not decode."""
        ...


def class_names(detector: Detector) -> list[str]:
    """The model's class names, index = class id (ultralytics keeps them as a dict)."""
    names: dict[int, str] | list[str] = getattr(getattr(detector, "model", None), "names", None) or {}
    if isinstance(names, dict):
        return [str(names.get(i, i)) for i in range(max(names, default=-1) + 1)]
    return [str(n) for n in names]


class JpegModel:
    """One model instance: decode a batch of JPEGs, run one inference, pack the outputs."""

    def __init__(self, detector: Detector, decoders: ThreadPoolExecutor, gpu: JpegBatchDetector | None = None,
                 limits: FrameLimits = FrameLimits()) -> None:
        self.detector = detector
        self.decoders = decoders
        self.gpu = gpu
        self.limits = limits
        self.batches = 0
        self.frames = 0
        self.refused = 0  # JPEGs refused before decoding
        self._refusals = ThrottledLog(log)

    def detect_jpegs(self, jpegs: Sequence[bytes]) -> tuple[list[list[Detection]], list[tuple[int, int]]]:
        """Detections and (width, height) per JPEG; a JPEG that does not decode gets none and (0, 0)."""
        if self.gpu is not None:
            return self.gpu.detect_jpegs(jpegs)
        images = list(self.decoders.map(decode_frame, jpegs))
        decoded = [i for i, image in enumerate(images) if image is not None]
        results = self.detector.detect([image for image in images if image is not None]) if decoded else []
        per_image: list[list[Detection]] = [[] for _ in jpegs]
        sizes = [(0, 0)] * len(jpegs)
        for i, detections in zip(decoded, results):
            per_image[i] = detections
            image = images[i]
            assert image is not None
            sizes[i] = (image.shape[1], image.shape[0])
        return per_image, sizes

    def infer(self, jpeg: np.ndarray, **_: Any) -> dict[str, np.ndarray]:
        """Triton's batch: `jpeg` [B, 1] of JPEG bytes -> `detections`, `count`, `size`, `error` (triton_contract.py)."""
        jpegs = [bytes(item) for item in jpeg.reshape(-1)]
        errors = [self.limits.refusal(j) or "" for j in jpegs]
        kept = [i for i, error in enumerate(errors) if not error]
        per_image: list[list[Detection]] = [[] for _ in jpegs]
        sizes = [(0, 0)] * len(jpegs)
        if kept:
            detected, kept_sizes = self.detect_jpegs([jpegs[i] for i in kept])
            for i, detections, size in zip(kept, detected, kept_sizes):
                per_image[i], sizes[i] = detections, size
                if size == (0, 0):
                    errors[i] = "undecodable: the JPEG's data does not decode"
        for error in errors:
            if error:
                self.refused += 1
                self._refusals.warning(error.split(":", 1)[0], "refused a JPEG: %s (%d refused so far)", error, self.refused)
        self.batches += 1
        self.frames += len(jpegs)
        return pack_detections(per_image, sizes, errors)
