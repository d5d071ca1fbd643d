"""Camera control messages: {"framesize": "SVGA", "quality": 12, "fps": 8}, checked before they are sent.

The same rules are in firmware/esp32_stream/camserver_logic.h; a test compares the tables.
"""

from __future__ import annotations

from typing import Any

# Frame sizes a camera accepts by name, with their pixel sizes (esp32-camera's framesize_t names).
FRAME_SIZES: dict[str, tuple[int, int]] = {
    "QQVGA": (160, 120),
    "QVGA": (320, 240),
    "CIF": (400, 296),
    "HVGA": (480, 320),
    "VGA": (640, 480),
    "SVGA": (800, 600),
    "XGA": (1024, 768),
    "HD": (1280, 720),
    "SXGA": (1280, 1024),
    "UXGA": (1600, 1200),
}
QUALITY_RANGE = (4, 63)  # esp_camera JPEG quality: lower is better
FPS_RANGE = (0.1, 30.0)


class ControlError(ValueError):
    """The control message is not valid; the text says why."""


def validate_control(body: Any) -> dict[str, Any]:
    """Check a control message and return it with only the known keys.

    Raises:
        ControlError: not an object, an unknown key, no setting, or a value out of range.
    """
    if not isinstance(body, dict):
        raise ControlError("the body must be a JSON object")
    body = {k: v for k, v in body.items() if k != "type"}
    unknown = set(body) - {"framesize", "quality", "fps"}
    if unknown:
        raise ControlError(f"unknown key(s): {', '.join(sorted(unknown))}; allowed: framesize, quality, fps")
    if not body:
        raise ControlError("no setting given; allowed: framesize, quality, fps")
    if "framesize" in body and body["framesize"] not in FRAME_SIZES:
        raise ControlError(f"framesize must be one of {', '.join(FRAME_SIZES)}")
    if "quality" in body:
        q = body["quality"]
        if isinstance(q, bool) or not isinstance(q, int) or not QUALITY_RANGE[0] <= q <= QUALITY_RANGE[1]:
            raise ControlError(f"quality must be an integer from {QUALITY_RANGE[0]} to {QUALITY_RANGE[1]}")
    if "fps" in body:
        f = body["fps"]
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not FPS_RANGE[0] <= f <= FPS_RANGE[1]:
            raise ControlError(f"fps must be a number from {FPS_RANGE[0]} to {FPS_RANGE[1]:g}")
    return body
