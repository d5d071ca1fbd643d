"""Camera control messages, checked before they are sent.

A settings message: {"framesize": "SVGA", "quality": 12, "fps": 8, "brightness": 1, "hmirror": true, "lamp": 30}
(any of the keys). An update message: {"ota_url": ..., "ota_md5": ..., "ota_size": ...}, sent only by the
server's firmware route.

The same rules are in firmware/esp32_stream/camserver_logic.h; a test compares the tables.
"""

from __future__ import annotations

import re
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

# esp32-camera sensor settings (sensor_t's set_* calls) and the flash LED, in the order the firmware
# applies them: the automatic modes before the values they gate (aec before aec_value, agc before
# agc_gain, awb_gain before wb_mode). name -> (lowest, highest, is a switch). A switch takes true/false
# (or 0/1) and is reported as true/false.
SENSOR_SETTINGS: dict[str, tuple[int, int, bool]] = {
    "brightness": (-2, 2, False),
    "contrast": (-2, 2, False),
    "saturation": (-2, 2, False),
    "sharpness": (-2, 2, False),  # not every sensor has it (the OV2640 does not): reported as unsupported
    "special_effect": (0, 6, False),  # none, negative, grayscale, red, green, blue, sepia
    "awb": (0, 1, True),  # automatic white balance (set_whitebal)
    "awb_gain": (0, 1, True),
    "wb_mode": (0, 4, False),  # auto, sunny, cloudy, office, home
    "aec": (0, 1, True),  # automatic exposure (set_exposure_ctrl)
    "aec2": (0, 1, True),  # the DSP's exposure control
    "ae_level": (-2, 2, False),
    "aec_value": (0, 1200, False),  # manual exposure, when aec is off
    "agc": (0, 1, True),  # automatic gain (set_gain_ctrl)
    "agc_gain": (0, 30, False),  # manual gain, when agc is off
    "gainceiling": (0, 6, False),  # 2x .. 128x
    "bpc": (0, 1, True),  # black pixel correction
    "wpc": (0, 1, True),  # white pixel correction
    "raw_gma": (0, 1, True),
    "lenc": (0, 1, True),  # lens correction
    "hmirror": (0, 1, True),
    "vflip": (0, 1, True),
    "dcw": (0, 1, True),  # downsize
    "colorbar": (0, 1, True),  # test pattern
    "lamp": (0, 100, False),  # flash LED brightness in percent (LEDC PWM); boards without one ignore it
}
SETTING_KEYS = ("framesize", "quality", "fps", *SENSOR_SETTINGS)
OTA_KEYS = ("ota_url", "ota_md5", "ota_size")
MAX_OTA_URL = 159  # the firmware's buffer holds 159 characters and the terminating NUL
MD5_RE = re.compile(r"^[0-9a-f]{32}$")


class ControlError(ValueError):
    """The control message is not valid; the text says why, naming the key and what it allows."""

    def __init__(self, text: str, key: str | None = None, allowed: str | None = None) -> None:
        super().__init__(text)
        self.key = key
        self.allowed = allowed


def allowed_values(key: str) -> str:
    """What a setting accepts, in words (used in error messages and by config checks)."""
    if key == "framesize":
        return f"one of {', '.join(FRAME_SIZES)}"
    if key == "quality":
        return f"an integer from {QUALITY_RANGE[0]} to {QUALITY_RANGE[1]}"
    if key == "fps":
        return f"a number from {FPS_RANGE[0]} to {FPS_RANGE[1]:g}"
    lo, hi, switch = SENSOR_SETTINGS[key]
    return "true or false" if switch else f"an integer from {lo} to {hi}"


def check_setting(key: str, value: Any) -> Any:
    """The value a setting is sent with (switches become bools), or ControlError naming key and range."""
    if key not in SETTING_KEYS:
        raise ControlError(f"unknown key: {key}; allowed: {', '.join(SETTING_KEYS)}", key, ", ".join(SETTING_KEYS))
    allowed = allowed_values(key)
    bad = ControlError(f"{key} must be {allowed} (got {value!r})", key, allowed)
    if key == "framesize":
        if value not in FRAME_SIZES:
            raise bad
        return value
    if key == "fps":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not FPS_RANGE[0] <= value <= FPS_RANGE[1]:
            raise bad
        return value
    if key == "quality":
        lo, hi, switch = QUALITY_RANGE[0], QUALITY_RANGE[1], False
    else:
        lo, hi, switch = SENSOR_SETTINGS[key]
    if switch and isinstance(value, bool):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise bad
    return bool(value) if switch else value


def validate_control(body: Any) -> dict[str, Any]:
    """Check a settings message and return it with only the known keys, switches as bools.

    Raises:
        ControlError: not an object, an unknown key, no setting, or a value out of range.
    """
    if not isinstance(body, dict):
        raise ControlError("the body must be a JSON object")
    body = {k: v for k, v in body.items() if k != "type"}
    unknown = sorted(set(body) - set(SETTING_KEYS))
    if unknown:
        raise ControlError(f"unknown key(s): {', '.join(unknown)}; allowed: {', '.join(SETTING_KEYS)}",
                           unknown[0], ", ".join(SETTING_KEYS))
    if not body:
        raise ControlError(f"no setting given; allowed: {', '.join(SETTING_KEYS)}")
    return {key: check_setting(key, value) for key, value in body.items()}


def for_log(message: dict[str, Any]) -> dict[str, Any]:
    """A control message as it may be logged: an update message without its one-time link.

    The link's token is the only secret guarding the image (which holds the Wi-Fi password and the
    camera token): it is never logged, at any level; the size and MD5 say which image went out.
    """
    if not is_ota(message):
        return message
    return {k: v for k, v in message.items() if k != "ota_url"}


def is_ota(body: Any) -> bool:
    """Whether a message from the server is an update message (it names any ota_ key)."""
    return isinstance(body, dict) and any(k in body for k in OTA_KEYS)


def validate_ota(body: Any) -> dict[str, Any]:
    """Check an update message: an http:// URL, a lower-case hex MD5 and a positive size, nothing else.

    Raises:
        ControlError: a key missing or unknown, or a value the firmware would refuse.
    """
    if not isinstance(body, dict):
        raise ControlError("the body must be a JSON object")
    body = {k: v for k, v in body.items() if k != "type"}
    if set(body) != set(OTA_KEYS):
        raise ControlError(f"an update message carries {', '.join(OTA_KEYS)} and nothing else")
    url, md5, size = body["ota_url"], body["ota_md5"], body["ota_size"]
    if not isinstance(url, str) or not url.startswith("http://") or len(url) > MAX_OTA_URL or '"' in url or "\\" in url:
        raise ControlError(f"ota_url must be an http:// URL of at most {MAX_OTA_URL} characters", "ota_url")
    if not isinstance(md5, str) or not MD5_RE.match(md5):
        raise ControlError("ota_md5 must be 32 lower-case hex digits", "ota_md5")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ControlError("ota_size must be a positive integer", "ota_size")
    return dict(body)
