"""The core pipeline through real sockets: camera WebSocket in, one inference per frame, MJPEG out."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest

from conftest import (
    FakeDetector,
    is_green,
    connect_camera,
    decode,
    make_jpeg,
    mjpeg,
    running_server,
    settled,
    wait_for,
)


async def test_frames_in_annotated_mjpeg_out(srv, http):
    """A camera's JPEG comes out annotated on the MJPEG stream; ?raw=1 gives the camera's bytes."""
    cam = await connect_camera(srv.ws("garage"))
    await cam.send("hello from ESP32 camera stream!")
    await wait_for(lambda: srv.server.hub.get("garage") is not None, what="camera registered")
    async with mjpeg(http, f"{srv.http}/cameras/garage/stream.mjpg") as annotated, mjpeg(
        http, f"{srv.http}/cameras/garage/stream.mjpg?raw=1"
    ) as raw:
        frame = make_jpeg(1)
        await cam.send(frame)
        part = await annotated.next_live()
        assert part.seq == 1
        assert is_green(decode(part.jpeg))
        raw_part = await raw.next_live()
        assert raw_part.jpeg == frame
        assert not is_green(decode(raw_part.jpeg))
    assert srv.detector.calls == 1
    async with http.get(f"{srv.http}/api/cameras/garage/detections") as resp:
        body = await resp.json()
    assert body["frame_seq"] == 1
    assert body["detections"] == [
        {"class_id": 0, "class_name": "fake", "confidence": 0.9, "box": [20.0, 20.0, 100.0, 80.0]}
    ]
    async with http.get(f"{srv.http}/cameras/garage/snapshot.jpg") as resp:
        assert resp.status == 200 and resp.content_type == "image/jpeg"
        assert is_green(decode(await resp.read()))
    await cam.close()


async def test_many_viewers_one_inference_per_frame(srv, http):
    """Eight viewers see every frame, and each frame is inferred exactly once."""
    cam = await connect_camera(srv.ws("c1"))
    await wait_for(lambda: srv.server.hub.get("c1") is not None)
    url = f"{srv.http}/cameras/c1/stream.mjpg"
    async with contextlib.AsyncExitStack() as stack:
        readers = [await stack.enter_async_context(mjpeg(http, url)) for _ in range(8)]
        await wait_for(lambda: srv.server.viewer_app.viewers_of("c1") == 8, what="8 viewers")
        for seq in range(1, 11):
            await cam.send(make_jpeg(seq))
            parts = await asyncio.gather(*(r.next_live() for r in readers))
            assert [p.seq for p in parts] == [seq] * 8
            # every viewer got the very same bytes: encoded once
            assert len({p.jpeg for p in parts}) == 1
    assert srv.detector.calls == 10
    assert srv.server.hub.get("c1").frames_processed == 10
    await cam.close()


async def test_no_inference_without_new_frames(srv, http):
    """Viewers connected and a silent camera: the detector is not called again."""
    cam = await connect_camera(srv.ws("idle"))
    await wait_for(lambda: srv.server.hub.get("idle") is not None)
    async with mjpeg(http, f"{srv.http}/cameras/idle/stream.mjpg") as a, mjpeg(
        http, f"{srv.http}/cameras/idle/stream.mjpg"
    ) as b:
        await cam.send(make_jpeg(1))
        await a.next_live()
        await b.next_live()
        calls = srv.detector.calls
        # an absence can only be observed over a window: 1.5 placeholder intervals
        await asyncio.sleep(1.5)
        assert srv.detector.calls == calls == 1
    await cam.close()


async def test_latest_frame_wins_and_drops_are_counted(http):
    """A camera faster than the detector: frames are dropped, not queued, and counted."""
    detector = FakeDetector(delay_s=0.1)
    async with running_server(detector) as srv:
        cam = await connect_camera(srv.ws("fast"))
        for seq in range(1, 31):
            await cam.send(make_jpeg(seq))
        camera = srv.server.hub.get("fast")
        await wait_for(lambda: camera.frames_received == 30 and settled(srv.server))
        assert camera.frames_dropped > 0
        assert camera.frames_processed + camera.frames_dropped == 30
        assert detector.calls == camera.frames_processed
        # the last frame sent is always the one that ends up processed
        assert srv.server.scheduler.latest("fast")[0].seq == 30
        await cam.close()


async def test_cameras_share_the_detector_fairly(http):
    """Two cameras sending flat out against a slow detector get about equal service."""
    detector = FakeDetector(delay_s=0.02)
    async with running_server(detector) as srv:
        a = await connect_camera(srv.ws("a"))
        b = await connect_camera(srv.ws("b"))
        frame = make_jpeg(3)

        async def flood(ws):
            for _ in range(60):
                await ws.send(frame)
                await asyncio.sleep(0.005)

        await asyncio.gather(flood(a), flood(b))
        hub = srv.server.hub
        await wait_for(lambda: settled(srv.server))
        pa, pb = hub.get("a").frames_processed, hub.get("b").frames_processed
        assert min(pa, pb) >= 0.7 * max(pa, pb), (pa, pb)
        await a.close()
        await b.close()


async def test_placeholder_then_live_then_offline_on_one_stream(http):
    """A declared camera streams a placeholder, then live frames, then 'offline', on one response."""
    async with running_server(FakeDetector(), cameras={"ids": ["gate"]}) as srv:
        async with mjpeg(http, f"{srv.http}/cameras/gate/stream.mjpg") as viewer:
            first = await viewer.next()
            assert first.placeholder
            assert decode(first.jpeg).shape == (480, 640, 3)
            again = await viewer.next(timeout=3)  # repeated at about 1 fps
            assert again.placeholder
            cam = await connect_camera(srv.ws("gate"))
            await cam.send(make_jpeg(1))
            live = await viewer.next_live()
            assert live.seq == 1 and decode(live.jpeg).shape == (240, 320, 3)
            await cam.close()
            after = await viewer.next(timeout=3)
            assert after.placeholder
        async with http.get(f"{srv.http}/cameras/gate/snapshot.jpg") as resp:
            assert resp.headers["X-Camserver-Placeholder"] == "offline"
            decode(await resp.read())


async def test_default_stream_follows_first_camera(http):
    """/stream.mjpg waits with a placeholder, then shows the first camera that connects on plain /ws."""
    async with running_server(FakeDetector()) as srv:
        async with mjpeg(http, f"{srv.http}/stream.mjpg") as viewer:
            assert (await viewer.next()).placeholder
            cam = await connect_camera(srv.ws())  # plain /ws, like the original firmware
            await cam.send(make_jpeg(5))
            assert (await viewer.next_live()).seq == 1
            assert srv.server.hub.get("default").connected
            await cam.close()


async def test_non_jpeg_rejected_and_counted_server_keeps_serving(srv, http):
    """PNG, random bytes and truncated JPEGs are counted as rejected; the connection stays open."""
    import cv2

    cam = await connect_camera(srv.ws("bad"))
    ok, png = cv2.imencode(".png", np.zeros((10, 10, 3), np.uint8))
    good = make_jpeg(1)
    corrupt = good[:2] + b"\xff\xd8" * 10 + b"\x00" * 400 + good[-2:]
    for junk in (png.tobytes(), b"\x00" * 100, good[: len(good) // 2], corrupt):
        await cam.send(junk)
    await cam.send(good)
    camera = srv.server.hub.get("bad")
    await wait_for(lambda: camera.frames_processed == 1, what="good frame processed")
    assert camera.frames_rejected == 4
    assert camera.frames_received == 5
    assert camera.connected
    await cam.close()


async def test_undecodable_jpeg_is_rejected_by_the_worker(srv):
    """A JPEG with valid headers but garbage data is counted rejected, never published."""
    good = make_jpeg(1)
    sos = good.index(b"\xff\xda")
    garbage = good[: sos + 2] + b"\x00\x02" + b"\xff\xff" * 50 + b"\xff\xd9"
    cam = await connect_camera(srv.ws("g"))
    await cam.send(garbage)
    await cam.send(good)
    camera = srv.server.hub.get("g")
    await wait_for(lambda: camera.frames_processed == 1 and camera.frames_rejected + camera.frames_dropped >= 1)
    assert srv.server.scheduler.latest("g")[0].jpeg == good
    await cam.close()


async def test_bad_path_is_404(srv):
    """A WebSocket on a path that is not /ws or /ws/<id> is refused with HTTP 404."""
    import websockets

    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        await connect_camera(f"ws://127.0.0.1:{srv.server.ws_port}/elsewhere")
    assert info.value.response.status_code == 404
    with pytest.raises(websockets.exceptions.InvalidStatus):
        await connect_camera(srv.ws("x" * 33))  # ids are at most 32 characters


async def test_two_workers_run_two_cameras_at_once():
    """With detect.workers = 2, two cameras' frames are inferred in parallel, each worker used by one at a time."""
    import threading

    both_inside = threading.Barrier(2, timeout=5)
    threads_seen = set()

    class MeetingDetector(FakeDetector):
        def detect(self, images):
            threads_seen.add(threading.current_thread().name)
            both_inside.wait()  # only passes if the two frames are in two detector threads at once
            return super().detect(images)

    async with running_server(MeetingDetector(), detect={"workers": 2}) as srv:
        a = await connect_camera(srv.ws("a"))
        b = await connect_camera(srv.ws("b"))
        await a.send(make_jpeg(1))
        await b.send(make_jpeg(2))
        hub = srv.server.hub
        await wait_for(lambda: all((c := hub.get(i)) is not None and c.frames_processed == 1 for i in "ab"))
        assert len(threads_seen) == 2
        assert all(srv.server.scheduler.camera_figures(c.id)["detect_errors"] == 0 for c in hub)
        await a.close()
        await b.close()
