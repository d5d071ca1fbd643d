"""A first run: the default model offline, the demo's person scene, and the shapes model recognising it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import cv2
import pytest

from camserver.config import DetectConfig
from camserver.detect.fallback import FALLBACK_MODEL, offline_fallback
from camserver.sim.scenes import PersonScene
from camserver.sim.simcam import SceneSource, open_source
from conftest import WAIT_S, connect_camera, make_jpeg, mjpeg
from serverproc import ServerProcess

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
SHAPES = TESTDATA / "shapes-yolo11n.pt"
needs_shapes = pytest.mark.skipif(not SHAPES.exists(), reason="../shared/testdata/shapes-yolo11n.pt not beside the checkout")


def iou(a, b) -> float:
    """Intersection over union of two x1 y1 x2 y2 boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def test_only_the_default_model_falls_back(tmp_path, monkeypatch):
    """yolo11n.pt (the default, not a local file) gives way to yolo11n.yaml; any other model, or a local file, does not."""
    monkeypatch.chdir(tmp_path)
    default = DetectConfig()
    assert offline_fallback(default) == default.model_copy(update={"model": FALLBACK_MODEL})
    for model in ("yolo11s.pt", "models/yolo11n.pt", "yolo11n.yaml", "none"):
        assert offline_fallback(DetectConfig(model=model)) is None
    (tmp_path / "yolo11n.pt").write_bytes(b"not a checkpoint")  # a broken local file is the user's error to see
    assert offline_fallback(default) is None


async def test_default_model_offline_falls_back_loudly_and_streams(tmp_path, http):
    """No --model, no yolo11n.pt, no internet: a WARNING, /healthz says random weights, and the camera streams."""
    server = await ServerProcess.start("--imgsz", "320", cwd=tmp_path, timeout=120)
    try:
        warnings = [line for line in server.lines if " WARNING " in line and "RUNNING yolo11n.yaml INSTEAD" in line]
        assert len(warnings) == 1 and "random weights" in warnings[0] and "meaningless" in warnings[0], server.lines
        assert not (tmp_path / "yolo11n.pt").exists()
        async with http.get(f"{server.http}/healthz") as resp:
            health = await resp.json()
        assert resp.status == 200 and health["model"] == "yolo11n.yaml" and health["model_random_weights"] is True
        cam = await connect_camera(server.ws("first"))
        async with mjpeg(http, f"{server.http}/cameras/first/stream.mjpg") as viewer:
            await cam.send(make_jpeg(1, 640, 480))
            part = await viewer.next_live(timeout=60)
            assert part.seq == 1
        await cam.close()
    finally:
        assert await server.stop(timeout=15) == 0


def test_scene_flag_picks_the_generated_scene():
    """--scene person walks a person across the generated scene; it cannot go with a file source."""
    assert isinstance(open_source("scene", "person"), PersonScene)
    assert isinstance(open_source("scene"), SceneSource)
    with pytest.raises(ValueError, match="--scene person"):
        open_source("clip.mp4", "person")


def test_person_scene_walks_across_then_pauses():
    """A crossing enters at one edge and leaves at the other, the next comes back the other way; pauses are empty."""
    scene = PersonScene(walk_frames=10, pause_frames=5)
    first = [scene.person_at(i) for i in range(10)]
    assert first[0][2] <= 0 + 1 and first[-1][0] >= 640 - 1  # from just outside the left edge to the right one
    assert [b[0] for b in first] == sorted(b[0] for b in first)
    assert all(scene.person_at(i) is None for i in range(10, 15))
    back = [scene.person_at(i)[0] for i in range(15, 25)]
    assert back == sorted(back, reverse=True)
    img = scene.read()
    assert img.shape == (480, 640, 3) and scene.truth is None  # frame 0: only a sliver at the edge, clipped away
    for _ in range(4):
        scene.read()
    assert scene.truth is not None


@needs_shapes
@pytest.mark.parametrize("imgsz", [320, 640])
def test_the_shapes_model_sees_the_person_scene(imgsz):
    """The test model finds the walking person (IoU >= 0.5) in every frame where it is whole, and nothing in a
    pause; processing one frame in 6 (a slow CPU), the tracker still follows the crossing as one object."""
    from camserver.detect import UltralyticsDetector
    from camserver.events.tracker import CameraTracker

    detector = UltralyticsDetector(str(SHAPES), "cpu", 0.25, 0.45, imgsz)
    tracker = CameraTracker(max_disappeared_s=5.0)
    scene = PersonScene()
    whole = found = stray = 0
    tracks: set[int] = set()
    for i in range(250):  # one crossing and its pause
        img = scene.read()
        box, truth = scene.person_at(i), scene.truth
        if i % (6 if box is not None else 20):  # every 6th frame of the walk, every 20th of the pause
            continue
        jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])[1]  # as simcam sends it
        detections = detector.detect([cv2.imdecode(jpeg, cv2.IMREAD_COLOR)])[0]
        tracks |= {t.track_id for t in tracker.update(detections, (img.shape[1], img.shape[0]))}
        if truth is None:
            stray += len(detections)
        elif box[0] >= 0 and box[2] <= img.shape[1]:
            whole += 1
            found += any(d.class_name == "person" and iou(d.box, truth) >= 0.5 for d in detections)
    assert whole >= 18 and found == whole and stray == 0, (found, whole, stray)
    assert len(tracks) == 1, tracks


@needs_shapes
async def test_demo_with_the_shapes_model_gives_a_person_event_within_a_minute(tmp_path, http):
    """`make demo MODEL=../shared/testdata/shapes-yolo11n.pt`: a person event appears within 60 s of start-up."""
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndir = "{tmp_path / "data"}"\n[detect]\ncache_dir = "{tmp_path / "cache"}"\n'
                      'imgsz = 320\n')
    started = time.monotonic()
    server = await ServerProcess.start("--config", str(config), "--model", str(SHAPES), module="camserver.sim.demo",
                                       cwd=tmp_path, timeout=120)
    try:
        events: list[dict] = []
        async with asyncio.timeout(60):
            while not events:
                async with http.get(f"{server.http}/api/events?label=person") as resp:
                    events = (await resp.json())["events"]
                await asyncio.sleep(0.5)
        seconds = time.monotonic() - started
        assert events[0]["camera"] == "demo" and events[0]["score"] >= 0.7, events
        print(f"first person event {seconds:.1f} s after the demo started")
    finally:
        assert await server.stop(timeout=WAIT_S) == 0
