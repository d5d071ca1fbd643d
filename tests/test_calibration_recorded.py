"""INT8 calibration's frames from the recordings (detect/recorded.py): two cameras record continuously through a
real server (H.264 MP4 segments); up to N frames are taken from them shared out over both cameras and evenly over
each camera's files, decoded from the middle of each file to the picture the camera sent; a damaged file is skipped;
the command line's default takes the snapshots (at most half) and the recordings together."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from pathlib import Path

import cv2
import numpy as np

import pytest

from camserver.detect.backends import openvino
from camserver.detect.calibrate import gathered_frames
from camserver.web import calibration
from camserver.detect.recorded import evenly, recorded_frames, recording_files, shares
from conftest import connect_camera, make_config, wait_for
from camserver.app import CamServer


def picture(level: int, width: int = 320, height: int = 240) -> bytes:
    """A camera frame of one flat grey level (what each camera sends, so its frames tell which camera)."""
    return cv2.imencode(".jpg", np.full((height, width, 3), level, np.uint8))[1].tobytes()


async def record(storage: Path, seconds: float = 7.0) -> None:
    config = make_config(storage={"dir": str(storage)}, record={"mode": "continuous", "segment_s": 2}, events={"enabled": False})
    async with CamServer(config, detector_factory=None) as server, AsyncExitStack() as stack:
        cams = {name: await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/{name}") for name in ("door", "yard")}
        for cam in cams.values():
            stack.push_async_callback(cam.close)
        began = time.monotonic()
        for seq in range(int(seconds * 10)):
            await cams["door"].send(picture(60))
            await cams["yard"].send(picture(200))
            await asyncio.sleep(max(0.0, began + (seq + 1) / 10 - time.monotonic()))
    # stopped: every file finished
    await wait_for(lambda: all(len(v) >= 3 for v in recording_files(storage).values()) and len(recording_files(storage)) == 2,
                   what="three segments or more of each camera")


async def test_frames_come_from_both_cameras_recordings_spread_and_decoded(tmp_path):
    storage = tmp_path / "data"
    await record(storage)
    files = recording_files(storage)
    assert sorted(files) == ["door", "yard"]
    damaged = files["door"][1]
    damaged.write_bytes(damaged.read_bytes()[:200])  # a file cut short: skipped, the rest go on
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    frames = recorded_frames(storage, 4, scratch)
    by_camera = {"door": [], "yard": []}
    for path in frames:
        by_camera[path.stem.split("-", 1)[1]].append(cv2.imread(str(path)))
    assert len(by_camera["yard"]) == 2 and 1 <= len(by_camera["door"]) <= 2, frames
    for camera, level in (("door", 60), ("yard", 200)):
        for image in by_camera[camera]:
            assert image.shape == (240, 320, 3)
            assert abs(float(image.mean()) - level) < 8, (camera, image.mean())  # the picture that camera sent
    # the command line's default: snapshots (at most half of the frames) and the recordings
    snaps = storage / "snapshots"
    snaps.mkdir(exist_ok=True)
    for i in range(10):
        (snaps / f"e{i:02d}.jpg").write_bytes(picture(120))
    scratch2 = tmp_path / "scratch2"
    scratch2.mkdir()
    mixed = gathered_frames(storage, 6, scratch2)
    recorded = sum(p.parent == scratch2 for p in mixed)  # 3 asked for (half); the damaged file may be one of them
    assert len(mixed) == 6 and recorded >= 2, mixed


def test_shares_and_spread():
    """Shared out evenly, a camera's spare to the others; within a camera, the middle of equal stretches."""
    assert shares({"a": 1, "b": 10, "c": 3}, 7) == {"a": 1, "b": 3, "c": 3}
    assert shares({"a": 2, "b": 2}, 10) == {"a": 2, "b": 2}
    assert shares({}, 5) == {}
    paths = [Path(f"{i:02d}.mp4") for i in range(10)]
    assert evenly(paths, 2) == [Path("02.mp4"), Path("07.mp4")]
    assert evenly(paths, 20) == paths


# the quantizing child stood in for (NNCF is an optional extra; what is tested is what the server hands it): lists
# the frames folder it was given, prints an INT8 folder's path as the real one does
LISTING = """
import argparse, pathlib
parser = argparse.ArgumentParser()
parser.add_argument("--frames")
args, _ = parser.parse_known_args()
pathlib.Path("frames.txt").write_text("\\n".join(sorted(p.name for p in pathlib.Path(args.frames).iterdir())))
print(pathlib.Path.cwd() / "listed-int8_openvino_model")
"""


@pytest.mark.skipif(not openvino.available(), reason="openvino not installed: calibration refuses to start (409)")
async def test_the_calibration_api_hands_the_quantizer_frames_of_the_recordings(tmp_path, monkeypatch, http):
    """POST /api/detector/calibrate {"frames": 6} on an installation with two cameras' recordings and no live camera:
    the job ends done, and the folder the quantizing process got held 6 frames, 3 from each camera's recordings."""
    storage = tmp_path / "data"
    await record(storage)
    (tmp_path / "listing.py").write_text(LISTING)
    monkeypatch.chdir(tmp_path)  # python -m listing finds it here
    monkeypatch.setattr(calibration, "CALIBRATOR", "listing")
    monkeypatch.setattr(calibration, "nncf_installed", lambda: True)
    config = make_config(storage={"dir": str(storage)}, detect={"model": "yolo11n.yaml"}, events={"enabled": False})
    async with CamServer(config, detector_factory=None) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        async with http.post(f"{base}/api/detector/calibrate", json={"frames": 6}) as resp:
            assert resp.status == 202, await resp.text()
        deadline = time.monotonic() + 60
        while True:
            async with http.get(f"{base}/api/detector/calibrate") as resp:
                job = await resp.json()
            if job["state"] in ("done", "failed"):
                break
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.2)
    assert job["state"] == "done" and job["frames"] == 6, job
    names = (tmp_path / "frames.txt").read_text().split()
    assert sum(n.endswith("-door.jpg") for n in names) == 3 and sum(n.endswith("-yard.jpg") for n in names) == 3, names
