"""The camera view shows what the firmware's status says about itself: a rolled-back update, a refused quality."""

from __future__ import annotations

import json

import pytest

from browser import CHROMIUM, chromium
from conftest import connect_camera, running_server, tagged_jpeg, wait_for

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")

FIGURE = """(() => { const dt = [...document.querySelectorAll('dt')].find((e) => e.textContent === %s);
  return dt ? dt.nextElementSibling.textContent : null; })()"""


async def test_camera_view_shows_a_rolled_back_update_and_a_refused_quality():
    """A board whose status says "ota": "rolled_back" and "quality_refused": 4 (the firmware's previous image after a
    rollback, at UXGA): the camera view names the firmware and the rollback, and the quality in use and refused."""
    async with running_server(None) as srv:
        cam = await connect_camera(srv.ws("roof"))
        try:
            await cam.send(json.dumps({"type": "hello", "camera_id": "roof", "firmware": "1.1.0", "frame_size": "UXGA",
                                       "quality": 12, "free_heap": 150000, "rssi": -60}))
            await cam.send(tagged_jpeg(1, 1))
            await cam.send(json.dumps({"type": "status", "fps_sent": 8.0, "free_heap": 150000, "rssi": -60,
                                       "reconnects": 0, "frames_sent": 1, "firmware": "1.1.0", "frame_size": "UXGA",
                                       "quality": 12, "quality_refused": 4, "ota": "rolled_back"}))
            await wait_for(lambda: (srv.server.hub.get("roof").status or {}).get("ota") == "rolled_back", what="status")
            async with chromium(f"{srv.http}/#/camera/roof") as browser:
                firmware = await browser.wait(FIGURE % '"Firmware"', what="the firmware figure")
                assert firmware == "1.1.0 (the last update was rolled back)"
                quality = await browser.wait(FIGURE % '"JPEG quality"', what="the quality figure")
                assert quality == "12 (4 does not fit the board's frame buffer)"
                await browser.screenshot("camera-firmware-rolled-back")
                assert browser.errors == [], browser.errors
        finally:
            await cam.close()
