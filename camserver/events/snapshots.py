"""An event's best frame as people see it: with its box, cropped around the object, scaled."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..detect.base import Detection
from ..detect.frames import decode_frame, draw_detections, encode_frame


# A scaled snapshot never has more pixels than this (about 4K UHD): `h` sets the height, and a very
# wide frame (2592x200 is a valid camera frame) would otherwise become 28,000 pixels wide.
MAX_OUTPUT_PIXELS = 3840 * 2160


def render_snapshot(jpeg: bytes, record: dict[str, Any], bbox: bool, crop: bool, height: int | None) -> bytes | None:
    """The event's best frame, with its box drawn (bbox), cropped around the object (crop), scaled to `height`.

    The scaled picture keeps the frame's aspect ratio within MAX_OUTPUT_PIXELS: for a very wide
    frame it is lower than `height`.
    """
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
        h, w = image.shape[:2]
        scale = min(height / h, (MAX_OUTPUT_PIXELS / (w * h)) ** 0.5)
        size = (max(1, int(w * scale)), max(1, int(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return encode_frame(np.ascontiguousarray(image), 85)
