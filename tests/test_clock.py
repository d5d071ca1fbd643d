"""Time that survives wall-clock steps: steady time for durations, wall-clock labels, steps seen and counted.

The clocks are injected: a wall clock the test steps (back 1 h, forward 1 day) while the monotonic
clock runs on. tests/test_clock_e2e.py does the same to the real server process under faketime.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time

import aiohttp
import pytest

from camserver.app import CamServer
from camserver.clock import STEP_S, Timeline
from camserver.detect import Detection
from camserver.events.rules import CameraRules
from conftest import ScriptedDetector, connect_camera, make_config, tagged_jpeg, wait_for
from recordkit import duration, needs_ffmpeg, recording, scene_jpeg

HOUR, DAY = 3600.0, 86400.0


class SteppedClock:
    """A monotonic clock the test moves, and a wall clock `shift` seconds away from it (a step changes `shift`)."""

    def __init__(self, now: float = 500.0, wall0: float = 1_800_000_000.0) -> None:
        self.mono = now
        self.shift = wall0 - now

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> float:
        return self.mono + self.shift


def test_a_step_is_seen_once_with_its_signed_size(caplog):
    """A wall-clock step back 1 h, then forward 1 day: each logged once with its size and direction, counted;
    steady time runs on untouched; jitter under the threshold is no step."""
    clock = SteppedClock()
    timeline = Timeline(clock.wall, clock.monotonic)
    start = timeline.now()
    assert start == pytest.approx(clock.wall())  # on the wall clock's scale while nothing stepped
    clock.mono += 10
    clock.shift += STEP_S * 0.9  # an NTP correction that slipped through: not a step
    timeline.check()
    assert timeline.steps == 0
    with caplog.at_level(logging.WARNING, logger="camserver.clock"):
        clock.mono += 10
        clock.shift -= HOUR
        for _ in range(5):  # looked at many times (every frame): one step
            steady, wall = timeline.stamp()
        assert steady == pytest.approx(start + 20) and wall == pytest.approx(clock.wall())
        assert timeline.health() == {"steps": 1, "last_step_s": pytest.approx(-HOUR, abs=STEP_S), "step_threshold_s": STEP_S}
        clock.mono += 5
        clock.shift += DAY
        timeline.check()
        timeline.check()
    assert timeline.steps == 2 and timeline.last_step_s == pytest.approx(DAY)
    assert timeline.now() == pytest.approx(start + 25)  # steady time never jumped
    lines = [r.getMessage() for r in caplog.records if "stepped" in r.getMessage()]
    assert len(lines) == 2, lines
    assert "stepped back by 3600.0 s (60.00 min)" in lines[0] and "forward by 86400.0 s (24.00 h)" in lines[1], lines


def test_steady_time_goes_on_after_the_last_run():
    """A restart after a step back: steady time starts after the last run's latest steady time, and that is no step."""
    clock = SteppedClock()
    timeline = Timeline(clock.wall, clock.monotonic)
    last_run = timeline.now() + HOUR  # the last run started an hour "later" by a clock since stepped back
    timeline.not_before(last_run)
    assert timeline.now() >= last_run
    clock.mono += 1
    timeline.check()
    assert timeline.steps == 0 and timeline.label(timeline.now()) == pytest.approx(clock.wall())


def person(x: float) -> list[Detection]:
    return [Detection(0, "person", 0.9, (x, 40.0, x + 60.0, 220.0))]


def test_an_event_across_a_step_back_ends_after_it_starts():
    """Rules on steady time: an event that began before a 1 h step back ends (its label) after it began, by the
    time it lasted; the next event's start is labelled by the wall clock after the step."""
    config = make_config(events={"max_disappeared_s": 1.0}).events
    rules = CameraRules("door", config)
    clock = SteppedClock()
    changes = []
    for k in range(60):  # 6 s at 10 fps; the clock steps back 1 h at 3 s
        clock.mono += 0.1
        if k == 30:
            clock.shift -= HOUR
        changes += rules.on_frame(clock.mono, b"jpeg", (320, 240), person(10.0 + k), wall=clock.wall())
    clock.mono += 2.0
    changes += rules.sweep(clock.mono)
    (new,), (end,) = [c for c in changes if c.type == "new"], [c for c in changes if c.type == "end"]
    event = end.after
    assert event["id"] == new.after["id"] and event["end_time"] >= event["start_time"]
    assert event["end_time"] - event["start_time"] == pytest.approx(end.when - new.when)
    assert 5.0 < event["end_time"] - event["start_time"] <= 6.0  # confirmed after a few frames, seen to the last
    assert all(c.at >= event["start_time"] for c in changes)  # what updated_at gets: never before the start


@needs_ffmpeg
async def test_segments_across_steps_keep_their_lengths_and_the_clip_its_span(tmp_path):
    """Continuous recording through a step back 1 h and one forward 1 day: every segment lasts what it recorded
    (ffprobe), labelled from its first frame's wall clock; an event's clip across both steps is found by its
    steady span and lasts that span, not the hours its labels moved."""
    async with recording(tmp_path, mode="continuous", segment_s=2, pre_capture_s=1, post_capture_s=1) as rig:
        mono, shift = 1000.0, 1_800_000_000.0 - 1000.0
        for k in range(100):  # 10 s at 10 fps: the clock steps back at 3 s, forward at 6 s
            t = mono + k / 10
            if k == 30:
                shift -= HOUR
            if k == 60:
                shift += DAY
            if k == 20:  # the event's labels are its start's and that plus its steady length (as the rules give them)
                began, label = t, t + shift
                rig.recorder.event_started("gate", "e1", t, label)
            rig.clock.now = t
            rig.recorder.on_frame("gate", scene_jpeg(k % 50), t, t + shift)
            if k == 80:
                rig.recorder.event_ended("gate", "e1", t, label + t - began)
            cam = rig.recorder.cameras["gate"]
            if cam.queued_frames > 30:
                await wait_for(lambda: cam.queued_frames <= 5, what="the encoder")
        rig.recorder.camera_offline("gate")
        rows = await rig.settled("gate")
        assert sum(r["frames"] for r in rows) == 100
        order = sorted(rows, key=lambda r: r["steady_start"])
        for a, b in zip(order, order[1:]):
            assert a["steady_end"] == pytest.approx(b["steady_start"], abs=0.002)  # contiguous in what was recorded
        for row in rows:
            length = row["end_time"] - row["start_time"]
            assert 0 < length <= 2.0 + 0.15 and length == pytest.approx(row["steady_end"] - row["steady_start"])
            assert duration(tmp_path / row["path"]) == pytest.approx(length, abs=0.06)
        labels = sorted(r["start_time"] for r in rows)
        assert labels[0] < 1_800_000_000.0 - HOUR + 10 and labels[-1] > 1_800_000_000.0 + DAY - HOUR  # both steps
        clip = await rig.recorder.clip_file("e1")
        assert clip is not None and not clip.in_progress
        info = rig.index(rig.recorder.index.clip, "e1")
        span = info["clip_end"] - info["clip_start"]
        assert span == pytest.approx(6.0 + 1 + 1, abs=0.01)  # 2 s to 8 s, plus pre and post: not 1 day - 1 h
        assert duration(clip.path) - clip.offset_s == pytest.approx(span, abs=1.0)


class SteppingWall:
    """The real monotonic clock, and a wall clock the test steps."""

    def __init__(self) -> None:
        self.shift = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift


@needs_ffmpeg
async def test_server_events_and_clips_survive_steps(tmp_path):
    """The server with a wall clock stepped back 1 h during an event and forward 1 day before another: no event
    ends before it starts, each clip (cut from continuous segments) lasts its span, /healthz counts both steps."""
    wall = SteppingWall()
    people = {range(20, 45), range(70, 90)}

    def script(cam: int, seq: int):
        return [("person", 0.9, (10.0 + 2 * seq, 60.0, 50.0 + 2 * seq, 200.0))] if any(seq in r for r in people) else []

    config = make_config(events={"max_disappeared_s": 0.5},
                         record={"mode": "continuous", "segment_s": 2, "pre_capture_s": 1, "post_capture_s": 1})
    server = CamServer(config, detector_factory=lambda: ScriptedDetector(script),
                       clock=Timeline(wall=wall, monotonic=time.monotonic))
    async with server, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        base = f"http://127.0.0.1:{server.http_port}"
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        started = time.monotonic()
        for seq in range(1, 111):  # 11 s at 10 fps
            if seq == 32:
                wall.shift -= HOUR  # in the first event
            if seq == 60:
                wall.shift += DAY  # between the events
            await cam.send(tagged_jpeg(0, seq))
            await asyncio.sleep(max(0.0, started + seq / 10 - time.monotonic()))
        await wait_for(lambda: server.events.events_total >= 2 and server.events.idle, timeout=15, what="2 events")
        await cam.close()
        async with http.get(f"{base}/healthz") as resp:
            clock = (await resp.json())["clock"]
        assert clock["steps"] == 2 and clock["last_step_s"] == pytest.approx(DAY, abs=5)
        async with http.get(f"{base}/api/events") as resp:
            events = (await resp.json())["events"]
        assert len(events) == 2
        for event in events:
            assert event["end_time"] >= event["start_time"], event
            async with asyncio.timeout(20):
                while (clip := await server.recorder.clip_file(event["id"])) is None or clip.in_progress:
                    await asyncio.sleep(0.3)
            async with http.get(f"{base}/api/events/{event['id']}") as resp:
                record = await resp.json()
            assert record["has_clip"], record
            async with http.get(f"{base}/api/events/{event['id']}/clip.mp4") as resp:
                assert resp.status == 200
                offset = float(resp.headers["X-Clip-Offset"])
                (tmp_path / "clip.mp4").write_bytes(await resp.read())
            span = record["clip_end"] - record["clip_start"]
            assert span == pytest.approx(event["end_time"] - event["start_time"] + 2, abs=0.01)
            assert duration(tmp_path / "clip.mp4") - offset == pytest.approx(span, abs=1.0), (event, offset)


async def test_an_event_after_a_step_back_is_kept_as_new():
    """An event that starts after the wall clock stepped back 1 h is kept at keep-time now (retention by age),
    not an hour earlier: its age is measured on wall-clock labels, never labels against steady time."""
    wall = SteppingWall()
    config = make_config(events={"max_disappeared_s": 0.5})
    script = lambda cam, seq: [("person", 0.9, (10.0 + 2 * seq, 60.0, 50.0 + 2 * seq, 200.0))] if seq >= 5 else []  # noqa: E731
    server = CamServer(config, detector_factory=lambda: ScriptedDetector(script),
                       clock=Timeline(wall=wall, monotonic=time.monotonic))
    async with server:
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        for seq in range(1, 16):
            if seq == 3:
                wall.shift -= HOUR  # before the event starts
            await cam.send(tagged_jpeg(0, seq))
            await asyncio.sleep(0.1)
        await wait_for(lambda: server.events.events_total >= 1 and server.events.idle, timeout=15, what="an event")
        await cam.close()
        keep_now = server.database.budget.keep_clock.now()

        def kept(conn: sqlite3.Connection) -> list[tuple[float, float]]:
            return conn.execute("SELECT kept_at, start_time FROM events").fetchall()

        rows = await server.database.use(kept)
    assert server.timeline.steps == 1 and rows
    for kept_at, start_time in rows:
        assert start_time == pytest.approx(time.time() - HOUR, abs=30)  # labelled by the stepped clock
        assert kept_at == pytest.approx(keep_now, abs=30), (kept_at - keep_now)
