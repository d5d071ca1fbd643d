"""The server as a process under faketime: its wall clock steps back 1 h, later forward 1 day, during continuous
recording with real person events (the trained shapes model); the monotonic clock is left alone."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from pathlib import Path

import aiohttp
import cv2
import pytest
import websockets

from camserver.sim.simcam import make_scene
from recordkit import duration
from serverproc import ServerProcess

# ../shared/testdata beside the checkout (or beside the folder of worktrees the checkout is in)
TESTDATA = next((p / "shared" / "testdata" for p in Path(__file__).resolve().parents[2:4]
                 if (p / "shared" / "testdata").is_dir()), Path(__file__).resolve().parents[2] / "shared" / "testdata")
FAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"))),
                Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"))
HOUR, DAY = 3600.0, 86400.0
FPS = 4  # few frames: on a loaded machine the detector gets the CPU they would take

pytestmark = [
    pytest.mark.skipif(not FAKETIME.exists(), reason=f"faketime not installed ({FAKETIME}; apt-get install faketime)"),
    pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffmpeg/ffprobe not installed (apt-get install ffmpeg)"),
    pytest.mark.skipif(not (TESTDATA / "shapes-yolo11n.pt").exists(), reason="../shared/testdata not beside the checkout"),
]


def frames(walk: int) -> tuple[bytes, list[bytes]]:
    """The empty scene, and a person walking left to right across it in `walk` frames, as camera JPEGs."""
    sys.path.insert(0, str(TESTDATA))
    import draw_shapes as ds

    def jpeg(img) -> bytes:
        return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()

    walking = []
    for i in range(walk):
        img = make_scene(1)
        # slowly (25 px/s): on a loaded machine the detector may see one frame a second, the tracker still follows
        ds.draw_person(img, ds.person_box(cx=150 + 150 * i / walk, bottom=440, height=220))
        walking.append(jpeg(img))
    return jpeg(make_scene(1)), walking


async def test_events_and_clips_survive_wall_clock_steps(tmp_path, monkeypatch):
    """Stepped back 1 h during an event and forward 1 day between two others: no event ends before it starts,
    every event's clip (cut from continuous segments) plays for its span within 1 s (ffprobe), and /healthz
    counts both steps with the last one's signed size."""
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    config = tmp_path / "camserver.toml"  # torch: openvino's export sends telemetry from a forked process, which
    # hangs under faketime (libfaketime's lock in the child of a threaded process)
    config.write_text(f'[storage]\ndir = "{tmp_path / "data"}"\n[detect]\nbackend = "torch"\ncache_dir = "{tmp_path / "cache"}"\n'
                      '[events]\nmax_disappeared_s = 3.0\n'
                      '[record]\nmode = "continuous"\nsegment_s = 4\npre_capture_s = 1\npost_capture_s = 1\n')
    for key, value in {"LD_PRELOAD": str(FAKETIME), "FAKETIME_TIMESTAMP_FILE": str(offset), "FAKETIME_NO_CACHE": "1",
                       "FAKETIME_DONT_FAKE_MONOTONIC": "1"}.items():
        monkeypatch.setenv(key, value)
    server = await ServerProcess.start("--config", str(config), "--model", str(TESTDATA / "shapes-yolo11n.pt"),
                                       "--imgsz", "320", cwd=tmp_path, timeout=180)
    for key in ("LD_PRELOAD", "FAKETIME_TIMESTAMP_FILE"):
        monkeypatch.delenv(key)  # ffprobe and the rest of the test on the real clock
    empty, walking = frames(8 * FPS)
    # (seconds of the script, what happens): the person walks three times; the clock steps in the first
    # walk (back 1 h) and before the third (forward 1 day: from an hour behind to 23 h ahead)
    script = [(3.0, "walk"), (7.0, "-1h"), (16.0, "walk"), (27.0, "+23h"), (29.0, "walk")]
    try:
        async with websockets.connect(server.ws("door"), compression=None) as cam, \
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            started, walk_from = time.monotonic(), None
            for seq in range(41 * FPS):
                at = seq / FPS
                while script and script[0][0] <= at:
                    _, what = script.pop(0)
                    if what == "walk":
                        walk_from = seq
                    else:
                        offset.write_text(what + "\n")
                shown = walking[seq - walk_from] if walk_from is not None and seq - walk_from < len(walking) else empty
                async with asyncio.timeout(10):  # the server reads every frame: a hang fails here, not at the deadline
                    await cam.send(shown)
                await asyncio.sleep(max(0.0, started + (seq + 1) / FPS - time.monotonic()))
            deadline = time.monotonic() + 30  # the last event ends max_disappeared_s after the person left
            while True:
                async with http.get(f"{server.http}/api/events") as resp:
                    events = (await resp.json())["events"]
                if len(events) >= 3 and all(e["end_time"] is not None for e in events):
                    break
                if time.monotonic() > deadline and len(events) >= 2 and all(e["end_time"] is not None for e in events):
                    break  # a walk the loaded detector missed: the others still span both steps (checked below)
                if time.monotonic() > deadline:
                    async with http.get(f"{server.http}/api/cameras") as resp:
                        figures = await resp.json()
                    raise AssertionError(f"not 2 ended events (one per walk): {events}; the camera: {figures}")
                await asyncio.sleep(0.5)
            for event in events:
                assert event["end_time"] >= event["start_time"], event
            async with http.get(f"{server.http}/healthz") as resp:
                clock = (await resp.json())["clock"]
            assert clock["steps"] == 2 and clock["last_step_s"] == pytest.approx(DAY, abs=60), clock
            first, last = events[-1], events[0]  # newest first
            assert last["start_time"] - first["start_time"] > DAY - HOUR  # labels follow the wall clock

            for event in events:
                async with asyncio.timeout(30):  # its post-capture recorded, the segment holding it finished
                    while True:
                        async with http.get(f"{server.http}/api/events/{event['id']}/clip.mp4") as resp:
                            body = await resp.read()
                            if resp.status == 200 and "X-Recording" not in resp.headers:
                                clip_offset = float(resp.headers["X-Clip-Offset"])
                                break
                        await asyncio.sleep(0.5)
                async with http.get(f"{server.http}/api/events/{event['id']}") as resp:
                    record = await resp.json()
                span = record["clip_end"] - record["clip_start"]
                assert span == pytest.approx(event["end_time"] - event["start_time"] + 2, abs=0.01), record
                path = tmp_path / f"{event['id']}.mp4"
                path.write_bytes(body)
                assert clip_offset <= 2.1  # it starts at the keyframe before its start (one every 2 s)
                assert duration(path) - clip_offset == pytest.approx(span, abs=1.0), (record, clip_offset, duration(path))
    finally:
        rc = await server.stop(timeout=30)
        print("".join(server.lines)[-6000:])  # shown when the test fails
    assert rc == 0
    log = "".join(server.lines)
    assert log.count("the wall clock stepped") == 2, log
    assert "stepped back by 36" in log and "stepped forward by 86" in log
