"""Events end to end: the trained shapes model, the real tracker, the server as a process; SIGTERM and kill -9."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from pathlib import Path

import aiohttp
import cv2
import pytest
import websockets

from serverproc import ServerProcess
from camserver.sim.simcam import make_scene
from conftest import WAIT_S, wait_for

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
pytestmark = pytest.mark.skipif(not (TESTDATA / "shapes-yolo11n.pt").exists(), reason="../shared/testdata not beside the checkout")


def person_frames(n: int) -> list[bytes]:
    """A person walking left to right across the simulator's scene, as camera JPEGs."""
    sys.path.insert(0, str(TESTDATA))
    import draw_shapes as ds

    frames = []
    for i in range(n):
        img = make_scene(i + 1)
        ds.draw_person(img, ds.person_box(cx=120 + 10 * i, bottom=440, height=220))
        frames.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
    return frames


async def start(tmp_path: Path) -> ServerProcess:
    config = tmp_path / "camserver.toml"
    config.write_text(f'[storage]\ndir = "{tmp_path / "data"}"\n[detect]\ncache_dir = "{tmp_path / "cache"}"\n'
                      '[events]\nmax_disappeared_s = 30.0\n')
    return await ServerProcess.start("--config", str(config), "--model", str(TESTDATA / "shapes-yolo11n.pt"),
                                     "--imgsz", "320", cwd=tmp_path, timeout=120)


async def open_event(server: ServerProcess, cam, frames: list[bytes]) -> dict:
    """Walk the person past the camera until an event with a snapshot is open; returns it (the camera stays)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT_S)) as http:
        found: list[dict] = []
        for frame in frames:
            await cam.send(frame)
            await asyncio.sleep(0.1)
            async with http.get(f"{server.http}/api/events") as resp:
                found = [e for e in (await resp.json())["events"] if e["has_snapshot"] and e["end_time"] is None]
            if found:
                break
        assert found, "no event for a person walking past"
        return found[0]


def stored(tmp_path: Path, event_id: str) -> dict:
    with sqlite3.connect(tmp_path / "data" / "camserver.db") as db:
        (data,) = db.execute("SELECT data FROM events WHERE id = ?", (event_id,)).fetchone()
    return json.loads(data)


async def test_event_ends_on_sigterm_and_on_restart_after_kill(tmp_path):
    """A real person event: SIGTERM ends and stores it ("server stop"); after kill -9 the next start closes it ("server restart")."""
    frames = person_frames(30)
    server = await start(tmp_path)
    try:
        async with websockets.connect(server.ws("door"), compression=None) as cam:
            event = await open_event(server, cam, frames)
            assert event["label"] == "person" and event["camera"] == "door" and event["end_time"] is None
            assert await server.stop() == 0  # with the camera still connected
    finally:
        if server.proc.returncode is None:
            await server.stop()
    record = stored(tmp_path, event["id"])
    assert record["end_reason"] == "server stop" and record["end_time"] is not None
    assert (tmp_path / "data" / "snapshots" / f"{event['id']}.jpg").exists()

    server = await start(tmp_path)
    try:
        async with websockets.connect(server.ws("door"), compression=None) as cam:
            second = await open_event(server, cam, frames)
            assert second["id"] != event["id"]
            server.proc.send_signal(signal.SIGKILL)
            await server.proc.wait()
    finally:
        if server.proc.returncode is None:
            await server.stop()
    assert stored(tmp_path, second["id"])["end_time"] is None  # what was committed is there, still open

    server = await start(tmp_path)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT_S)) as http:
            async with http.get(f"{server.http}/api/events/{second['id']}") as resp:
                after = await resp.json()
        assert after["end_reason"] == "server restart" and after["end_time"] is not None
    finally:
        assert await server.stop() == 0


async def test_real_model_person_crossing_gives_exactly_one_event(tmp_path):
    """The trained model and the real tracker in process: a person crossing gives exactly one event, with a snapshot."""
    from camserver.app import CamServer
    from conftest import make_config

    config = make_config(detect={"model": str(TESTDATA / "shapes-yolo11n.pt"), "imgsz": 320,
                                 "cache_dir": str(tmp_path / "cache")},
                         events={"max_disappeared_s": 1.0}, storage={"dir": str(tmp_path / "data")})
    empty = cv2.imencode(".jpg", make_scene(99), [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
    async with CamServer.from_config(config) as server:
        async with websockets.connect(f"ws://127.0.0.1:{server.ws_port}/ws/door", compression=None) as cam:
            for frame in person_frames(30) + [empty] * 20:
                await cam.send(frame)
                await asyncio.sleep(0.1)
            await wait_for(lambda: server.events.idle and server.events.events_total >= 1, timeout=30)
            async with asyncio.timeout(30):  # the event ends once the person is gone for max_disappeared_s
                while not (events := await server.events.query({}, 10, None)) or events[0]["end_time"] is None:
                    await asyncio.sleep(0.1)
    assert len(events) == 1, events
    (event,) = events
    assert event["label"] == "person" and event["end_reason"] == "disappeared" and event["has_snapshot"]
    assert event["top_score"] >= 0.7
