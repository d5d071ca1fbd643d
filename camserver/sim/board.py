"""The board's side of board control in the simulator: an OV2640's settings, their effect on the
picture, and an update downloaded and checked as arduino-esp32's HTTPUpdate and the firmware do."""

from __future__ import annotations

import hashlib
from typing import Any

import aiohttp
import cv2
import numpy as np

from ..board.firmware import OTA_SLOT_BYTES

DOWNLOAD_TIMEOUT_S = 30.0
# An OV2640's settings after esp_camera_init(), as its status reports them.
SENSOR_DEFAULTS: dict[str, Any] = {
    "brightness": 0, "contrast": 0, "saturation": 0, "sharpness": 0, "special_effect": 0, "awb": True,
    "awb_gain": True, "wb_mode": 0, "aec": True, "aec2": False, "ae_level": 0, "aec_value": 168, "agc": True,
    "agc_gain": 0, "gainceiling": 0, "bpc": False, "wpc": True, "raw_gma": True, "lenc": True, "hmirror": False,
    "vflip": False, "dcw": True, "colorbar": False, "lamp": 0,
}
OV2640_UNSUPPORTED = ("sharpness",)


def apply_picture_settings(img: np.ndarray, settings: dict[str, Any]) -> np.ndarray:
    """The picture as the sensor would deliver it: brightness, contrast, mirror/flip, and the flash LED."""
    gain = 1.0 + 0.25 * settings.get("contrast", 0)
    offset = 24.0 * settings.get("brightness", 0) + 0.8 * settings.get("lamp", 0)  # the LED lights the scene
    if gain != 1.0 or offset:
        img = cv2.convertScaleAbs(img, alpha=gain, beta=offset + 128.0 * (1.0 - gain))
    if settings.get("hmirror") and settings.get("vflip"):
        img = cv2.flip(img, -1)
    elif settings.get("hmirror"):
        img = cv2.flip(img, 1)
    elif settings.get("vflip"):
        img = cv2.flip(img, 0)
    return img


class UpdateFailed(Exception):
    """A firmware update the board gave up on; the text is what its status reports."""


async def download_update(request: dict[str, Any], firmware: str) -> bytes:
    """GET the image as arduino-esp32's HTTPUpdate does and check it as the firmware does.

    Raises:
        UpdateFailed: with the text the firmware's status would report.
    """
    timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(request["ota_url"], headers={"x-ESP32-version": firmware}) as resp:
                if resp.status == 404:
                    raise UpdateFailed("File Not Found (404) (-102)")
                if resp.status != 200:
                    raise UpdateFailed("Wrong HTTP Code (-104)")
                length = resp.headers.get("Content-Length")
                if not length or int(length) <= 0:
                    raise UpdateFailed("Server Did Not Report Size (-101)")
                if int(length) > OTA_SLOT_BYTES:
                    raise UpdateFailed("Not Enough space (-100)")
                data = await resp.read()
                header_md5 = resp.headers.get("x-MD5", "")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpdateFailed(f"HTTP error: {exc or type(exc).__name__} (-1)") from None
    if not data or data[0] != 0xE9:
        raise UpdateFailed("Verify Bin Header Failed (-106)")
    if len(data) != int(length):
        raise UpdateFailed("Update error: Stream Read Timeout (6)")
    written = hashlib.md5(data).hexdigest()
    if header_md5 and header_md5.lower() != written:
        raise UpdateFailed("Update error: MD5 Check Failed (7)")  # Update.end() against x-MD5
    if written != request["ota_md5"]:
        raise UpdateFailed(f"md5 mismatch: wrote {written}")  # the firmware's own check
    return data
