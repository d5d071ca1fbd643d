"""Fault suite: hostile input, slow and dead peers, detector faults, auth. Each test is bounded in time."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import resource
import socket
import struct
import threading
import time

import cv2
import numpy as np
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import camserver.detect
from camserver.detect.frames import decode_frame
from camserver.ingest.jpeg import BadFrame, JpegInfo, inspect_jpeg
from conftest import (
    FakeDetector,
    is_green,
    connect_camera,
    decode,
    feeding,
    make_jpeg,
    mjpeg,
    running_server,
    settled,
    wait_for,
)

TOKEN = "camera-secret-1"
VIEWER_TOKEN = "viewer-secret-1"


def rss_mb() -> float:
    """Resident memory of this process now, in MiB (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def count_parts(viewer, seconds: float) -> int:
    """Live parts a viewer receives within `seconds`."""
    n = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                await viewer.next_live()
                n += 1
    return n


async def test_oversized_frame_1009_other_cameras_keep_their_fps(http):
    """A frame over max_frame_bytes closes that camera with 1009; another camera's viewer keeps >= 90% fps."""
    async with running_server(FakeDetector(), ingest={"max_frame_bytes": 64 * 1024}) as srv:
        other = await connect_camera(srv.ws("other"))
        await wait_for(lambda: srv.server.hub.get("other") is not None)
        big_frame = make_jpeg(1, 640, 480, noise=True)
        async with mjpeg(http, f"{srv.http}/cameras/other/stream.mjpg") as viewer, feeding(other, fps=20) as feed:
            await viewer.next_live()
            sent_before = feed.sent
            codes = []

            async def attack():
                for _ in range(5):
                    big = await connect_camera(srv.ws("big"), max_size=None)
                    await big.send(big_frame)
                    await asyncio.wait_for(big.wait_closed(), 10)
                    codes.append(big.close_code)

            received, _ = await asyncio.gather(count_parts(viewer, 2.0), attack())
            sent = feed.sent - sent_before
        assert codes == [1009] * 5
        assert received >= 0.9 * sent, (received, sent)
        assert srv.server.hub.get("big").frames_rejected == 5
        assert srv.server.ingest.closes_of("big") == {"too_big": 5}
        await other.close()


async def test_camera_without_the_right_token_gets_401(http):
    """With ingest.token, no or a wrong token gets HTTP 401 and no camera handler runs; header or ?token= pass."""
    async with running_server(FakeDetector(), ingest={"token": TOKEN}) as srv:
        for headers in (None, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"}):
            with pytest.raises(websockets.exceptions.InvalidStatus) as info:
                await connect_camera(srv.ws("intruder"), additional_headers=headers)
            assert info.value.response.status_code == 401
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            await connect_camera(srv.ws("intruder") + "?token=nope")
        assert info.value.response.status_code == 401
        assert srv.server.hub.get("intruder") is None  # no handler ever registered it
        assert srv.server.ingest.auth_failures == 4
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            await connect_camera(f"ws://127.0.0.1:{srv.server.ws_port}/not-a-camera-path")
        assert info.value.response.status_code == 404
        good = await connect_camera(srv.ws("cam"), additional_headers={"Authorization": f"Bearer {TOKEN}"})
        also = await connect_camera(srv.ws("cam2") + f"?token={TOKEN}")
        await good.send(make_jpeg(1))
        await wait_for(lambda: (c := srv.server.hub.get("cam")) is not None and c.frames_processed == 1)
        await good.close()
        await also.close()


async def test_viewers_need_the_token_or_a_user_and_healthz_stays_open(http):
    """With http.token / http.users, viewers need the token (header or ?token=) or a user; /healthz stays open."""
    users = {"alice": "wonderland-42"}
    async with running_server(FakeDetector(), http={"token": VIEWER_TOKEN, "users": users}) as srv:
        async with http.get(f"{srv.http}/api/cameras") as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Basic")
            assert (await resp.json())["error"] == "authentication required"
        async with http.get(f"{srv.http}/stream.mjpg?token=wrong-token") as resp:
            assert resp.status == 401
        async with http.get(f"{srv.http}/healthz") as resp:
            assert resp.status == 200
        async with http.get(f"{srv.http}/api/cameras", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}) as resp:
            assert resp.status == 200
        async with mjpeg(http, f"{srv.http}/stream.mjpg?token={VIEWER_TOKEN}") as viewer:
            assert (await viewer.next()).placeholder
        basic = base64.b64encode(b"alice:wonderland-42").decode()
        async with http.get(f"{srv.http}/api/cameras", headers={"Authorization": f"Basic {basic}"}) as resp:
            assert resp.status == 200
        wrong = base64.b64encode(b"alice:guess").decode()
        async with http.get(f"{srv.http}/api/cameras", headers={"Authorization": f"Basic {wrong}"}) as resp:
            assert resp.status == 401
        async with http.get(f"{srv.http}/") as resp:  # the page itself opens, to show its login form
            assert resp.status == 200 and resp.content_type == "text/html"


async def test_slowloris_handshakes_are_closed_and_real_cameras_still_connect():
    """200 half-open handshakes are closed within the handshake timeout; a real camera still connects."""
    async with running_server(FakeDetector(), ingest={"handshake_timeout_s": 1.0}) as srv:
        port = srv.server.ws_port
        conns = []
        for _ in range(200):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /ws/slow HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")  # never finished
            conns.append((reader, writer))
        started = time.monotonic()
        cam = await connect_camera(srv.ws("real"))
        await cam.send(make_jpeg(1))
        await wait_for(lambda: (c := srv.server.hub.get("real")) is not None and c.frames_processed == 1)

        async def closed_by_server(reader):
            with contextlib.suppress(ConnectionError):
                while await reader.read(1024):
                    pass

        async with asyncio.timeout(5):
            await asyncio.gather(*(closed_by_server(r) for r, _ in conns))
        elapsed = time.monotonic() - started
        assert elapsed < 1.0 + 2.0, elapsed
        for _, writer in conns:
            writer.close()
        assert srv.server.hub.get("slow") is None
        await cam.close()


async def test_silent_camera_closed_1011_and_shown_offline(http):
    """A camera that stops answering pings is closed (1011) within ping interval + timeout, offline, placeholder."""
    async with running_server(FakeDetector(), ingest={"ping_interval_s": 0.3, "ping_timeout_s": 0.3}) as srv:
        cam = await connect_camera(srv.ws("mute"))
        await cam.send(make_jpeg(1))
        await wait_for(lambda: (c := srv.server.hub.get("mute")) is not None and c.frames_processed == 1)
        camera = srv.server.hub.get("mute")
        async with mjpeg(http, f"{srv.http}/cameras/mute/stream.mjpg") as viewer:
            await viewer.next_live()
            cam.transport.pause_reading()  # the board hangs: no more pongs
            started = time.monotonic()
            await wait_for(lambda: not camera.connected, timeout=5, what="camera closed by keepalive")
            assert time.monotonic() - started < 0.3 + 0.3 + 0.3 + 0.5  # interval + timeout + close timeout
            part = await viewer.next(timeout=3)
            assert part.placeholder
        cam.transport.resume_reading()
        await asyncio.wait_for(cam.wait_closed(), 10)
        assert cam.close_code == 1011
        async with http.get(f"{srv.http}/api/cameras") as resp:
            (summary,) = await resp.json()
        assert summary["connected"] is False
        assert summary["closes"] == {"keepalive": 1}


async def test_non_jpeg_rejected_before_any_decode(srv, monkeypatch):
    """PNG, BMP and random bytes are rejected from their bytes: no decode call; the counters rise."""
    decodes = []
    real_imdecode = cv2.imdecode
    monkeypatch.setattr(camserver.detect.frames.cv2, "imdecode", lambda *a: decodes.append(1) or real_imdecode(*a))
    cam = await connect_camera(srv.ws("junk"))
    png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    bmp = cv2.imencode(".bmp", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    rng = np.random.default_rng(5)
    for junk in (png, bmp, rng.bytes(1000), rng.bytes(50000), b"\xff\xd8\xff" + rng.bytes(500)):
        await cam.send(junk)
    await wait_for(lambda: (c := srv.server.hub.get("junk")) is not None and c.frames_rejected == 5)
    assert decodes == []
    await cam.send(make_jpeg(1))
    camera = srv.server.hub.get("junk")
    await wait_for(lambda: camera.frames_processed == 1)
    assert decodes == [1]
    await cam.close()


async def test_decompression_bomb_rejected_from_header(srv):
    """A tiny JPEG claiming 65500x65500 is rejected from its header; memory does not jump."""
    good = make_jpeg(1, 64, 48)
    i = good.index(b"\xff\xc0")
    bomb = good[: i + 5] + struct.pack(">HH", 65500, 65500) + good[i + 9 :]
    assert len(bomb) < 2048
    cam = await connect_camera(srv.ws("bomb"))
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(20):
        await cam.send(bomb)
    await wait_for(lambda: (c := srv.server.hub.get("bomb")) is not None and c.frames_rejected == 20)
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert (peak_after - peak_before) < 50 * 1024  # KiB: a decode would need 12 GB
    assert srv.server.hub.get("bomb").frames_processed == 0
    await cam.close()


async def test_corrupt_jpegs_never_show_another_cameras_pixels(http):
    """Truncated, unterminated and bit-flipped JPEGs are rejected or decoded alone: never with another camera's pixels."""
    async with running_server(None) as srv:  # pass-through: what the camera sent is what viewers get
        red = cv2.imencode(".jpg", np.full((240, 320, 3), (0, 0, 255), np.uint8))[1].tobytes()
        dark = cv2.imencode(".jpg", np.full((240, 320, 3), 20, np.uint8))[1].tobytes()
        sos = dark.index(b"\xff\xda")
        rng = np.random.default_rng(7)
        corrupt = [dark[: len(dark) // 2], dark[:-2], dark[: len(dark) // 2] + b"\xff\xd9"]
        for _ in range(20):
            flipped = bytearray(dark)
            for pos in rng.integers(sos + 20, len(dark) - 2, 5):
                flipped[pos] ^= 1 << int(rng.integers(0, 8))
            corrupt.append(bytes(flipped))
        a = await connect_camera(srv.ws("a"))
        b = await connect_camera(srv.ws("b"))
        await wait_for(lambda: srv.server.hub.get("b") is not None)
        async with mjpeg(http, f"{srv.http}/cameras/b/stream.mjpg") as viewer:
            for frame in corrupt:
                await a.send(red)
                await b.send(frame)
            await b.send(dark)  # a last good frame marks the end
            seen = []
            while True:
                part = await viewer.next_live()
                img = cv2.imdecode(np.frombuffer(part.jpeg, np.uint8), cv2.IMREAD_COLOR)
                seen.append(img)
                if part.jpeg == dark:
                    break
        for img in seen:
            assert img is not None
            red_pixels = (img[:, :, 2] > 150) & (img[:, :, 1] < 80) & (img[:, :, 0] < 80)
            assert red_pixels.mean() < 0.01, "camera b's stream shows camera a's picture"
        camera_b = srv.server.hub.get("b")
        await wait_for(lambda: camera_b.frames_processed + camera_b.frames_rejected + camera_b.frames_dropped == 24)
        assert camera_b.frames_rejected >= 2  # truncated and unterminated never get through
        await a.close()
        await b.close()


JPEG_SEED = make_jpeg(3, 64, 48)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=4096),
        st.builds(
            lambda cuts: bytes(b ^ cuts.get(i, 0) for i, b in enumerate(JPEG_SEED)),
            st.dictionaries(st.integers(0, len(JPEG_SEED) - 1), st.integers(1, 255), max_size=8),
        ),
        st.builds(lambda n, tail: JPEG_SEED[:n] + tail, st.integers(0, len(JPEG_SEED)), st.binary(max_size=64)),
    )
)
def test_any_bytes_are_rejected_or_decode_to_their_declared_size(data):
    """Any bytes: validation raises BadFrame or returns a size within limits; decoding gives that size or None."""
    try:
        info = inspect_jpeg(data, 2592, 1944)
    except BadFrame:
        return
    assert isinstance(info, JpegInfo) and 0 < info.width <= 2592 and 0 < info.height <= 1944
    image = decode_frame(data)
    assert image is None or image.shape == (info.height, info.width, 3)


async def test_camera_faster_than_the_detector_drops_old_frames_with_latency_under_1s(http):
    """100 fps into a 10 fps detector for 20 s: detection samples the newest frames, the stream keeps up within
    1 s, every frame is streamed or counted as dropped, memory flat."""
    async with running_server(FakeDetector(delay_s=0.1)) as srv:
        cam = await connect_camera(srv.ws("fast"))
        await wait_for(lambda: srv.server.hub.get("fast") is not None)
        camera = srv.server.hub.get("fast")
        latencies, rss = [], []
        async with mjpeg(http, f"{srv.http}/cameras/fast/stream.mjpg") as viewer, feeding(cam, fps=100) as feed:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                part = await viewer.next_live()
                latencies.append(time.monotonic() - feed.sent_at[part.seq])
                rss.append(rss_mb())
        await wait_for(lambda: not srv.server.scheduler.busy("fast"))
        detected = srv.server.scheduler.camera_figures("fast")["frames_detected"]
        assert detected < 0.3 * camera.frames_received, (detected, camera.frames_received)
        assert camera.frames_processed + camera.frames_dropped + camera.slot.full == camera.frames_received
        assert max(latencies[5:]) < 1.0, max(latencies)
        assert rss[-1] - rss[len(rss) // 4] < 30, (rss[len(rss) // 4], rss[-1])
        await cam.close()


async def test_stuck_viewer_dropped_ten_viewers_keep_their_fps(http):
    """A viewer that never reads is dropped within the write timeout; 10 reading viewers keep >= 90% fps."""
    async with running_server(FakeDetector(), http={"viewer_write_timeout_s": 1.0}) as srv:
        cam = await connect_camera(srv.ws("cam"))
        await wait_for(lambda: srv.server.hub.get("cam") is not None)
        stuck = socket.create_connection(("127.0.0.1", srv.server.http_port))
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.sendall(b"GET /cameras/cam/stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            async with contextlib.AsyncExitStack() as stack:
                viewers = [await stack.enter_async_context(mjpeg(http, f"{srv.http}/cameras/cam/stream.mjpg"))
                           for _ in range(10)]
                await wait_for(lambda: srv.server.viewer_app.viewers_of("cam") == 11)
                # big incompressible frames fill the stuck viewer's socket buffers within a few seconds
                feed = await stack.enter_async_context(feeding(cam, fps=10, width=640, height=480, noise=True))
                for v in viewers:
                    await v.next_live()
                sent_before = feed.sent
                started = time.monotonic()
                counts = await asyncio.gather(*(count_parts(v, 3.0) for v in viewers))
                sent = feed.sent - sent_before
                await wait_for(lambda: srv.server.viewer_app.viewers_of("cam") == 10, timeout=5, what="stuck viewer dropped")
                assert time.monotonic() - started < 1.0 + 5
            assert min(counts) >= 0.9 * sent, (counts, sent)
        finally:
            stuck.close()
        await cam.close()


async def test_500_viewers_reset_after_one_part_leave_nothing_behind(srv, caplog):
    """500 viewers read one part and reset: tasks, fds and viewer counts return to baseline, no stray errors."""
    cam = await connect_camera(srv.ws("busy"))
    await cam.send(make_jpeg(1))
    await wait_for(lambda: (c := srv.server.hub.get("busy")) is not None and c.frames_processed == 1)
    await asyncio.sleep(0)
    tasks_before, fds_before = len(asyncio.all_tasks()), open_fds()
    errors = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx.get("message")))
    request = b"GET /cameras/busy/stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n"

    async def rude_viewer():
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.server.http_port)
        writer.write(request)
        await reader.readuntil(b"Content-Length:")  # one part under way
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        writer.transport.abort()

    with caplog.at_level(logging.ERROR):
        for _ in range(10):
            await asyncio.wait_for(asyncio.gather(*(rude_viewer() for _ in range(50))), 30)
        await wait_for(lambda: srv.server.viewer_app.viewers_of("busy") == 0 and srv.server.viewer_app.viewers_total == 0, timeout=15)
        await wait_for(lambda: len(asyncio.all_tasks()) <= tasks_before, timeout=15, what="tasks back to baseline")
        await wait_for(lambda: open_fds() <= fds_before, timeout=15, what="fds back to baseline")
    loop.set_exception_handler(None)
    assert errors == []
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage() or r.levelno >= logging.ERROR]
    await cam.close()


async def test_viewer_limit_plus_one_gets_503(http):
    """One viewer over the per-camera or the total limit gets 503 with Retry-After; the others go on."""
    async with running_server(FakeDetector(), http={"max_viewers_per_camera": 3, "max_viewers": 4}) as srv:
        c = await connect_camera(srv.ws("c"))
        d = await connect_camera(srv.ws("d"))
        await wait_for(lambda: srv.server.hub.get("c") is not None and srv.server.hub.get("d") is not None)
        url_c, url_d = f"{srv.http}/cameras/c/stream.mjpg", f"{srv.http}/cameras/d/stream.mjpg"
        async with contextlib.AsyncExitStack() as stack:
            viewers = [await stack.enter_async_context(mjpeg(http, url_c)) for _ in range(3)]
            async with http.get(url_c) as resp:  # 4th on camera c: over the per-camera limit
                assert resp.status == 503
                assert resp.headers["Retry-After"] == "10"
                assert (await resp.json())["error"] == "too many viewers"
            on_d = await stack.enter_async_context(mjpeg(http, url_d))  # 4 in all: allowed
            async with http.get(url_d) as resp:  # 5th in all: over the total limit
                assert resp.status == 503
            await c.send(make_jpeg(1))
            await d.send(make_jpeg(1))
            for v in [*viewers, on_d]:
                assert (await v.next_live()).seq == 1
        await wait_for(lambda: srv.server.viewer_app.viewers_total == 0)
        async with mjpeg(http, url_c) as again:  # room again once they left
            assert (await again.next_live()).seq == 1
        assert srv.server.health()["viewers_refused"] == 2
        await c.close()
        await d.close()


async def test_duplicate_camera_id_one_increasing_sequence(srv, http):
    """Newest connection wins (old one closed 1008); viewers see one strictly increasing frame sequence."""
    first = await connect_camera(srv.ws("dup"))
    await wait_for(lambda: srv.server.hub.get("dup") is not None)
    async with mjpeg(http, f"{srv.http}/cameras/dup/stream.mjpg") as viewer:
        seqs = []
        for n in range(3):
            await first.send(make_jpeg(n))
            seqs.append((await viewer.next_live()).seq)
        second = await connect_camera(srv.ws("dup"))
        await asyncio.wait_for(first.wait_closed(), 10)
        assert first.close_code == 1008
        for n in range(3):
            await second.send(make_jpeg(10 + n))
            seqs.append((await viewer.next_live()).seq)
    assert seqs == sorted(set(seqs)) and len(seqs) == 6
    assert srv.server.hub.get("dup").connected
    await second.close()


async def test_300_camera_cycles_some_cut_mid_frame_leave_nothing_behind(srv):
    """300 connect/send/close cycles, every third cut mid-frame: state, tasks, fds back to baseline, memory flat."""
    frame = make_jpeg(1, 320, 240)
    await asyncio.sleep(0)
    tasks_before, fds_before, rss_before = len(asyncio.all_tasks()), open_fds(), rss_mb()
    for i in range(300):
        ws = await connect_camera(srv.ws(f"cyc{i % 10}"))
        await ws.send(frame)
        if i % 3 == 0:
            # a binary frame header announcing 100 KB, a few bytes of it, then the link dies
            header = bytes([0x82, 0xFF]) + struct.pack(">Q", 100_000) + os.urandom(4)
            ws.transport.write(header + os.urandom(5000))
            ws.transport.abort()
        else:
            await ws.close()
    hub = srv.server.hub
    await wait_for(lambda: all(not c.connected for c in hub), timeout=15, what="every camera offline")
    await wait_for(lambda: settled(srv.server), timeout=15)
    assert len(hub.cameras) == 10
    assert sum(c.frames_received for c in hub) == 300
    await wait_for(lambda: len(asyncio.all_tasks()) <= tasks_before, timeout=15, what="tasks back to baseline")
    await wait_for(lambda: open_fds() <= fds_before, timeout=15, what="fds back to baseline")
    assert rss_mb() - rss_before < 30


class FlakyDetector(FakeDetector):
    """Raises on its first `failures` calls, then works."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def detect(self, images):
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("GPU fell off the bus")
        return super().detect(images)


async def test_detector_raising_frames_pass_unannotated_then_recover(http):
    """A detector that raises: each frame is served unannotated within 1 s, counted; annotation resumes."""
    async with running_server(FlakyDetector(failures=3)) as srv:
        cam = await connect_camera(srv.ws("flaky"))
        await wait_for(lambda: srv.server.hub.get("flaky") is not None)
        async with mjpeg(http, f"{srv.http}/cameras/flaky/stream.mjpg") as viewer:
            greens = []
            for n in range(5):
                await cam.send(make_jpeg(n))
                part = await viewer.next_live(timeout=1.0)
                greens.append(is_green(decode(part.jpeg)))
        assert greens == [False, False, False, True, True]
        assert srv.server.scheduler.camera_figures("flaky")["detect_errors"] == 3
        await cam.close()


async def test_detector_hanging_is_replaced_frames_keep_flowing(http):
    """A detector that hangs: frames keep coming within 1 s marked 'detector stalled', health shows it, a fresh worker takes over."""
    release_hang, allow_replacement = threading.Event(), threading.Event()

    class HangingDetector(FakeDetector):
        def detect(self, images):
            release_hang.wait(30)  # stuck in a driver call
            return super().detect(images)

    made = []

    def factory():
        made.append(1)
        if len(made) == 1:
            return HangingDetector()
        allow_replacement.wait(30)  # the replacement takes a while to load, like a real model
        return FakeDetector()

    config = {"stall_timeout_s": 0.3}
    from camserver.app import CamServer
    from conftest import make_config

    server = CamServer(make_config(detect=config), detector_factory=factory)
    async with server:
        base = f"http://127.0.0.1:{server.http_port}"
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/hang")
        await wait_for(lambda: server.hub.get("hang") is not None)
        try:
            async with mjpeg(http, f"{base}/cameras/hang/stream.mjpg") as viewer:
                for n in range(4):
                    sent = time.monotonic()
                    await cam.send(make_jpeg(n + 1))
                    part = await viewer.next_live(timeout=2)
                    assert time.monotonic() - sent < 1.0
                    top = decode(part.jpeg)[5, 5]
                    assert top[2] > 120 and top[0] < 60, "expected the red 'detector stalled' banner"
                async with http.get(f"{base}/healthz") as resp:
                    assert resp.status == 503
                    health = await resp.json()
                assert health["detector"] == "stalled" and health["status"] == "degraded"
                async with http.get(f"{base}/api/cameras") as resp:
                    assert (await resp.json())[0]["detector"] == "stalled"
                allow_replacement.set()
                await wait_for(lambda: server.scheduler.state == "ok", what="replacement ready")
                await cam.send(make_jpeg(9))
                part = await viewer.next_live(timeout=2)
                assert is_green(decode(part.jpeg))
            async with http.get(f"{base}/healthz") as resp:
                assert resp.status == 200
            assert server.pool.stalls == 1
        finally:
            release_hang.set()
            allow_replacement.set()
            await cam.close()


async def test_warns_when_listening_beyond_loopback_without_tokens(caplog):
    """A server reachable from the network with no tokens says so at start-up; on loopback it does not."""
    from camserver.app import CamServer
    from conftest import make_config

    with caplog.at_level(logging.WARNING, logger="camserver.app"):
        async with CamServer(make_config(), detector_factory=None):
            pass
        assert not [r for r in caplog.records if "no token" in r.getMessage()]
        config = make_config(ingest={"host": "0.0.0.0"}, http={"host": "0.0.0.0", "token": VIEWER_TOKEN})
        async with CamServer(config, detector_factory=None):
            pass
    warnings = [r.getMessage() for r in caplog.records if "no token" in r.getMessage()]
    assert len(warnings) == 1 and "camera port" in warnings[0] and "ingest.token" in warnings[0]
