"""An event's best frame as people see it: with its box, cropped around the object, scaled."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..detect.base import Detection
from ..detect.frames import decode_frame, draw_detections, encode_frame


def render_snapshot(jpeg: bytes, record: dict[str, Any], bbox: bool, crop: bool, height: int | None) -> bytes | None:
    """The event's best frame, with its box drawn (bbox), cropped around the object (crop), scaled to `height`."""
    image = decode_frame(jpeg)
    if image is None:
        return None
    box = record.get("snapshot_box") or record.get("box")
    if bbox and box:
        draw_detections(image, [Detection(0, record["label"], record.get("top_score", 0.0), tuple(box))])
    if crop and box:
        h, w = image.shape[:2]
        x1, y1, x2, y2 = box
        mx, my = (x2 - x1) * 0.25, (y2 - y1) * 0.25
        image = image[max(0, int(y1 - my)) : min(h, int(y2 + my)), max(0, int(x1 - mx)) : min(w, int(x2 + mx))]
    if height and image.shape[0] != height:
        scale = height / image.shape[0]
        image = cv2.resize(image, (max(1, int(image.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)
    return encode_frame(np.ascontiguousarray(image), 85)
