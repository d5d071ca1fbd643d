"""Hardening II: one camera never stops the others, and clients cannot crash, flood or confuse the server."""

from __future__ import annotations

import asyncio
import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from camserver.ingest.jpeg import MAX_SCANS, BadFrame, inspect_jpeg
from conftest import FakeDetector, connect_camera, feeding, make_jpeg, running_server, scan_bomb, wait_for


def progressive_jpeg(width: int = 640, height: int = 480) -> bytes:
    """What a real progressive encoder makes (libjpeg's standard script: 10 scans)."""
    buf = io.BytesIO()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8)).save(buf, "JPEG", progressive=True)
    return buf.getvalue()


def test_a_jpeg_of_thousands_of_scans_is_rejected_from_its_bytes():
    """The decode bomb (84,000 scans, 1 MB) is refused before any decode; real progressive JPEGs pass."""
    bomb = scan_bomb()
    assert len(bomb) < 1_100_000
    started = time.process_time()
    with pytest.raises(BadFrame) as info:
        inspect_jpeg(bomb, 2592, 1944)
    assert time.process_time() - started < 0.05
    assert info.value.reason == "too_many_scans" and "84" in str(info.value)
    real = progressive_jpeg()
    assert 1 < real.count(b"\xff\xda") <= MAX_SCANS
    assert (inspect_jpeg(real, 2592, 1944).width, inspect_jpeg(real, 2592, 1944).height) == (640, 480)


async def test_a_camera_sending_decode_bombs_does_not_slow_another(http):
    """One camera sends the bomb at 2 fps: another keeps >= 90% of its frames processed; the bombs are counted."""
    bomb = scan_bomb()
    async with running_server(FakeDetector()) as srv:
        good = await connect_camera(srv.ws("good"))
        bad = await connect_camera(srv.ws("bad"), max_size=None)
        await wait_for(lambda: srv.server.hub.get("good") is not None)
        camera = srv.server.hub.get("good")
        async with feeding(good, fps=10) as feed:
            for _ in range(8):  # 4 s at 2 fps
                await bad.send(bomb)
                await asyncio.sleep(0.5)
            sent = feed.sent
        await wait_for(lambda: camera.frames_processed + camera.frames_dropped >= sent, what="good frames handled")
        assert camera.frames_processed >= 0.9 * sent, (camera.frames_processed, sent)
        async with http.get(f"{srv.http}/api/cameras") as resp:
            bad_figures = next(c for c in await resp.json() if c["id"] == "bad")
        assert bad_figures["rejected"] == {"too_many_scans": 8} and bad_figures["frames_processed"] == 0
        async with http.get(f"{srv.http}/healthz") as resp:
            assert resp.status == 200
        await good.close()
        await bad.close()


async def test_healthz_is_degraded_while_a_cameras_detection_does_not_advance(http):
    """A frame stuck in the detector for over 5 s (below the stall timeout): /healthz 503 names the camera and why."""
    release = threading.Event()

    class Slow(FakeDetector):
        def detect(self, images):
            release.wait(8)
            return super().detect(images)

    async with running_server(Slow(), detect={"stall_timeout_s": 30}) as srv:
        cam = await connect_camera(srv.ws("slow"))
        try:
            async with feeding(cam, fps=5):
                deadline = time.monotonic() + 7.5
                while time.monotonic() < deadline:
                    async with http.get(f"{srv.http}/healthz") as resp:
                        health = await resp.json()
                    if resp.status == 503:
                        break
                    await asyncio.sleep(0.2)
            assert resp.status == 503 and health["status"] == "degraded", health
            assert "still in decode or inference" in health["lagging_cameras"]["slow"]
        finally:
            release.set()
        await wait_for(lambda: srv.server.hub.get("slow").frames_processed > 0)
        async with http.get(f"{srv.http}/healthz") as resp:
            assert resp.status == 200 and "lagging_cameras" not in await resp.json()
        await cam.close()
