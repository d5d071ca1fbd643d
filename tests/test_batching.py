"""Batched detection across cameras, through real sockets, with a fake batched detector that records every call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import pytest

from camserver.config import from_mapping
from camserver.detect.backends import detector_factory, export_shape, resolve_backend
from camserver.detect.backends import openvino as openvino_backend
from conftest import (
    FakeDetector,
    WAIT_S,
    connect_camera,
    decode,
    is_green,
    make_config,
    mjpeg,
    running_server,
    settled,
    tagged_jpeg,
    wait_for,
)


async def flood(cameras, seconds: float, fps: float = 50) -> None:
    """Every camera sends tagged frames (its index, a sequence number) at `fps` for `seconds`."""

    async def one(index, ws):
        for seq in range(1, int(seconds * fps) + 1):
            await ws.send(tagged_jpeg(index, seq % 1000))
            await asyncio.sleep(1 / fps)

    await asyncio.gather(*(one(i, ws) for i, ws in enumerate(cameras)))


@contextlib.asynccontextmanager
async def cameras(srv, n: int):
    """n connected cameras cam0..cam(n-1)."""
    conns = [await connect_camera(srv.ws(f"cam{i}")) for i in range(n)]
    try:
        yield conns
    finally:
        for ws in conns:
            await ws.close()


async def test_one_call_carries_several_cameras_never_two_frames_of_one():
    """4 cameras flooding a slow detector: calls hold several cameras' frames, never one camera twice, none twice in all."""
    detector = FakeDetector(delay_s=0.05, max_batch=8)
    async with running_server(detector) as srv, cameras(srv, 4) as conns:
        await flood(conns, seconds=2)
        await wait_for(lambda: settled(srv.server), what="pipeline empty")
        batches = detector.batches
        assert max(len(b) for b in batches) > 1, [len(b) for b in batches]
        for batch in batches:
            assert len({cam for cam, _ in batch}) == len(batch), batch  # never two frames of one camera
        tags = [tag for batch in batches for tag in batch]
        assert len(tags) == len(set(tags))  # no frame inferred twice
        hub = srv.server.hub
        scheduler = srv.server.scheduler
        assert detector.calls == sum(scheduler.camera_figures(c.id)["frames_detected"] for c in hub)
        for c in hub:  # every frame was streamed or replaced by a newer one; detection took what it could
            assert c.frames_processed + c.frames_dropped == c.frames_received
        async with srv_http(srv) as http, http.get(f"{srv.http}/healthz") as resp:
            detection = (await resp.json())["detection"]
        assert detection["backend"] == "fake" and detection["max_batch"] == 8 and detection["mean_batch"] > 1


@contextlib.asynccontextmanager
async def srv_http(srv):
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT_S)) as session:
        yield session


async def test_no_camera_starves_when_more_wait_than_fit():
    """6 cameras, batches of 2: each camera gets a fair share (least recently served first)."""
    detector = FakeDetector(delay_s=0.03, max_batch=2)
    async with running_server(detector) as srv, cameras(srv, 6) as conns:
        await flood(conns, seconds=3)
        await wait_for(lambda: settled(srv.server), what="pipeline empty")
        processed = [c.frames_processed for c in srv.server.hub]
        assert min(processed) >= 0.8 * max(processed), processed
        assert all(len(b) <= 2 for b in detector.batches)


async def test_lone_camera_goes_alone_at_once():
    """One camera and max_batch 32: each frame is inferred alone, as soon as it arrives (no batch timer)."""
    detector = FakeDetector(max_batch=32)
    async with running_server(detector) as srv, cameras(srv, 1) as (cam,):
        camera = None
        delays = []
        for seq in range(1, 11):
            sent = time.monotonic()
            await cam.send(tagged_jpeg(0, seq))
            camera = srv.server.hub.get("cam0")
            await wait_for(lambda: camera.frames_processed == seq, what=f"frame {seq} processed")
            delays.append(time.monotonic() - sent)
        assert [len(b) for b in detector.batches] == [1] * 10
        assert sorted(delays)[5] < 0.1, delays  # the median: no waiting for company


async def test_boxes_drawn_only_while_someone_watches_the_annotated_stream(http):
    """No viewer, or only a raw viewer: no draw or encode. An annotated viewer: every frame drawn, green."""
    detector = FakeDetector()
    async with running_server(detector) as srv, cameras(srv, 1) as (cam,):
        camera = None
        async with mjpeg(http, f"{srv.http}/cameras/cam0/stream.mjpg?raw=1") as raw:
            for seq in range(1, 6):
                await cam.send(tagged_jpeg(0, seq))
                assert (await raw.next_live()).seq == seq
            camera = srv.server.hub.get("cam0")
            await wait_for(lambda: camera.frames_received == 5 and settled(srv.server), what="5 frames handled")
        assert camera.frames_processed >= 1 and srv.server.scheduler.latest("cam0")[0].seq == 5
        assert detector.draws == 0
        assert camera.annotated.frame.jpeg == tagged_jpeg(0, 5)  # streamed as the camera sent it, not drawn
        async with mjpeg(http, f"{srv.http}/cameras/cam0/stream.mjpg") as viewer:
            first = await viewer.next_live()
            assert first.seq == 5 and is_green(decode(first.jpeg))  # the latest frame, drawn on arrival
            for seq in range(6, 9):
                await cam.send(tagged_jpeg(0, seq))
                part = await viewer.next_live()
                assert part.seq == seq and is_green(decode(part.jpeg))
        assert detector.draws == 4
        await wait_for(lambda: not srv.server.viewer_app.watched("cam0"), what="the server saw the viewer leave")
        await cam.send(tagged_jpeg(0, 9))
        await wait_for(lambda: srv.server.scheduler.latest("cam0")[0].seq == 9 and settled(srv.server), what="frame 9 processed")
        assert detector.draws == 4  # the viewer left: drawing stopped


async def test_snapshot_without_viewer_shows_boxes_drawn_once(http):
    """A snapshot while nobody watches draws the latest frame's boxes on demand and caches it until the next frame."""
    detector = FakeDetector()
    async with running_server(detector) as srv, cameras(srv, 1) as (cam,):
        await cam.send(tagged_jpeg(0, 1))
        camera = None
        await wait_for(lambda: (c := srv.server.hub.get("cam0")) is not None and c.frames_processed == 1)
        for _ in range(3):
            async with http.get(f"{srv.http}/cameras/cam0/snapshot.jpg") as resp:
                assert resp.status == 200 and resp.headers["X-Frame-Seq"] == "1"
                assert is_green(decode(await resp.read()))
        assert detector.draws == 1
        await cam.send(tagged_jpeg(0, 2))
        camera = srv.server.hub.get("cam0")
        await wait_for(lambda: camera.frames_processed == 2)
        async with http.get(f"{srv.http}/cameras/cam0/snapshot.jpg") as resp:
            assert resp.headers["X-Frame-Seq"] == "2" and is_green(decode(await resp.read()))
        assert detector.draws == 2


def detect_config(**keys):
    return from_mapping({"detect": keys}).detect


def test_auto_picks_the_documented_backend(monkeypatch):
    """auto: torch on CUDA, OpenVINO on x86 CPUs (if installed), torch elsewhere; exported models run as given."""
    monkeypatch.setattr(openvino_backend, "available", lambda: True)
    auto = detect_config(model="yolo11n.pt")
    assert resolve_backend(auto, cuda=True, machine="x86_64") == "torch"
    assert resolve_backend(auto, cuda=False, machine="x86_64") == "openvino"
    assert resolve_backend(auto, cuda=False, machine="aarch64") == "torch"
    for exported in ("model.onnx", "yolo11n_openvino_model", "model.engine", "http://triton:8000/yolo"):
        assert resolve_backend(detect_config(model=exported), cuda=False, machine="x86_64") == "torch"
    assert resolve_backend(detect_config(model="yolo11n.pt", backend="onnx"), cuda=True) == "onnx"
    monkeypatch.setattr(openvino_backend, "available", lambda: False)
    assert resolve_backend(auto, cuda=False, machine="x86_64") == "torch"
    assert export_shape(640) == (480, 640) and export_shape(320) == (224, 320)


def test_failing_export_falls_back_to_torch_with_one_log_line(caplog, tmp_path):
    """An export that raises: one warning line naming the backend and the reason; the detector runs on torch."""
    calls = []

    def failing_exporter(model, fmt, shape, version, cache_dir):
        calls.append((model, fmt, shape))
        raise RuntimeError("export exploded")

    config = detect_config(model="yolo11n.yaml", backend="openvino", imgsz=64, device="cpu", cache_dir=str(tmp_path))
    if not openvino_backend.available():
        pytest.skip("openvino not installed (make test installs it)")
    with caplog.at_level(logging.WARNING, logger="camserver"):
        detector = detector_factory(config, exporter=failing_exporter)()
    assert calls == [("yolo11n.yaml", "openvino", (32, 64))]
    assert detector.info.backend == "torch"
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("camserver")]
    assert warnings == ["detect.backend openvino failed (export exploded); falling back to torch"]


@pytest.mark.skipif(not openvino_backend.available(), reason="openvino not installed (make test installs it)")
async def test_openvino_end_to_end_export_cache_hit_frame_processed(tmp_path, caplog):
    """backend openvino with yolo11n.yaml: exported once into the cache, reused on the next start, frames processed."""
    from camserver.app import CamServer

    config = make_config(detect={"model": "yolo11n.yaml", "backend": "openvino", "imgsz": 320, "cache_dir": str(tmp_path)})
    with caplog.at_level(logging.INFO, logger="camserver"):
        for start in ("export", "cache hit"):
            caplog.clear()
            async with CamServer.from_config(config) as server:
                health = server.health()["detection"]
                assert (health["backend"], health["device"], health["precision"]) == ("openvino", "cpu", "fp32")
                cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/ov")
                await cam.send(tagged_jpeg(0, 1, 640, 480))
                await wait_for(lambda: (c := server.hub.get("ov")) is not None and c.frames_processed == 1, timeout=30)
                assert server.scheduler.camera_figures("ov")["detect_errors"] == 0
                await cam.close()
            messages = [r.getMessage() for r in caplog.records]
            if start == "export":
                assert any(m.startswith("exported yolo11n.yaml to openvino at 320x224") for m in messages), messages
            else:
                assert any(m.startswith("using the cached openvino export") for m in messages), messages
                assert not any(m.startswith("exported") for m in messages)
    exports = list(Path(tmp_path).glob("*_openvino_model"))
    assert len(exports) == 1 and "224x320" in exports[0].name
