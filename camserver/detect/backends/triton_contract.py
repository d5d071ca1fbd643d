"""The wire contract of the inference service: tensor names, types and shapes, packed and unpacked.

One request carries a batch of camera JPEGs; Triton's dynamic batcher may merge requests of
several camserver instances into one execution and splits the outputs back per request.

| tensor | direction | Triton type | shape | what |
| --- | --- | --- | --- | --- |
| `jpeg` | in | BYTES | [B, 1] | one camera JPEG per row, as the camera sent it |
| `detections` | out | FP32 | [B, K, 6] | per row `x1, y1, x2, y2, score, class_id`, boxes in the original frame's pixels |
| `count` | out | INT32 | [B, 1] | how many rows of `detections` are real; the rest is padding (zeros) |
| `size` | out | INT32 | [B, 2] | the decoded frame's width, height; 0, 0 when the JPEG did not decode |
| `error` | out | BYTES | [B, 1] | empty, or why the service refused this JPEG (`reason: text`, e.g. `too_large: ...`) |

K is the largest count in the batch Triton executed (at least 1, at most MAX_DETECTIONS), so one
response's K can differ from the next one's. The class names are in the model configuration's
`parameters` under `class_names` (a JSON list, index = class id), read once at connection.

A client trusts none of it: `unpack_detections` checks an answer's shapes, counts and values
(finite, inside the frame, scores 0..1, known class ids) and raises `BadAnswer` for one that breaks
the contract; `max_answer_bytes` bounds the message a client accepts at all.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from .. import base
from ..base import Detection

INPUT = "jpeg"
DETECTIONS = "detections"
COUNT = "count"
SIZE = "size"
ERROR = "error"
OUTPUTS = (DETECTIONS, COUNT, SIZE, ERROR)
CLASS_NAMES_PARAMETER = "class_names"
MAX_DETECTIONS = base.MAX_DETECTIONS  # ultralytics' own max_det
DEFAULT_MODEL_NAME = "detector"
MAX_ERROR_CHARS = 200  # of one item's `error` text
MAX_SIDE = 65535  # a JPEG's largest width or height
MAX_CLASSES = 65536  # class ids accepted when the service publishes no names
BOX_SLACK_PX = 2.0  # boxes may overhang the frame by this (rounding), then are clipped to it
TOKEN_HEADER = "triton-access-token"  # the header Triton's restricted APIs check (PyTriton's name for it)


def token_header(grpc: bool) -> str:
    """The header that carries the service's access token: gRPC metadata has Triton's protocol prefix."""
    return f"triton-grpc-protocol-{TOKEN_HEADER}" if grpc else TOKEN_HEADER


class BadAnswer(ValueError):
    """The service's answer breaks the contract: a failure of the service, not of the frames."""


def max_answer_bytes(frames: int) -> int:
    """The largest answer to a request of `frames` JPEGs that keeps the contract, with room for the envelope."""
    per_frame = MAX_DETECTIONS * 6 * 4 + 4 + 8 + 4 + MAX_ERROR_CHARS * 4
    return max(1 << 20, 64 * 1024 + frames * per_frame)


def pack_jpegs(jpegs: Sequence[bytes]) -> np.ndarray:
    """The `jpeg` input tensor for a batch: an object array of shape [B, 1]."""
    batch = np.empty((len(jpegs), 1), dtype=np.object_)
    for i, jpeg in enumerate(jpegs):
        batch[i, 0] = jpeg
    return batch


def pack_detections(
    per_image: Sequence[Sequence[Detection]], sizes: Sequence[tuple[int, int]], errors: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """The output tensors for a batch: detections padded to the batch's largest count, and each item's error."""
    k = max(1, min(MAX_DETECTIONS, max((len(d) for d in per_image), default=0)))
    dets = np.zeros((len(per_image), k, 6), np.float32)
    count = np.zeros((len(per_image), 1), np.int32)
    for i, detections in enumerate(per_image):
        kept = list(detections)[:k]
        count[i, 0] = len(kept)
        for j, d in enumerate(kept):
            dets[i, j] = (*d.box, d.confidence, d.class_id)
    texts = errors if errors is not None else [""] * len(per_image)
    error = np.array([[t[:MAX_ERROR_CHARS].encode("utf-8", "replace")] for t in texts], dtype=np.bytes_)
    return {DETECTIONS: dets, COUNT: count, SIZE: np.asarray(sizes, np.int32).reshape(len(per_image), 2),
            ERROR: error.reshape(len(per_image), 1)}


def unpack_errors(error: np.ndarray | None, frames: int) -> list[str]:
    """Each item's refusal text from the `error` output ("" for none); [""] * frames without it."""
    if error is None:
        return [""] * frames
    if error.size != frames:
        raise BadAnswer(f"{error.size} error items for {frames} frames")
    out = []
    for item in error.reshape(-1).tolist():
        text = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
        out.append(text[:MAX_ERROR_CHARS])
    return out


def _check_shapes(dets: np.ndarray | None, count: np.ndarray | None, size: np.ndarray | None,
                  frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if dets is None or count is None:
        raise BadAnswer(f"the answer has no {DETECTIONS if dets is None else COUNT} output")
    if dets.ndim != 3 or dets.shape[0] != frames or dets.shape[2] != 6 or dets.dtype.kind != "f":
        raise BadAnswer(f"{DETECTIONS} is {dets.dtype}{list(dets.shape)}, not FP32[{frames}, K, 6]")
    if not 1 <= dets.shape[1] <= MAX_DETECTIONS:
        raise BadAnswer(f"{dets.shape[1]} rows per frame, over the {MAX_DETECTIONS} of the contract")
    n = count.reshape(-1)
    if n.size != frames or count.dtype.kind not in "iu":
        raise BadAnswer(f"{COUNT} is {count.dtype}{list(count.shape)}, not INT32[{frames}, 1]")
    if n.min() < 0 or n.max() > dets.shape[1]:
        raise BadAnswer(f"a count of {int(n.min() if n.min() < 0 else n.max())} for {dets.shape[1]} rows")
    if size is not None:
        if size.shape != (frames, 2) or size.dtype.kind not in "iu":
            raise BadAnswer(f"{SIZE} is {size.dtype}{list(size.shape)}, not INT32[{frames}, 2]")
        if size.min() < 0 or size.max() > MAX_SIDE:
            raise BadAnswer(f"a frame size of {int(size.max() if size.max() > MAX_SIDE else size.min())} pixels")
    return dets, n.astype(np.int64), size


def unpack_detections(dets: np.ndarray | None, count: np.ndarray | None, names: Sequence[str], frames: int,
                      size: np.ndarray | None = None) -> list[list[Detection]]:
    """Detections per image from one response's outputs, checked against the contract; boxes clipped to the frame.

    Args:
        frames: how many JPEGs the request carried (one result each).
        size: the `size` output; without it boxes are only bounded by the largest JPEG.

    Raises:
        BadAnswer: a missing output, a wrong shape or count, a value that is not finite, a box outside its
            frame, a score outside 0..1 or an unknown class id. Checked with numpy before any row is read.
    """
    dets, n, size = _check_shapes(dets, count, size, frames)
    real = np.arange(dets.shape[1])[None, :] < n[:, None]  # [B, K]: which rows count
    rows = dets[real].astype(np.float64)  # [N, 6], frame by frame
    if not np.isfinite(rows).all():
        raise BadAnswer("a detection that is not a finite number (NaN or infinity)")
    limits = (size if size is not None else np.full((frames, 2), MAX_SIDE)).astype(np.float64)
    wh = np.repeat(limits, n, axis=0)  # each row's frame width, height
    if len(rows):
        if ((wh[:, 0] == 0) | (wh[:, 1] == 0)).any():
            raise BadAnswer("detections for a frame the service did not decode")
        box = rows[:, :4]
        low, high = -BOX_SLACK_PX, np.concatenate([wh, wh], axis=1) + BOX_SLACK_PX
        if (box < low).any() or (box > high).any() or (box[:, 2] < box[:, 0]).any() or (box[:, 3] < box[:, 1]).any():
            raise BadAnswer("a box outside its frame")
        if (rows[:, 4] < 0).any() or (rows[:, 4] > 1).any():
            raise BadAnswer("a score outside 0..1")
        cls = rows[:, 5]
        if (cls != np.round(cls)).any() or (cls < 0).any() or (cls >= (len(names) or MAX_CLASSES)).any():
            raise BadAnswer("a class id the model does not have")
        rows[:, 0:4:2] = np.clip(box[:, 0:4:2], 0, wh[:, :1])
        rows[:, 1:4:2] = np.clip(box[:, 1:4:2], 0, wh[:, 1:])
    out: list[list[Detection]] = []
    at = 0
    for k in n.tolist():
        image = []
        for x1, y1, x2, y2, score, cls in rows[at:at + k].tolist():
            class_id = int(cls)
            name = names[class_id] if class_id < len(names) else str(class_id)
            image.append(Detection(class_id, name, score, (x1, y1, x2, y2)))
        out.append(image)
        at += k
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
