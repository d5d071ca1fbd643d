"""The wire contract of the inference service: tensor names, types and shapes, packed and unpacked.

One request carries a batch of camera JPEGs; Triton's dynamic batcher may merge requests of
several camserver instances into one execution and splits the outputs back per request.

| tensor | direction | Triton type | shape | what |
| --- | --- | --- | --- | --- |
| `jpeg` | in | BYTES | [B, 1] | one camera JPEG per row, as the camera sent it |
| `detections` | out | FP32 | [B, K, 6] | per row `x1, y1, x2, y2, score, class_id`, boxes in the original frame's pixels |
| `count` | out | INT32 | [B, 1] | how many rows of `detections` are real; the rest is padding (zeros) |
| `size` | out | INT32 | [B, 2] | the decoded frame's width, height; 0, 0 when the JPEG did not decode |

K is the largest count in the batch Triton executed (at least 1, at most MAX_DETECTIONS), so one
response's K can differ from the next one's. The class names are in the model configuration's
`parameters` under `class_names` (a JSON list, index = class id), read once at connection.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from ..base import Detection

INPUT = "jpeg"
DETECTIONS = "detections"
COUNT = "count"
SIZE = "size"
OUTPUTS = (DETECTIONS, COUNT, SIZE)
CLASS_NAMES_PARAMETER = "class_names"
MAX_DETECTIONS = 300  # ultralytics' own max_det
DEFAULT_MODEL_NAME = "detector"


def pack_jpegs(jpegs: Sequence[bytes]) -> np.ndarray:
    """The `jpeg` input tensor for a batch: an object array of shape [B, 1]."""
    batch = np.empty((len(jpegs), 1), dtype=np.object_)
    for i, jpeg in enumerate(jpegs):
        batch[i, 0] = jpeg
    return batch


def pack_detections(
    per_image: Sequence[Sequence[Detection]], sizes: Sequence[tuple[int, int]]
) -> dict[str, np.ndarray]:
    """The output tensors for a batch: detections padded to the batch's largest count."""
    k = max(1, min(MAX_DETECTIONS, max((len(d) for d in per_image), default=0)))
    dets = np.zeros((len(per_image), k, 6), np.float32)
    count = np.zeros((len(per_image), 1), np.int32)
    for i, detections in enumerate(per_image):
        kept = list(detections)[:k]
        count[i, 0] = len(kept)
        for j, d in enumerate(kept):
            dets[i, j] = (*d.box, d.confidence, d.class_id)
    return {DETECTIONS: dets, COUNT: count, SIZE: np.asarray(sizes, np.int32).reshape(len(per_image), 2)}


def unpack_detections(dets: np.ndarray, count: np.ndarray, names: Sequence[str]) -> list[list[Detection]]:
    """Detections per image from the `detections` and `count` outputs of one response."""
    out = []
    for rows, n in zip(dets, count.reshape(-1)):
        image = []
        for x1, y1, x2, y2, score, cls in rows[: int(n)].tolist():
            class_id = int(cls)
            name = names[class_id] if 0 <= class_id < len(names) else str(class_id)
            image.append(Detection(class_id, name, float(score), (x1, y1, x2, y2)))
        out.append(image)
    return out


def class_names_parameter(names: Sequence[str]) -> str:
    """The `class_names` model parameter's string value."""
    return json.dumps(list(names))


def class_names_from_config(config: dict[str, Any]) -> list[str]:
    """Class names from a model configuration as JSON (gRPC `as_json=True` or HTTP); [] if absent."""
    config = config.get("config", config)  # gRPC wraps it in {"config": ...}
    value = config.get("parameters", {}).get(CLASS_NAMES_PARAMETER, {}).get("string_value", "")
    try:
        names = json.loads(value) if value else []
    except ValueError:
        return []
    return [str(n) for n in names] if isinstance(names, list) else []
