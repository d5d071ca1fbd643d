"""`python -m camserver` as a user runs it: exit codes, one-line errors, SIGTERM, the real model."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time

import pytest

from serverproc import ServerProcess
from conftest import WAIT_S, connect_camera, decode, make_jpeg, mjpeg


def cli(*args: str, cwd=None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, YOLO_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "camserver", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def test_config_error_is_one_line_exit_2(tmp_path):
    """A bad config file: exit 2, one line naming the key, no traceback."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[detect]\niou = 2\n")
    result = cli("--config", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "detect.iou = 2" in result.stderr and "Traceback" not in result.stderr


def test_check_config_validates_and_exits(tmp_path):
    """--check-config on the shipped config.toml exits 0 without starting anything."""
    result = cli("--check-config", "--config", "config.toml", cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


@pytest.mark.parametrize("model", ["yolo11n.pt", "missing/model.pt"])
def test_unloadable_model_is_one_line_exit_3(tmp_path, model):
    """Offline with no weights, or a missing file: one line saying what to do, exit 3, no traceback."""
    result = cli("--model", model, "--ws-port", "0", "--http-port", "0", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("camserver: cannot load model") and model in last
    assert "Traceback" not in result.stderr
    if model == "yolo11n.pt":
        assert "--model yolo11n.yaml" in last


async def test_sigterm_closes_cameras_ends_streams_exits_0(tmp_path, http):
    """16. SIGTERM with 3 cameras and 20 viewers: cameras get 1001, every stream ends, exit 0 within 5 s."""
    server = await ServerProcess.start("--model", "none", cwd=tmp_path, timeout=WAIT_S * 3)
    base = f"http://127.0.0.1:{server.http_port}"
    cams = [await connect_camera(server.ws(f"c{i}")) for i in range(3)]
    for cam in cams:
        await cam.send(make_jpeg(1))
    async with contextlib.AsyncExitStack() as stack:
        urls = [f"{base}/cameras/c{i % 3}/stream.mjpg" for i in range(19)] + [f"{base}/stream.mjpg"]
        viewers = [await stack.enter_async_context(mjpeg(http, url)) for url in urls]
        for viewer in viewers:
            await viewer.next_live()
        started = time.monotonic()
        rc = await server.stop(timeout=5)
        assert time.monotonic() - started < 5
        assert rc == 0, "".join(server.lines)

        async def stream_ends(viewer):
            with pytest.raises(EOFError):  # the chunked body ends cleanly
                while True:
                    await viewer.next(timeout=5)

        await asyncio.gather(*(stream_ends(v) for v in viewers))
    for cam in cams:
        await asyncio.wait_for(cam.wait_closed(), 5)
        assert cam.close_code == 1001
    assert not any("Traceback" in line for line in server.lines), "".join(server.lines)


async def test_real_ultralytics_model_offline(tmp_path, http):
    """YOLO_OFFLINE=1 python -m camserver --model yolo11n.yaml detects and streams frames (random weights)."""
    server = await ServerProcess.start("--model", "yolo11n.yaml", "--imgsz", "320", cwd=tmp_path, timeout=120)
    base = f"http://127.0.0.1:{server.http_port}"
    try:
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 200
            assert (await resp.json())["model"] == "yolo11n.yaml"
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/real")
        async with mjpeg(http, f"{base}/cameras/real/stream.mjpg") as viewer:
            frame = make_jpeg(1, 640, 480)
            await cam.send(frame)
            part = await viewer.next_live(timeout=60)
            # boxes are drawn when there are some; random weights at conf 0.25 rarely give any
            assert part.seq == 1 and decode(part.jpeg).shape == (480, 640, 3)
        async with http.get(f"{base}/api/cameras") as resp:
            real = (await resp.json())[0]
        assert real["frames_processed"] == 1 and real["frames_detected"] == 1 and real["inference_ms"] > 0
        async with http.get(f"{base}/api/cameras/real/detections") as resp:
            assert isinstance((await resp.json())["detections"], list)
        await cam.close()
    finally:
        assert await server.stop(timeout=10) == 0


def test_unwritable_storage_dir_is_one_line_exit_2(tmp_path):
    """storage.dir that cannot be created: exit 2, one line naming storage.dir, no traceback."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    config = tmp_path / "c.toml"
    config.write_text(f'[storage]\ndir = "{blocker / "data"}"\n')
    result = cli("--config", str(config), "--model", "none", "--ws-port", "0", "--http-port", "0", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("camserver:")]
    assert len(lines) == 1 and "storage.dir" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
