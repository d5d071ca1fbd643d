"""The Recorder: event clips with pre/post capture, shared spans, continuous and motion segments, backpressure, disk errors."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from camserver.storage import Database
from camserver.supervise import Supervisor
from camserver.config import from_mapping
from camserver.detect import Detection
from camserver.events.engine import EventEngine
from camserver.record import Recorder, RecordingIndex, probe
from camserver.record.index import recording_path
from camserver.record.worker import MAX_QUEUED_FRAMES
from conftest import wait_for
from recordkit import Clock, decodes_cleanly, duration, keyframe_times, needs_ffmpeg, recording, scene_jpeg

T0 = 1_000_000.0


@needs_ffmpeg
async def test_an_8s_event_gives_a_clip_of_8_plus_pre_plus_post(tmp_path):
    """An event of 8 s (reported as it happens: confirmed late, ended late) gives a clip of 8 + 5 + 5 s by ffprobe, +-0.5 s."""
    async with recording(tmp_path, mode="events", pre_capture_s=5, post_capture_s=5) as rig:
        rec = rig.recorder
        t = await rig.feed("door", T0, 10.5)  # the ring fills; nothing is recorded yet
        assert not list((tmp_path / "recordings").rglob("*.mp4")) if (tmp_path / "recordings").exists() else True
        assert rec.camera_stats("door")["buffer_frames"] > 50
        rec.event_started("door", "ev1", T0 + 10.0)  # confirmed half a second after the first sighting
        t = await rig.feed("door", t, 9.0, first=105)
        rec.event_ended("door", "ev1", T0 + 18.0)  # ends when the object has been gone a while
        await rig.feed("door", t, 12.0, first=195)  # past post-capture and the linger: the span is finished
        rows = await rig.settled("door", count=1)
        clip = rig.index(rec.index.clip, "ev1")
        assert clip["has_clip"] and not clip["in_progress"]
        assert clip["clip_start"] == pytest.approx(T0 + 5.0) and clip["clip_end"] == pytest.approx(T0 + 23.0, abs=0.11)
        path = tmp_path / rows[0]["path"]
        assert duration(path) == pytest.approx(8 + 5 + 5, abs=0.5)
        assert rows[0]["start_time"] == pytest.approx(T0 + 5.0)
        assert decodes_cleanly(path) == rows[0]["frames"]
        keys = keyframe_times(path)
        assert len(keys) <= 10 and all(b - a <= 2.0 + 1e-6 for a, b in zip(keys, keys[1:]))


@needs_ffmpeg
async def test_an_event_clip_in_events_mode_is_capped_at_an_hour(tmp_path):
    """A span (events mode) ends an hour after its start, like every clip: the open event's clip ends
    there and the event goes on; its end later neither reopens nor lengthens the clip."""
    async with recording(tmp_path, mode="events", pre_capture_s=2, post_capture_s=2) as rig:
        rec = rig.recorder
        t = await rig.feed("door", T0, 4.0, fps=1.0)
        rec.event_started("door", "long", T0 + 3.0)
        # one frame every 10 s for 70 minutes (cheap to encode, the times are what matter)
        t = await rig.feed("door", t, 4200.0, fps=0.1, first=4)
        assert rec.cameras["door"].span is None  # the file was finished at the hour, the event is still open
        rows = await rig.settled("door", count=1)
        clip = rig.index(rec.index.clip, "long")
        assert clip["has_clip"] and not clip["in_progress"]
        assert clip["clip_start"] == pytest.approx(T0 + 1.0)
        assert clip["clip_end"] - clip["clip_start"] == pytest.approx(3600.0, abs=0.01)
        assert rec.event_ended("door", "long", t) is True
        await rig.feed("door", t, 20.0, fps=1.0, first=500)
        clip = rig.index(rec.index.clip, "long")
        assert clip["clip_end"] - clip["clip_start"] == pytest.approx(3600.0, abs=0.01)
        assert len(rig.rows("door")) == 1 and not rec.cameras["door"].capped
        assert 3580.0 <= duration(tmp_path / rows[0]["path"]) <= 3600.0


async def test_overlapping_events_share_one_span_and_one_encode(tmp_path):
    """Three events that overlap (with pre/post capture) make one file, each event mapped into it; a later one gets its own."""
    async with recording(tmp_path, mode="events", pre_capture_s=3, post_capture_s=2) as rig:
        rec = rig.recorder
        t = await rig.feed("yard", T0, 5.0)
        rec.event_started("yard", "a", T0 + 5.0)
        t = await rig.feed("yard", t, 3.0, first=50)
        rec.event_started("yard", "b", T0 + 8.0)  # overlaps a
        rec.event_ended("yard", "a", T0 + 8.0)
        t = await rig.feed("yard", t, 2.0, first=80)
        rec.event_ended("yard", "b", T0 + 10.0)  # span deadline 12.0
        t = await rig.feed("yard", t, 4.0, first=100)  # lingering: not encoded, but kept in the ring
        rec.event_started("yard", "c", T0 + 14.0)  # within pre_capture of the deadline: continues the same file
        t = await rig.feed("yard", t, 1.0, first=140)
        rec.event_ended("yard", "c", T0 + 15.0)  # deadline 17.0, closes after 20.0
        t = await rig.feed("yard", t, 15.0, first=150)
        rec.event_started("yard", "d", T0 + 30.0)  # long after: a new file
        t = await rig.feed("yard", t, 2.0, first=250)
        rec.event_ended("yard", "d", T0 + 31.0)
        await rig.feed("yard", t, 8.0, first=270)
        rows = await rig.settled("yard", count=2)
        clips = {e: rig.index(rec.index.clip, e) for e in "abcd"}
        first, second = rows[0]["path"], rows[1]["path"]
        assert [clips[e]["path"] for e in "abcd"] == [first, first, first, second]
        assert clips["a"]["offset_s"] == pytest.approx(0.0) and clips["b"]["offset_s"] == pytest.approx(3.0)
        assert clips["c"]["offset_s"] == pytest.approx(9.0)
        # one encode: every frame from 2.0 to 17.0 once, no frame twice (frames are 0.1 s apart)
        assert rows[0]["start_time"] == pytest.approx(T0 + 2.0)
        assert rows[0]["frames"] == pytest.approx(151, abs=2)
        assert rows[0]["end_time"] - rows[0]["start_time"] == pytest.approx(15.1, abs=0.2)
        assert rec.cameras["yard"].frames_recorded == rows[0]["frames"] + rows[1]["frames"]
        assert rig.index(rec.index.delete_clip, "a") == 0 and rig.index(rec.index.delete_clip, "b") == 0
        assert (tmp_path / first).exists()
        assert rig.index(rec.index.delete_clip, "c") > 0 and not (tmp_path / first).exists()


async def test_open_event_clip_is_what_is_recorded_so_far(tmp_path):
    """While an event is open its clip is the growing file, and it already plays (fragmented MP4)."""
    async with recording(tmp_path, mode="events", pre_capture_s=2, post_capture_s=2) as rig:
        rec = rig.recorder
        t = await rig.feed("cam", T0, 3.0)
        rec.event_started("cam", "open", T0 + 3.0)
        await rig.feed("cam", t, 7.0, first=30)
        clip = await rec.clip_file("open")
        assert clip is not None and clip.in_progress

        def playable() -> bool:
            found = probe(clip.path)
            return found is not None and found.frames >= 50

        await wait_for(playable, what="fragments of the open event's file")


async def test_continuous_segments_are_contiguous_and_cut_on_the_clock(tmp_path):
    """continuous: every frame goes into segment_s files cut at wall-clock multiples; they follow each other without gaps."""
    async with recording(tmp_path, mode="continuous", segment_s=2) as rig:
        t = await rig.feed("gate", T0 + 0.3, 7.0)
        rig.recorder.camera_offline("gate")
        rows = await rig.settled("gate", count=4)
        assert [r["start_time"] for r in rows] == pytest.approx([T0 + 0.3, T0 + 2, T0 + 4, T0 + 6])
        for a, b in zip(rows, rows[1:]):
            assert a["end_time"] == pytest.approx(b["start_time"], abs=0.002)
        assert rows[-1]["end_time"] == pytest.approx(t, abs=0.002)
        assert sum(r["frames"] for r in rows) == 70
        export = await rig.recorder.export("gate", T0 + 3.0, T0 + 5.0)
        assert export is not None and probe(export.path).frames == 30  # from the keyframe at 2.0 to the frame at 5.0
        listed = await rig.recorder.list_recordings("gate", T0 + 3.0, T0 + 5.0)
        assert [r["start_time"] for r in listed] == pytest.approx([T0 + 2, T0 + 4])


async def test_frame_size_change_mid_segment_scales_then_next_segment_takes_new_size(tmp_path):
    """The camera switches framesize: the current file is scaled to its size, the next segment has the new size."""
    async with recording(tmp_path, mode="continuous", segment_s=2) as rig:
        t = await rig.feed("cam", T0, 1.0)
        t = await rig.feed("cam", t, 3.0, size=(640, 480))
        rig.recorder.camera_offline("cam")
        rows = await rig.settled("cam", count=2)
        assert [(r["width"], r["height"]) for r in rows] == [(320, 240), (640, 480)]
        assert [r["frames"] for r in rows] == [20, 20]


async def test_motion_mode_keeps_only_segments_near_motion(tmp_path):
    """motion: segments touched by motion (padded by pre/post capture) are kept, the others deleted; no motion source keeps all."""
    async with recording(tmp_path, mode="motion", segment_s=2, pre_capture_s=1, post_capture_s=1) as rig:
        rec = rig.recorder
        t = await rig.feed("m", T0, 4.5)
        rec.motion("m", True, T0 + 4.5)  # activity [3.5, 6.0]
        t = await rig.feed("m", t, 0.5, first=45)
        rec.motion("m", False, T0 + 5.0)
        t = await rig.feed("m", t, 7.0, first=50)
        await rig.feed("other", T0, 5.0)  # a camera that never reports motion
        rig.clock.now = T0 + 12.0
        rec.camera_offline("m")
        rec.camera_offline("other")

        def kept() -> list[float]:
            return [round(r["start_time"] - T0, 3) for r in rig._rows_on_index("m") if not r["in_progress"]]

        # [0, 2) and [6, 12) saw nothing (the last one, cut short by going offline, is judged later)
        await wait_for(lambda: kept()[:2] == [2.0, 4.0] and 0.0 not in kept() and 6.0 not in kept()
                       and 8.0 not in kept(), what="segments without motion to be deleted")
        assert len(await rig.settled("other")) == 3


async def test_encoder_behind_drops_frames_from_the_recording_only(tmp_path, caplog):
    """With the encoder stuck, frames beyond the bounded queue are dropped and counted, logged once; on_frame never blocks."""
    async with recording(tmp_path, workers=1, mode="continuous", segment_s=60) as rig:
        rec = rig.recorder
        stuck = threading.Event()
        rec.workers.submit(stuck.wait)  # the only encoding thread is busy
        caplog.set_level(logging.WARNING, logger="camserver.record.recorder")
        for k in range(200):
            rec.on_frame("cam", b"\xff\xd8" + bytes(100) + b"\xff\xd9", T0 + k / 10)
        cam = rec.cameras["cam"]
        assert cam.queued_frames == MAX_QUEUED_FRAMES and cam.frames_dropped == 200 - MAX_QUEUED_FRAMES
        assert rec.health()["record_frames_dropped"] == 150
        assert sum("encoder is behind" in r.getMessage() for r in caplog.records) == 1
        stuck.set()
        await wait_for(lambda: cam.queued_frames == 0, what="the queue to drain")
        assert cam.frames_bad == MAX_QUEUED_FRAMES  # the queued ones were encoded (these bytes do not decode)


async def test_unwritable_folder_pauses_one_camera_and_resumes(tmp_path, caplog):
    """A camera whose folder cannot be written: recording pauses (one log line, counters), other cameras go on; it resumes later."""
    async with recording(tmp_path, mode="continuous", segment_s=2, retry_s=30) as rig:
        rec = rig.recorder
        (tmp_path / "recordings").mkdir()
        (tmp_path / "recordings" / "bad").write_bytes(b"a file where a folder should be")
        caplog.set_level(logging.WARNING, logger="camserver.record.recorder")
        t = await rig.feed("bad", T0, 1.0)
        await wait_for(lambda: rec.cameras["bad"].failed, what="the write error")
        t = await rig.feed("bad", t, 5.0, first=10)
        await rig.feed("good", T0, 6.0)
        stats = rec.camera_stats("bad")
        assert stats["paused"] and stats["write_errors"] == 1 and stats["frames_paused"] >= 40
        assert rec.health()["record_paused_cameras"] == ["bad"]
        assert sum("recording paused" in r.getMessage() for r in caplog.records) == 1
        assert len(await rig.finished("good", 2)) >= 2  # the other camera records on
        (tmp_path / "recordings" / "bad").unlink()  # the disk is writable again
        t = await rig.feed("bad", T0 + 31.0, 3.0)  # after retry_s
        rec.camera_offline("bad")
        rows = await rig.settled("bad")
        assert rows and not rec.camera_stats("bad")["paused"] and sum(r["frames"] for r in rows) == 30


async def test_disk_full_mid_file_pauses_and_keeps_what_was_written(tmp_path):
    """ENOSPC while writing (the file is /dev/full): recording pauses, the camera's other work is unaffected, the next file works."""
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full missing")
    async with recording(tmp_path, mode="continuous", segment_s=2, retry_s=5) as rig:
        rec = rig.recorder
        first = tmp_path / recording_path("cam", "segment", T0)
        first.parent.mkdir(parents=True)
        first.symlink_to("/dev/full")
        await rig.feed("cam", T0, 1.0)
        await wait_for(lambda: rec.cameras["cam"].failed, what="ENOSPC")
        first.unlink()
        await rig.feed("cam", T0 + 6.0, 2.0)
        rec.camera_offline("cam")
        rows = await rig.settled("cam")
        assert [r["start_time"] for r in rows] == [T0 + 6.0] and rows[0]["frames"] == 20
        assert rec.camera_stats("cam")["write_errors"] == 1


CHILD = """
import asyncio, sqlite3, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from camserver.config import from_mapping
from camserver.record import Recorder, RecordingIndex
sys.path.insert(0, sys.argv[2])
from recordkit import scene_jpeg

async def main():
    root = Path(sys.argv[1])
    db = sqlite3.connect(root / "events.db", check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    config = from_mapping({"record": {"mode": "continuous", "segment_s": 4}}).record
    recorder = Recorder(config, root, RecordingIndex(db, root), ThreadPoolExecutor(1))
    await recorder.start()
    print("recording", flush=True)
    k = 0
    while True:  # a camera at 20 fps, forever: only SIGKILL ends this
        recorder.on_frame("cam", scene_jpeg(k % 50), time.time())
        k += 1
        await asyncio.sleep(0.05)

asyncio.run(main())
"""


@needs_ffmpeg
async def test_kill_9_during_continuous_recording_loses_at_most_the_last_segments_tail(tmp_path):
    """A real recording process killed with SIGKILL: after restart every listed recording plays, segments are
    contiguous, and only the last segment's unfinished tail (under 2.5 s) is lost."""
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": f"{tests.parent}{os.pathsep}{tests}"}
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, str(tmp_path), str(tests), env=env,
                                                 stdout=asyncio.subprocess.PIPE)
    try:
        assert await asyncio.wait_for(child.stdout.readline(), 30) == b"recording\n"
        started = time.time()

        def segments_done() -> int:
            with sqlite3.connect(tmp_path / "events.db") as db:
                return db.execute("SELECT COUNT(*) FROM recordings WHERE in_progress = 0").fetchone()[0]

        await wait_for(lambda: segments_done() >= 2, timeout=40, what="two finished segments")
        # kill in the middle of a segment, a couple of fragments into it
        now = time.time()
        into = now % 4
        await asyncio.sleep((2.7 - into) % 4)
        killed_at = time.time()
        child.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(child.wait(), 10) == -signal.SIGKILL
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()

    async with recording(tmp_path, mode="continuous", segment_s=4) as rig:
        report = rig.recorder.recovered
        assert report.repaired >= 1 and report.rows_dropped == 0
        rows = await rig.settled("cam")
    assert rows[0]["start_time"] == pytest.approx(started, abs=0.5)
    for row in rows:
        path = tmp_path / row["path"]
        assert decodes_cleanly(path) == row["frames"] > 0
        assert duration(path) == pytest.approx(row["end_time"] - row["start_time"], abs=0.06)
    for a, b in zip(rows, rows[1:]):
        assert a["end_time"] == pytest.approx(b["start_time"], abs=0.06)  # nothing lost before the last segment
    lost = killed_at - rows[-1]["end_time"]
    assert 0 <= lost < 2.5, lost


@needs_ffmpeg
async def test_wired_to_the_event_engine(tmp_path):
    """Wired as the app will be: the events database and thread, the engine's new/end changes to event_started/ended.
    A person seen for 8 s gets a clip of 8 s + pre + post in the events database, which outlives the recorder."""
    config = from_mapping({"storage": {"dir": str(tmp_path)}, "events": {"max_disappeared_s": 1.0},
                           "record": {"pre_capture_s": 3, "post_capture_s": 2}})
    clock = Clock(T0)
    database = Database(tmp_path)
    await database.open()
    engine = EventEngine(config.events, config.storage, database, clock=clock)
    await engine.start(Supervisor().spawn)
    recorder = Recorder(config.record, tmp_path, RecordingIndex(database, tmp_path), database, clock=clock)
    await recorder.start()

    def on_change(change) -> None:
        event = change.after
        if change.type == "new":
            recorder.event_started(event["camera"], event["id"], event["start_time"])
        elif change.type == "end":
            recorder.event_ended(event["camera"], event["id"], event["end_time"])

    engine.listeners.append(on_change)
    try:
        for k in range(220):  # 22 s at 10 fps; a person from 5 s to 13 s
            t = clock.now = T0 + k / 10
            jpeg = scene_jpeg(k % 50)
            recorder.on_frame("door", jpeg, t)
            people = [Detection(0, "person", 0.9, (60.0 + k, 40.0, 120.0 + k, 220.0))] if 50 <= k < 130 else []
            engine.on_frame("door", t, jpeg, (320, 240), people)
            await wait_for(lambda: engine.idle and recorder.cameras["door"].queued_frames < 20, what="the threads")
        events = await engine.query({}, 10, None)
        assert len(events) == 1 and events[0]["end_time"] is not None
        event = events[0]

        def finished() -> bool:
            clip = database.submit(recorder.index.clip, event["id"]).result()
            return bool(clip and clip["has_clip"] and not clip["in_progress"])

        await wait_for(finished, timeout=20, what="the event's clip")
    finally:
        await recorder.stop()  # before the engine: it records its last rows on the events thread
        await engine.stop()
        await database.close()
    db = sqlite3.connect(tmp_path / "camserver.db")
    (path, clip_start, clip_end), = db.execute("SELECT recording, clip_start, clip_end FROM event_clips").fetchall()
    assert clip_start == pytest.approx(event["start_time"] - 3)
    assert clip_end == pytest.approx(event["end_time"] + 2)
    seen = event["end_time"] - event["start_time"]
    assert 7.0 < seen <= 8.0  # confirmed after a few frames
    assert duration(tmp_path / path) == pytest.approx(seen + 3 + 2, abs=0.5)


async def test_event_end_says_whether_a_clip_was_recorded(tmp_path):
    """event_ended is True for an event with a clip and False where recording was paused; the clip URL is there only then."""
    from types import SimpleNamespace

    from camserver.record.clips import EventClips

    async with recording(tmp_path, mode="events", pre_capture_s=1, post_capture_s=1, retry_s=60) as rig:
        rec = rig.recorder
        clips = EventClips(rec)
        (tmp_path / "recordings").mkdir()
        (tmp_path / "recordings" / "bad").write_bytes(b"a file where a folder should be")
        await rig.feed("good", T0, 2.0)
        await rig.feed("bad", T0, 2.0)
        ends = {}
        for cam in ("good", "bad"):
            new = {"id": f"{cam}-1", "camera": cam, "start_time": T0 + 1.0}
            clips.follow(SimpleNamespace(type="new", after=new, when=None))
            if cam == "bad":
                await rig.feed("bad", T0 + 2.0, 1.0, first=20)
                await wait_for(lambda: rec.cameras["bad"].failed, what="the write error")
            end = dict(new, end_time=T0 + 2.5, end_reason="disappeared")
            clips.follow(SimpleNamespace(type="end", after=end, when=None))
            ends[cam] = end
        assert clips.clip_url(ends["good"]) == "/api/events/good-1/clip.mp4"
        assert clips.clip_url(ends["bad"]) is None, "no clip was recorded: the end message must not point at one"
