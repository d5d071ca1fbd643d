"""The recordings listing, span exports and clip pruning across wall-clock steps (an injected clock).

After the clock steps back an hour, one hour of labels holds two recordings: the listing shows both
in the order they were made, each with its seq, and a span of labels is cut from one of them (the
newest, or the one `seq` names), never both joined. After a step forward of a day, nothing is
pruned or hidden for looking a day old.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator

import aiohttp
from aiohttp import web

from camserver.record import probe
from camserver.record.index import RecordingIndex, recording_path
from camserver.record.kind import RecordingsKind
from camserver.record.labels import choose
from camserver.web.recordings import RecordingsApi
from conftest import served_app, wait_for
from recordkit import Rig, duration, needs_ffmpeg, recording, scene_jpeg

HOUR = 3600.0
DAY = 86400.0
T0 = 1_000_000.0


def index_on(tmp_path) -> RecordingIndex:
    db = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    index = RecordingIndex(db, tmp_path, keep_clock=lambda: 5010.0)
    index.create()
    return index


def segment(index: RecordingIndex, steady: float, label: float, length: float = 600.0, camera: str = "yard",
            kind: str = "segment") -> str:
    """A finished recording of `length` s from steady time `steady`, labelled `label`, with a 10-byte file."""
    path = recording_path(camera, kind, label + steady * 1e-6)  # unique even where two labels repeat
    index.add(path, camera, kind, label, steady)
    file = index.file(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(b"x" * 10)
    index.finish(path, label, label + length, 100, 10, 320, 240, steady)
    return path


def stepped_back(index: RecordingIndex) -> tuple[list[str], list[str]]:
    """An hour recorded (6 segments of 10 min), then the clock steps back 1 h and the next hour is recorded:
    both hours carry the labels [T0, T0 + 1 h)."""
    before = [segment(index, T0 + 600 * k, T0 + 600 * k) for k in range(6)]
    after = [segment(index, T0 + HOUR + 600 * k, T0 + 600 * k) for k in range(6)]
    return before, after


def test_listing_after_a_step_back_shows_both_recordings_in_the_order_made(tmp_path):
    """Labels [T0+5 min, T0+15 min] after a step back of 1 h: the two recordings of each hour are listed, the hour
    before the step first, each with its seq; sorted by label they would interleave."""
    index = index_on(tmp_path)
    before, after = stepped_back(index)
    rows = index.recordings("yard", T0 + 300, T0 + 900)
    assert [r["path"] for r in rows] == before[:2] + after[:2]
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    assert [r["start_time"] for r in rows] == [T0, T0 + 600, T0, T0 + 600]


def test_a_span_of_labels_two_recordings_share_is_cut_from_one_of_them(tmp_path):
    """The labels [T0+100, T0+200] after a step back: the newest recording's steady span by default, naming the other;
    the older one's when its seq is asked for; a seq not there is no choice at all."""
    index = index_on(tmp_path)
    before, after = stepped_back(index)
    rows = index.recordings("yard", T0 + 100, T0 + 200)
    seq = {r["path"]: r["seq"] for r in rows}
    newest = choose(rows, T0 + 100, T0 + 200)
    assert newest is not None and (newest.start, newest.end) == (T0 + HOUR + 100, T0 + HOUR + 200)
    assert newest.seq == seq[after[0]] and newest.others == (seq[before[0]],) and not newest.asked
    older = choose(rows, T0 + 100, T0 + 200, seq[before[0]])
    assert older is not None and (older.start, older.end) == (T0 + 100, T0 + 200) and older.asked
    assert older.others == (seq[after[0]],)
    assert choose(rows, T0 + 100, T0 + 200, 999) is None
    # the steady span holds the one recording only: nothing of the other hour is joined in
    assert [r["path"] for r in index.recordings("yard", newest.start, newest.end, steady=True)] == [after[0]]


def test_a_span_across_a_step_forward_of_a_day_is_one_timeline(tmp_path):
    """Recorded before and after a step forward of a day: each label span has one recording, no choice to make,
    and the listing of everything is in the order made."""
    index = index_on(tmp_path)
    before = [segment(index, T0 + 600 * k, T0 + 600 * k) for k in range(3)]
    after = [segment(index, T0 + 1800 + 600 * k, T0 + 1800 + DAY + 600 * k) for k in range(3)]
    assert [r["path"] for r in index.recordings("yard")] == before + after
    rows = index.recordings("yard", T0 + DAY + 1900, T0 + DAY + 2000)
    choice = choose(rows, T0 + DAY + 1900, T0 + DAY + 2000)
    assert [r["path"] for r in rows] == [after[0]]
    assert choice is not None and choice.others == () and (choice.start, choice.end) == (T0 + 1900, T0 + 2000)


def clip_rows(index: RecordingIndex, now_wall: float, began_steady: float, began_label: float,
              newest_steady: float) -> str:
    """An events table holding 'kept'; a span for the event 'new' (not stored yet: its row is on its way)
    begun at `began_steady` labelled `began_label`; a segment recorded up to `newest_steady`."""
    index.db.execute("CREATE TABLE events (id TEXT PRIMARY KEY)")
    index.db.execute("INSERT INTO events (id) VALUES ('kept')")
    span = segment(index, began_steady, began_label, 10.0, kind="span")
    index.set_clip("new", "yard", span, began_label, began_label + 10, steady=began_steady)
    index.end_clip("new", began_label + 10, began_steady + 10)
    segment(index, newest_steady - 10, newest_steady - 10 + (now_wall - newest_steady), 10.0)
    return span


def test_prune_after_a_step_forward_of_a_day_keeps_the_clip_just_made(tmp_path):
    """A Pi a day behind records an event's clip, then NTP steps the clock a day forward: the clip, 20 s old in
    steady time, is not pruned as an hour-old orphan (labels would make it a day old), nor its span removed."""
    index = index_on(tmp_path)
    now = time.time()  # the wall clock after the step; everything was labelled a day behind it
    span = clip_rows(index, now, now - DAY - 20, now - DAY - 20, now - DAY)
    RecordingsKind(index, retain_days=30).expire(5010.0, 256)
    clip = index.clip("new")
    assert clip is not None and clip["has_clip"] and index.file(span).exists()


def test_prune_after_a_step_back_of_an_hour_goes_by_steady_time(tmp_path):
    """An orphan clip (its event deleted without delete_clip) begun 2 h of steady time ago, then the clock steps back
    1 h: it is pruned now (over the 1 h grace in steady time) and its span expires; by labels it looked 59 min old."""
    index = index_on(tmp_path)
    now = time.time()  # the wall clock after the step back; steady time reads an hour ahead of it
    span = clip_rows(index, now, now + HOUR - 2 * HOUR + 60, now + HOUR - 2 * HOUR + 60, now + HOUR)
    RecordingsKind(index, retain_days=30).expire(5010.0, 256)
    assert index.clip("new") is None and not index.file(span).exists()


# --- end to end: a real Recorder and encoder, the routes on a real aiohttp server -------------------


@asynccontextmanager
async def serving(rig: Rig, steady=None) -> AsyncIterator[str]:
    """The recording routes over the rig's Recorder on 127.0.0.1; yields the base URL."""
    app = web.Application()
    rec = rig.recorder
    RecordingsApi(rec.clip_file, rec.list_recordings, rec.export, lambda c: c == "gate", clock=rig.clock,
                  steady=steady).add_routes(app)
    async with served_app(app) as base:
        yield base


async def feed(rig: Rig, steady: float, offset: float, seconds: float, size: tuple[int, int]) -> None:
    """Frames at 10 fps from steady time `steady`, labelled steady + `offset` (the wall clock's error)."""
    rec = rig.recorder
    for k in range(round(seconds * 10)):
        t = steady + k / 10
        rig.clock.now = t
        rec.on_frame("gate", scene_jpeg(k % 50, *size), t, t + offset)
        cam = rec.cameras["gate"]
        if cam.queued_frames > 30:
            await wait_for(lambda: cam.queued_frames <= 5, timeout=30, what="the encoder to catch up")
    rec.camera_offline("gate")


@needs_ffmpeg
async def test_clip_of_labels_two_recordings_share_returns_the_one_asked_for(tmp_path):
    """Continuous recording at 320x240 for 6 s, an hour offline, the clock steps back 1 h, 6 s more at 640x480: the
    same labels. The listing shows all six segments in the order made with their seq; clip.mp4 over 3 s of those
    labels is the newest recording (640x480, 3 s by ffprobe, 30 frames: nothing of the other joined), says so in
    X-Clip-Seq/X-Clip-Other-Seqs, and with &seq= the older one."""
    async with recording(tmp_path, mode="continuous", segment_s=2) as rig:
        await feed(rig, T0, 0.0, 6.0, (320, 240))
        await feed(rig, T0 + HOUR + 6, -HOUR - 6, 6.0, (640, 480))  # steady went on; labels start at T0 again
        await rig.settled("gate", count=6)
        async with serving(rig) as base, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            async with http.get(f"{base}/api/cameras/gate/recordings", params={"after": T0, "before": T0 + 6}) as resp:
                listed = (await resp.json())["recordings"]
            assert [r["width"] for r in listed] == [320] * 3 + [640] * 3
            assert [r["start_time"] for r in listed] == [T0, T0 + 2, T0 + 4] * 2
            seqs = [r["seq"] for r in listed]
            assert seqs == sorted(seqs) and len(set(seqs)) == 6
            span = {"start": T0 + 2, "end": T0 + 5}
            async with http.get(f"{base}/api/cameras/gate/clip.mp4", params=span) as resp:
                assert resp.status == 200
                assert resp.headers["X-Clip-Choice"] == "newest"
                assert resp.headers["X-Clip-Seq"] == str(seqs[4]) and resp.headers["X-Clip-Other-Seqs"] == str(seqs[1])
                (tmp_path / "newest.mp4").write_bytes(await resp.read())
            async with http.get(f"{base}/api/cameras/gate/clip.mp4", params={**span, "seq": seqs[1]}) as resp:
                assert resp.status == 200 and resp.headers["X-Clip-Choice"] == "asked"
                assert resp.headers["X-Clip-Seq"] == str(seqs[1])
                (tmp_path / "older.mp4").write_bytes(await resp.read())
            async with http.get(f"{base}/api/cameras/gate/clip.mp4", params={**span, "seq": 10_000}) as resp:
                assert resp.status == 404
            async with http.get(f"{base}/api/cameras/gate/clip.mp4", params={**span, "seq": "-1"}) as resp:
                assert resp.status == 400
        for name, width in (("newest.mp4", 640), ("older.mp4", 320)):
            found = probe(tmp_path / name)
            assert found is not None and found.width == width and found.frames == 30
            assert abs(duration(tmp_path / name) - 3.0) < 1.0


@needs_ffmpeg
async def test_default_listing_after_a_step_forward_of_a_day_is_the_last_24_h_of_steady_time(tmp_path):
    """Recorded, then the wall clock steps a day forward: the default listing (no after) still shows what was
    recorded minutes ago, where "the last 24 h" of labels would hide it."""
    async with recording(tmp_path, mode="continuous", segment_s=2) as rig:
        await feed(rig, T0, 0.0, 4.0, (320, 240))
        await rig.settled("gate", count=2)
        rig.clock.now = T0 + DAY + 60  # the wall clock (the route's label clock) is a day ahead of steady time
        async with serving(rig, steady=lambda: T0 + 60) as base, aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/cameras/gate/recordings") as resp:
                listed = (await resp.json())["recordings"]
        assert [r["start_time"] for r in listed] == [T0, T0 + 2]
