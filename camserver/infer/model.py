"""The inference side of the service: camera JPEGs in, packed detections out.

`JpegModel.infer` is what Triton calls for every batch it forms. It is a plain synchronous
function over numpy arrays, so tests call it directly. Decoding happens here, not in camserver:
with OpenCV in a thread pool on the CPU, or, for torch on CUDA, with torchvision's
`decode_jpeg` on the GPU (nvJPEG) and the letterbox done on the device (`gpu.py`).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, Sequence

import numpy as np

from ..detect.base import Detection, Detector
from ..detect.frames import decode_frame
from ..detect.backends.triton_contract import pack_detections

log = logging.getLogger(__name__)


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

    def __init__(self, detector: Detector, decoders: ThreadPoolExecutor, gpu: JpegBatchDetector | None = None) -> None:
        self.detector = detector
        self.decoders = decoders
        self.gpu = gpu
        self.batches = 0
        self.frames = 0

    def detect_jpegs(self, jpegs: Sequence[bytes]) -> tuple[list[list[Detection]], list[tuple[int, int]]]:
        """Detections and (width, height) per JPEG; a JPEG that does not decode gets none and (0, 0)."""
        if self.gpu is not None:
            return self.gpu.detect_jpegs(jpegs)
        images = list(self.decoders.map(decode_frame, jpegs))
        decoded = [i for i, image in enumerate(images) if image is not None]
        results = self.detector.detect([images[i] for i in decoded]) if decoded else []
        per_image: list[list[Detection]] = [[] for _ in jpegs]
        sizes = [(0, 0)] * len(jpegs)
        for i, detections in zip(decoded, results):
            per_image[i] = detections
            image = images[i]
            assert image is not None
            sizes[i] = (image.shape[1], image.shape[0])
        return per_image, sizes

    def infer(self, jpeg: np.ndarray, **_: Any) -> dict[str, np.ndarray]:
        """Triton's batch: `jpeg` [B, 1] of JPEG bytes -> `detections`, `count`, `size` (see detect/backends/triton_contract.py)."""
        jpegs = [bytes(item) for item in jpeg.reshape(-1)]
        per_image, sizes = self.detect_jpegs(jpegs)
        self.batches += 1
        self.frames += len(jpegs)
        return pack_detections(per_image, sizes)
