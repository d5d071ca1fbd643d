"""Hardening II: one camera never stops the others, and clients cannot crash, flood or confuse the server."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import threading
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import websockets
from PIL import Image

from camserver.ingest.jpeg import MAX_SCANS, BadFrame, inspect_jpeg
from conftest import (
    FakeDetector,
    connect_camera,
    decode,
    feeding,
    make_jpeg,
    running_server,
    scan_bomb,
    wait_for,
)
from serverproc import ServerProcess


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


async def test_a_camera_whose_frames_are_costly_is_throttled_and_counts_each_frame_once(http, monkeypatch):
    """A camera whose frames cost 0.25 s of CPU to prepare is prepared at most once every 0.75 s; frames_throttled
    counts frames held back by that (never more than it sent), while another camera keeps its rate."""
    import dataclasses

    from camserver.detect import scheduler as scheduler_module

    real = scheduler_module.prepare
    calls = []

    def costly(state, frame, size, *args):
        prepared = real(state, frame, size, *args)
        if size == (160, 120):  # the costly camera's frames
            calls.append(time.monotonic())
            return dataclasses.replace(prepared, cost_s=0.25)
        return prepared

    monkeypatch.setattr(scheduler_module, "prepare", costly)
    async with running_server(FakeDetector()) as srv:
        good = await connect_camera(srv.ws("good"))
        bad = await connect_camera(srv.ws("costly"))
        await wait_for(lambda: srv.server.hub.get("good") is not None)
        async with feeding(good, fps=10) as feed, feeding(bad, fps=10, width=160, height=120) as bad_feed:
            await asyncio.sleep(4)
            sent, bad_sent = feed.sent, bad_feed.sent
        camera = srv.server.hub.get("good")
        await wait_for(lambda: camera.frames_processed + camera.frames_dropped >= sent, what="good frames handled")
        assert camera.frames_processed >= 0.9 * sent, (camera.frames_processed, sent)
        gaps = [b - a for a, b in zip(calls, calls[1:])]
        assert calls and min(gaps) >= 0.7, gaps  # 3 x 0.25 s between two preparations
        async with http.get(f"{srv.http}/api/cameras") as resp:
            figures = next(c for c in await resp.json() if c["id"] == "costly")
        assert 0.5 * bad_sent <= figures["frames_throttled"] <= figures["frames_received"], figures
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
            assert "no frame detected" in health["lagging_cameras"]["slow"]
            assert "still in inference" in health["lagging_cameras"]["slow"]
        finally:
            release.set()
        scheduler = srv.server.scheduler
        await wait_for(lambda: scheduler.camera_figures("slow")["frames_detected"] > 0
                       and not scheduler.lagging(time.monotonic()), what="detection caught up")
        async with http.get(f"{srv.http}/healthz") as resp:
            assert resp.status == 200 and "lagging_cameras" not in await resp.json()
        await cam.close()


# --- the HTTP side has the limits the camera side has ----------------------------------------------

async def test_idle_and_dribbling_http_connections_are_closed_within_the_request_timeout():
    """Sockets that send nothing, or one header line a second, are closed within http.request_timeout_s."""
    async with running_server(None, http={"request_timeout_s": 2}) as srv:
        port = srv.server.http_port
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(50)]
        dribblers = [await asyncio.open_connection("127.0.0.1", port) for _ in range(10)]
        opened = time.monotonic()

        async def dribble(writer: asyncio.StreamWriter) -> None:
            writer.write(b"GET /api/cameras HTTP/1.1\r\nHost: x\r\n")
            with contextlib.suppress(ConnectionError):
                for n in range(20):
                    await asyncio.sleep(1)
                    writer.write(b"X-Slow-%d: y\r\n" % n)
                    await writer.drain()

        tasks = [asyncio.create_task(dribble(w)) for _, w in dribblers]
        async with asyncio.timeout(6):
            for reader, _ in idle + dribblers:
                assert await reader.read() == b""  # EOF, no answer: the server closed it
        assert time.monotonic() - opened < 4.5
        for task in tasks:
            task.cancel()
        await wait_for(lambda: srv.server.http_limit.open == 0, what="every connection gone")
        for _, writer in idle + dribblers:
            writer.close()


async def test_connections_over_the_cap_get_503_and_cameras_still_connect(http):
    """Over http.max_connections a new connection gets a 503 and is closed; a camera connects all the same.

    The held connections have each had an answer (a keep-alive GET /healthz): connections that never
    sent a request are unproven, and a new one would evict them (test_bodies covers that)."""
    async with running_server(FakeDetector(), http={"max_connections": 20, "request_timeout_s": 60}) as srv:
        port = srv.server.http_port
        held = []
        for _ in range(20):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            held.append((reader, writer))
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
            await asyncio.wait_for(reader.readexactly(length), 5)
        await wait_for(lambda: srv.server.http_limit.open == 20 and srv.server.http_limit.unproven == 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After" in answer
        assert srv.server.http_limit.refused == 1
        cam = await connect_camera(srv.ws("cam"))
        await cam.send(make_jpeg(1))
        await wait_for(lambda: (c := srv.server.hub.get("cam")) is not None and c.frames_processed == 1)
        for _, w in held:
            w.close()
        await wait_for(lambda: srv.server.http_limit.open == 0)
        async with http.get(f"{srv.http}/healthz") as resp:
            health = await resp.json()
        assert health["http_connections_refused"] == 1
        await cam.close()


async def test_flooding_the_viewer_port_leaves_descriptors_for_cameras(tmp_path):
    """With 256 file descriptors, 400 sockets to the viewer port: cameras still connect and stream."""
    import resource

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    config = tmp_path / "c.toml"
    config.write_text(f'[http]\nrequest_timeout_s = 60\n[storage]\ndir = "{tmp_path / "data"}"\n')
    server = await ServerProcess.start("--config", str(config), "--model", "none", preexec_fn=few_descriptors)
    flood = []
    try:
        for _ in range(400):
            try:
                flood.append(await asyncio.wait_for(asyncio.open_connection("127.0.0.1", server.http_port), 2))
            except (OSError, TimeoutError):
                break
        await asyncio.sleep(0.5)
        cams = [await connect_camera(server.ws(f"c{i}")) for i in range(5)]
        for cam in cams:
            await cam.send(make_jpeg(1))
        for _, w in flood:
            w.close()
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(10):
                while True:
                    async with session.get(f"{server.http}/api/cameras") as resp:
                        cameras = {c["id"]: c for c in await resp.json()} if resp.status == 200 else {}
                    if all(cameras.get(f"c{i}", {}).get("frames_processed") == 1 for i in range(5)):
                        break
                    await asyncio.sleep(0.2)
        for cam in cams:
            await cam.close()
    finally:
        for _, w in flood:
            w.close()
        assert await server.stop() == 0
    log = "".join(server.lines)
    assert "http.max_connections = 512 does not fit 256 file descriptors" in log


async def test_event_streams_are_capped_and_end_after_their_lifetime(http):
    """SSE streams count as viewers (a third over max_viewers = 2 gets 503); a stream that is not read ends."""
    async with running_server(None, http={"max_viewers": 2, "event_stream_max_s": 2}) as srv:
        url = f"{srv.http}/api/events/stream"
        async with http.get(url) as first, http.get(url) as second:
            assert first.status == second.status == 200
            async with http.get(url) as third:
                assert third.status == 503 and third.headers["Retry-After"]
        await wait_for(lambda: srv.server.viewer_app.viewers_total == 0, timeout=5, what="the closed streams gone")
        # a client that never reads, while no event flows: its stream ends and its place goes
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.server.http_port)
        writer.write(b"GET /api/events/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        await wait_for(lambda: srv.server.viewer_app.viewers_total == 1, what="the stream open")
        await wait_for(lambda: srv.server.viewer_app.viewers_total == 0, timeout=5, what="the stream ended")
        writer.close()


# --- no 500s, no tracebacks, no forged log lines from what a client sends --------------------------

async def raw_http(port: int, request: bytes) -> bytes:
    """Send raw request bytes (Connection: close added to HTTP requests); the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if b"Upgrade: websocket" not in request:
        request = request.replace(b"\r\n", b"\r\nConnection: close\r\n", 1)
    writer.write(request)
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_hostile_headers_get_4xx_not_500(caplog):
    """Non-UTF-8 Authorization, two Authorization headers on a camera handshake, odd Last-Event-IDs: 4xx, no traceback."""
    with caplog.at_level(logging.WARNING):
        async with running_server(None, http={"token": "viewer-secret-1"}, ingest={"token": "camera-secret-1"}) as srv:
            answer = await raw_http(srv.server.http_port, b"GET /api/cameras HTTP/1.1\r\nHost: x\r\n"
                                                          b"Authorization: Bearer \xff\xfe\xfd\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 401"), answer[:100]
            answer = await raw_http(srv.server.http_port, b"GET /api/cameras HTTP/1.1\r\nHost: x\r\n"
                                                          b"Authorization: Basic \xff==\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 401"), answer[:100]
            before = srv.server.ingest.auth_failures
            answer = await raw_http(srv.server.ws_port, b"GET /ws/cam HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                    b"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer camera-secret-1\r\n"
                                    b"Authorization: Bearer camera-secret-1\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 401"), answer[:100]
            assert srv.server.ingest.auth_failures == before + 1
            token = b"Authorization: Bearer viewer-secret-1\r\n"
            for last_id in ("1.\u00b2".encode(), b"1." + b"9" * 4301, b"x.1"):
                answer = await raw_http(srv.server.http_port, b"GET /api/events/stream HTTP/1.1\r\nHost: x\r\n" + token
                                        + b"Last-Event-ID: " + last_id + b"\r\n\r\n")
                assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]


async def test_deep_json_from_a_camera_is_ignored_and_its_hello_cannot_forge_log_lines(caplog):
    """A 2,000-deep status is not kept and does not drop the camera; control characters in a hello are escaped."""
    with caplog.at_level(logging.INFO, logger="camserver.ingest.listener"):
        async with running_server(None) as srv:
            cam = await connect_camera(srv.ws("odd"))
            await cam.send('{"firmware": "x"}\n2026-12-01 ERROR camserver.app: forged \x1b[31mline\x1b[0m')
            await cam.send("[" * 2000 + "]" * 2000)
            await cam.send('{"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}')
            await cam.send('{"type": "status", "rssi": -60}')
            camera = srv.server.hub.get("odd")
            await wait_for(lambda: camera.status == {"type": "status", "rssi": -60}, what="the plain status kept")
            assert camera.connected and not srv.server.ingest.closes_of("odd")
            await cam.close()
    hello = next(r.getMessage() for r in caplog.records if "says hello" in r.getMessage())
    assert "\n" not in hello and "\x1b" not in hello and "\\n2026-12-01 ERROR" in hello


def test_a_snapshot_of_a_very_wide_frame_stays_within_the_pixel_budget():
    """?h=2160 of a valid 2592x200 frame: the picture keeps its shape within MAX_OUTPUT_PIXELS, not 27,993x2160."""
    from camserver.events.snapshots import MAX_OUTPUT_PIXELS, render_snapshot

    wide = make_jpeg(1, 2592, 200)
    record = {"label": "person", "box": [10, 10, 100, 190], "top_score": 0.9}
    out = decode(render_snapshot(wide, record, True, False, 2160))
    h, w = out.shape[:2]
    assert h * w <= MAX_OUTPUT_PIXELS and abs(w / h - 2592 / 200) < 0.1
    small = decode(render_snapshot(make_jpeg(1, 640, 480), record, True, False, 240))
    assert small.shape[:2] == (240, 320)


async def test_sighup_stops_cleanly_like_sigterm(tmp_path):
    """SIGHUP: cameras get 1001, the process exits 0 (it was killed abruptly before)."""
    import signal

    server = await ServerProcess.start("--model", "none", "--config", str(write_storage_config(tmp_path)))
    cam = await connect_camera(server.ws("c"))
    server.proc.send_signal(signal.SIGHUP)
    await asyncio.wait_for(cam.wait_closed(), 10)
    assert cam.close_code == 1001
    assert await server.stop() == 0


def write_storage_config(tmp_path) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f'[storage]\ndir = "{tmp_path / "data"}"\n')
    return path


async def test_tokens_never_reach_the_log_at_debug_level(tmp_path):
    """At log.level = debug, neither token appears: not in websockets' request lines, not in the access log."""
    camera_token, viewer_token = "camera-secret-4711", "viewer-secret-0815"
    server = await ServerProcess.start("--model", "none", "--log-level", "debug", "--camera-token", camera_token,
                                       "--viewer-token", viewer_token, "--config", str(write_storage_config(tmp_path)))
    try:
        by_query = await connect_camera(server.ws("a") + f"?token={camera_token}")
        by_header = await connect_camera(server.ws("b"), additional_headers={"Authorization": f"Bearer {camera_token}"})
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.http}/api/cameras?token={viewer_token}") as resp:
                assert resp.status == 200
            async with session.get(f"{server.http}/api/cameras", headers={"Authorization": f"Bearer {viewer_token}"}) as resp:
                assert resp.status == 200
        await by_query.close()
        await by_header.close()
    finally:
        assert await server.stop() == 0
    log = "".join(server.lines)
    assert "GET /ws/a" in log and "/api/cameras" in log  # the debug lines are there...
    assert camera_token not in log and viewer_token not in log  # ...without the secrets


def test_zone_filter_matches_the_name_as_it_is(tmp_path):
    """zone=% or zone=_ match no event (LIKE wildcards are escaped); the real name still matches."""
    import sqlite3

    from camserver.events.store import EventStore

    store = EventStore(tmp_path, 10)
    store.open(sqlite3.connect(tmp_path / "camserver.db", isolation_level=None), 1000.0)
    for i, zones in enumerate((["porch"], ["drive_way"], [])):
        store.save({"id": f"e{i}", "camera": "c", "label": "person", "start_time": 1000.0 + i, "end_time": 1001.0 + i,
                    "entered_zones": zones, "has_snapshot": False}, None, 1001.0 + i)
    assert [e["id"] for e in store.query({"zone": "%"}, 10, None)] == []
    assert [e["id"] for e in store.query({"zone": "drive%"}, 10, None)] == []
    assert [e["id"] for e in store.query({"zone": "drive_way"}, 10, None)] == ["e1"]
    assert [e["id"] for e in store.query({"zone": "porch"}, 10, None)] == ["e0"]
    store.db.close()


async def test_query_numbers_must_be_finite_and_healthz_shows_the_model_name_only(http):
    """after=nan or inf is a 400; /healthz (no token needed) names the model file, not its path."""
    async with running_server(FakeDetector(), detect={"model": "/srv/private/models/door-v2.pt"}) as srv:
        for value in ("nan", "inf", "-inf", "1e999"):
            async with http.get(f"{srv.http}/api/events", params={"after": value}) as resp:
                assert resp.status == 400, value
        async with http.get(f"{srv.http}/healthz") as resp:
            health = await resp.json()
        assert health["model"] == "door-v2.pt" and "/srv/private" not in json.dumps(health)


async def test_refused_cameras_are_logged_at_most_once_per_interval(caplog):
    """20 handshakes refused because the server is full give one log line (held-back lines counted), not 20."""
    with caplog.at_level(logging.WARNING, logger="camserver.ingest.listener"):
        async with running_server(None, ingest={"max_cameras": 1}, cameras={"ids": ["only"]}) as srv:
            for i in range(20):
                with pytest.raises(websockets.InvalidStatus):
                    await connect_camera(srv.ws(f"extra{i}"))
    lines = [r.getMessage() for r in caplog.records if "already known" in r.getMessage()]
    assert len(lines) == 1, lines


async def test_a_forgotten_camera_leaves_no_metric_series(http):
    """When an offline camera's id is forgotten to make room, its camserver_events_total series go too."""
    from conftest import ScriptedDetector, make_config, tagged_jpeg
    from camserver.app import CamServer

    def person(cam, seq):
        return [("person", 0.9, (10.0 + 5 * seq, 60.0, 50.0 + 5 * seq, 200.0))] if seq >= 1 else []

    config = make_config(ingest={"max_cameras": 1}, events={"max_disappeared_s": 0.3})
    async with CamServer(config, detector_factory=lambda: ScriptedDetector(person)) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/gone")
        for seq in range(1, 8):
            await cam.send(tagged_jpeg(0, seq))
            await asyncio.sleep(0.05)
        await wait_for(lambda: server.events.events_total == 1, what="an event")
        async with http.get(f"{base}/metrics") as resp:
            assert 'camserver_events_total{camera="gone",label="person"} 1.0' in await resp.text()
        await cam.close()
        await wait_for(lambda: not server.hub.get("gone").connected)
        other = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/new")  # takes the only place
        await wait_for(lambda: server.hub.get("gone") is None, what="the old id forgotten")
        async with http.get(f"{base}/metrics") as resp:
            assert 'camera="gone"' not in await resp.text()
        await other.close()
