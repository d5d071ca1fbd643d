"""The camera simulator against a real server: frames, hello/status, control, reconnects, sources."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import websockets

from camserver.app import CamServer
from camserver.sim.simcam import Backoff, CaptureSource, FolderSource, SceneSource, SimCamera, open_source
from conftest import FakeDetector, make_config, mjpeg, running_server, wait_for


async def test_simcam_streams_with_hello_and_status(http):
    """simcam says hello as JSON, sends paced JPEG frames, and its status shows in /api/cameras."""
    async with running_server(FakeDetector()) as srv:
        cam = SimCamera(f"ws://127.0.0.1:{srv.server.ws_port}", "sim", SceneSource(), fps=20, size=(320, 240),
                        max_frames=10)
        await asyncio.wait_for(cam.run(), 20)
        camera = srv.server.hub.get("sim")
        await wait_for(lambda: camera.frames_received == 10)
        assert camera.frames_rejected == 0
        assert camera.hello["type"] == "hello" and camera.hello["camera_id"] == "sim"
        async with http.get(f"{srv.http}/api/cameras") as resp:
            sim = (await resp.json())[0]
        assert sim["width"] == 320 and sim["height"] == 240
        assert sim["status"]["type"] == "status" and sim["status"]["frame_size"] == "QVGA"


async def test_control_endpoint_reaches_the_camera(http):
    """POST /api/cameras/<id>/control changes the simulated camera's size and fps; bad requests are refused."""
    async with running_server(FakeDetector()) as srv:
        cam = SimCamera(f"ws://127.0.0.1:{srv.server.ws_port}", "ctl", SceneSource(), fps=20, size=(320, 240))
        task = asyncio.create_task(cam.run())
        try:
            camera = await _registered(srv, "ctl")
            await wait_for(lambda: camera.size == (320, 240))
            url = f"{srv.http}/api/cameras/ctl/control"
            async with http.post(url, json={"framesize": "QQVGA", "fps": 15, "quality": 20}) as resp:
                assert resp.status == 202, await resp.text()
            await wait_for(lambda: camera.size == (160, 120), what="new frame size")
            await wait_for(lambda: (camera.status or {}).get("max_fps") == 15, what="status reply")
            assert camera.status["quality"] == 20
            for body, words in (({"framesize": "HUGE"}, "framesize"), ({"colour": 1}, "unknown key"), ({}, "no setting"),
                                ({"fps": 0}, "fps"), ([1], "JSON object")):
                async with http.post(url, json=body) as resp:
                    assert resp.status == 400
                    assert words in (await resp.json())["detail"]
            async with http.post(url, data=b"{not json", headers={"Content-Type": "application/json"}) as resp:
                assert resp.status == 400
            async with http.post(url, data=b'{"fps": 5}') as resp:
                assert resp.status == 415, "a write's body must say it is JSON"
            async with http.post(f"{srv.http}/api/cameras/ghost/control", json={"fps": 5}) as resp:
                assert resp.status == 404
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await wait_for(lambda: not camera.connected)
        async with http.post(url, json={"fps": 5}) as resp:
            assert resp.status == 409
            assert (await resp.json())["error"] == "camera offline"


async def _registered(srv, camera_id: str):
    await wait_for(lambda: srv.server.hub.get(camera_id) is not None and srv.server.hub.get(camera_id).connected)
    return srv.server.hub.get(camera_id)


async def test_simcam_reconnects_after_a_server_restart(http):
    """Server stops and comes back on the same port: simcam reconnects with backoff and frames flow again."""
    config = make_config()
    first = CamServer(config, detector_factory=lambda: FakeDetector())
    await first.start()
    port = first.ws_port
    cam = SimCamera(f"ws://127.0.0.1:{port}", "phoenix", SceneSource(), fps=20, size=(320, 240))
    task = asyncio.create_task(cam.run())
    second = None
    try:
        await wait_for(lambda: (c := first.hub.get("phoenix")) is not None and c.frames_processed >= 3)
        await first.stop()
        await wait_for(lambda: cam.backoff.attempt >= 1, what="simcam noticing the loss")
        second = CamServer(make_config(ingest={"port": port}), detector_factory=lambda: FakeDetector())
        await second.start()
        await wait_for(lambda: (c := second.hub.get("phoenix")) is not None and c.frames_processed >= 3,
                       timeout=40, what="frames after the restart")
        assert cam.connections == 2
        assert second.hub.get("phoenix").hello["camera_id"] == "phoenix"  # a fresh hello on the new connection
        async with mjpeg(http, f"http://127.0.0.1:{second.http_port}/cameras/phoenix/stream.mjpg") as viewer:
            assert (await viewer.next_live()).seq > 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if second is not None:
            await second.stop()


async def test_simcam_sends_the_bearer_token():
    """With --token, the handshake carries Authorization: Bearer <token>, as the firmware sends it."""
    seen = []

    async def handler(ws):
        seen.append((ws.request.path, ws.request.headers.get("Authorization")))
        await ws.recv()  # the hello
        await ws.close()

    async with websockets.serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        cam = SimCamera(f"ws://127.0.0.1:{port}", "tok", SceneSource(), token="s3cret", max_frames=1)
        task = asyncio.create_task(cam.run())
        await wait_for(lambda: seen)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert seen[0] == ("/ws/tok", "Bearer s3cret")


def test_backoff_is_exponential_capped_and_jittered():
    """Delays double up to the cap, each drawn from [ceiling/2, ceiling]."""
    b = Backoff(0.5, 30)
    delays = [b.next_delay() for _ in range(12)]
    ceilings = [min(30, 0.5 * 2**i) for i in range(12)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings))
    assert max(delays) <= 30
    b.reset()
    assert b.next_delay() <= 0.5


def test_sources_folder_and_video(tmp_path):
    """A folder of images and a video file both yield frames (the video loops)."""
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), np.full((60, 80, 3), i * 50, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    folder = FolderSource(tmp_path)
    assert [folder.read().shape for _ in range(4)] == [(60, 80, 3)] * 4
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (80, 60))
    assert writer.isOpened(), "OpenCV cannot write MJPG AVI here"
    for i in range(3):
        writer.write(np.full((60, 80, 3), i * 60, np.uint8))
    writer.release()
    capture = open_source(str(video))
    assert isinstance(capture, CaptureSource)
    assert all(capture.read() is not None for _ in range(7))  # more frames than the file: it loops
    with pytest.raises(ValueError):
        open_source(str(tmp_path / "missing.mp4"))


async def test_simcam_command_line_runs_several_cameras():
    """`python -m camserver.sim --cameras 3 --frames 5` streams three cameras and exits 0."""
    async with running_server(FakeDetector()) as srv:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "camserver.sim", "--url", f"ws://127.0.0.1:{srv.server.ws_port}",
            "--cameras", "3", "--frames", "5", "--fps", "20", "--size", "QVGA",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, out.decode()
        hub = srv.server.hub
        await wait_for(lambda: all((c := hub.get(f"sim-{i}")) and c.frames_received == 5 for i in (1, 2, 3)))


def test_demo_starts_server_and_camera_and_stops_on_ctrl_c(tmp_path):
    """`python -m camserver.sim.demo` offline: falls back to yolo11n.yaml saying why, streams, Ctrl-C exits 0."""
    import time
    import urllib.request

    env = dict(os.environ, YOLO_OFFLINE="1")
    with subprocess.Popen(
        [sys.executable, "-m", "camserver.sim.demo", "--host", "127.0.0.1", "--ws-port", "0", "--http-port", "0",
         "--imgsz", "320"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:
        try:
            line = proc.stdout.readline()  # blocks until the demo is up, or EOF if it died
            assert line.startswith("demo: open http://localhost:"), line + proc.stderr.read()
            base = line.split()[2].rstrip("/")
            deadline = time.monotonic() + 30
            while True:
                with urllib.request.urlopen(f"{base}/api/cameras", timeout=5) as resp:
                    cams = json.load(resp)
                if cams and cams[0]["frames_processed"] >= 2:
                    break
                assert time.monotonic() < deadline, cams
                time.sleep(0.2)
            assert cams[0]["id"] == "demo"
            proc.send_signal(2)  # Ctrl-C
            assert proc.wait(timeout=10) == 0
            err = proc.stderr.read()
            assert "random weights" in err and "meaningless" in err
        finally:
            if proc.poll() is None:
                proc.kill()
