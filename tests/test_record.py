"""Recording building blocks: the clip writer (H.264/MP4 by PyAV), pre-capture ring, index, export, repair."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import av
import pytest

from camserver.config import ConfigError, from_mapping
from camserver.record import (ClipWriter, EncodeSettings, JpegDecoder, PreCaptureBuffer, RecordingIndex, export_span,
                              probe, recording_path, recover, remux)
from camserver.record.encoder import SizeChanged, is_fragmented
from camserver.record.index import parse_recording_path
from recordkit import decodes_cleanly, duration, ffprobe, keyframe_times, needs_ffmpeg, scene_jpeg



def write_clip(path: Path, start: float, seconds: float, fps: float = 10.0, size=(320, 240), jitter: float = 0.0,
               close: bool = True, first: int = 0) -> ClipWriter:
    """A clip of the simulator's scene; `jitter` moves every other frame's arrival by that much."""
    writer = ClipWriter(path, EncodeSettings())
    n = round(seconds * fps)
    for k in range(n):
        t = start + k / fps + (jitter if k % 2 else 0.0)
        assert writer.write(scene_jpeg((first + k) % 50, *size), t)
    if close:
        writer.close(start + n / fps)
    return writer


@needs_ffmpeg
def test_clip_is_h264_yuv420p_with_sparse_keyframes_and_real_duration(tmp_path):
    """A 10 s clip at a wandering ~10 fps: H.264 yuv420p (limited range), lasts 10 s, keyframes every 2 s, not every frame."""
    path = tmp_path / "clip.mp4"
    writer = write_clip(path, 1000.0, 10.0, jitter=0.03)
    remux(path, path)
    info = ffprobe(path)
    stream = info["streams"][0]
    assert (stream["codec_name"], stream["pix_fmt"], stream["width"], stream["height"]) == ("h264", "yuv420p", 320, 240)
    assert stream.get("color_range", "tv") == "tv"
    assert abs(duration(path) - 10.0) < 0.05
    keys = keyframe_times(path)
    # decoded JPEGs are marked as I pictures: without resetting that, all 100 frames would be keyframes
    assert 5 <= len(keys) <= 6, keys
    assert all(0 < b - a <= 2.0 + 1e-6 for a, b in zip(keys, keys[1:])), keys
    assert writer.frames == 100 and decodes_cleanly(path) == 100


@needs_ffmpeg
def test_timestamps_are_arrival_times_not_a_frame_rate(tmp_path):
    """Frames 0.1 s apart, then a 3 s gap: the clip shows the gap (each frame at its own arrival time)."""
    path = tmp_path / "gap.mp4"
    writer = ClipWriter(path, EncodeSettings())
    times = [0.0, 0.1, 0.2, 3.2, 3.3]
    for k, t in enumerate(times):
        writer.write(scene_jpeg(k), 500.0 + t)
    writer.close(503.4)
    pts = [float(p["pts_time"]) for p in ffprobe(path)["packets"]]
    assert pts == pytest.approx(times, abs=0.002)
    assert duration(path) == pytest.approx(3.4, abs=0.01)


def test_faststart_puts_the_index_first(tmp_path):
    """A growing file is fragmented (moof, readable while recording); a finished one is a regular MP4, moov before mdat."""
    path = tmp_path / "c.mp4"
    write_clip(path, 0.0, 3.0)
    assert is_fragmented(path)
    result = remux(path, path)
    assert result is not None and result.frames == 30
    head = path.read_bytes()
    assert not is_fragmented(path)
    assert head.index(b"moov") < head.index(b"mdat")


@needs_ffmpeg
def test_growing_file_is_readable_while_recording_and_repairs_to_last_fragment(tmp_path):
    """While the writer is still open, the file on disk already plays up to its last fragment; cut anywhere, a repair keeps what is whole."""
    path = tmp_path / "growing.mp4"
    writer = write_clip(path, 0.0, 6.5, close=False)
    snapshot = path.read_bytes()  # what a kill -9 right now would leave
    live = probe(path)
    assert live is not None and live.frames >= 40 and live.keyframes >= 2  # fragments reach the file at once
    writer.close()
    for cut in (len(snapshot), len(snapshot) * 2 // 3, len(snapshot) // 2):
        broken = tmp_path / f"cut-{cut}.mp4"
        broken.write_bytes(snapshot[:cut])
        fixed = remux(broken, broken)
        assert fixed is not None and fixed.frames > 0
        assert decodes_cleanly(broken) == fixed.frames
    tiny = tmp_path / "tiny.mp4"
    tiny.write_bytes(snapshot[:200])  # header only: nothing plays
    assert remux(tiny, tmp_path / "out.mp4") is None and not (tmp_path / "out.mp4").exists()


def test_frame_size_change_is_scaled_to_the_file(tmp_path):
    """A writer that scales keeps one size when the camera switches framesize; one that does not raises SizeChanged."""
    scaled = ClipWriter(tmp_path / "s.mp4", EncodeSettings(), scale=True)
    scaled.write(scene_jpeg(1, 320, 240), 0.0)
    scaled.write(scene_jpeg(2, 640, 480), 0.1)
    stats = scaled.close()
    assert stats is not None and (stats.width, stats.height, stats.frames) == (320, 240, 2)
    strict = ClipWriter(tmp_path / "t.mp4", EncodeSettings())
    strict.write(scene_jpeg(1, 320, 240), 0.0)
    with pytest.raises(SizeChanged):
        strict.write(scene_jpeg(2, 640, 480), 0.1)
    strict.abort()


def test_a_broken_jpeg_is_skipped():
    """Bytes that do not decode are skipped (False), the writer goes on."""
    decoder = JpegDecoder()
    assert decoder.decode(b"\xff\xd8\xff\xe0garbage\xff\xd9") is None
    frame = decoder.decode(scene_jpeg(3))
    assert frame is not None and frame.format.name == "yuv420p" and (frame.width, frame.height) == (320, 240)


def test_disk_full_raises_an_error(tmp_path):
    """Writing to a full disk (/dev/full: every write fails with ENOSPC) raises, it does not hang or crash."""
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full missing")
    link = tmp_path / "full.mp4"
    link.symlink_to("/dev/full")
    writer = ClipWriter(link, EncodeSettings())
    with pytest.raises((OSError, av.error.FFmpegError)):
        for k in range(60):
            writer.write(scene_jpeg(k), k / 10)
        writer.close()
    writer.abort()


def test_pre_capture_ring_is_bounded_in_seconds_and_bytes():
    """The ring keeps the last max_s of JPEG bytes, and never more than max_bytes; counters follow."""
    ring = PreCaptureBuffer(max_s=2.0, max_bytes=10_000)
    for k in range(50):
        ring.append(100 + k * 0.1, b"x" * 100)
    assert ring.frames == 21 and ring.bytes == 2100 and ring.seconds == pytest.approx(2.0)
    assert [t for t, _ in ring.since(104.45)] == pytest.approx([104.5, 104.6, 104.7, 104.8, 104.9])
    for k in range(5):
        ring.append(105 + k * 0.1, b"y" * 3000)
    assert ring.bytes <= 10_000 and ring.evicted_for_bytes > 0
    ring.clear()
    assert ring.frames == 0 and ring.bytes == 0


def test_config_record_table():
    """[record] is validated: modes, pre_capture_s at most 60, presets, crf."""
    config = from_mapping({"record": {"mode": "Continuous", "pre_capture_s": 10, "segment_s": 30}}).record
    assert (config.mode, config.pre_capture_s, config.segment_s, config.preset) == ("continuous", 10.0, 30.0, "veryfast")
    assert from_mapping({}).record.mode == "events"
    for bad in ({"mode": "always"}, {"pre_capture_s": 61}, {"preset": "warp"}, {"crf": 52}, {"x264_params": "a b"}):
        with pytest.raises(ConfigError):
            from_mapping({"record": bad})


def index_on(tmp_path) -> RecordingIndex:
    db = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    index = RecordingIndex(db, tmp_path, keep_clock=lambda: 5010.0)  # keep-time: every row kept at 5010
    index.create()
    return index


def test_paths_carry_camera_kind_and_start():
    """recordings/<camera>/<date>/<HHMMSS>-<kind>-<epoch ms>.mp4, and back."""
    path = recording_path("porch-1", "segment", 1_718_000_000.125)
    assert path.startswith("recordings/porch-1/") and path.endswith("-segment-1718000000125.mp4")
    assert parse_recording_path(path) == ("porch-1", "segment", 1_718_000_000.125)
    assert parse_recording_path("recordings/x/notes.txt") is None


def test_index_shared_span_is_deleted_with_its_last_event(tmp_path):
    """Two events share a span: deleting one keeps the file, deleting the other removes it; segments expire by age."""
    index = index_on(tmp_path)
    span = recording_path("cam", "span", 1000.0)
    (tmp_path / span).parent.mkdir(parents=True)
    write_clip(tmp_path / span, 1000.0, 2.0)
    remux(tmp_path / span, tmp_path / span)
    index.add(span, "cam", "span", 1000.0)
    index.finish(span, 1000.0, 1020.0, 20, (tmp_path / span).stat().st_size, 320, 240)
    index.set_clip("e1", "cam", span, 1000.0, 1012.0)
    index.set_clip("e2", "cam", span, 1008.0, None)
    clip = index.clip("e2")
    assert clip["has_clip"] and clip["offset_s"] == pytest.approx(8.0) and clip["clip_end"] is None
    index.end_clip("e2", 1020.0)
    assert index.clip_fields(["e1", "e2", "nope"]) == {
        "e1": {"has_clip": True, "clip_start": 1000.0, "clip_end": 1012.0},
        "e2": {"has_clip": True, "clip_start": 1008.0, "clip_end": 1020.0}}
    assert index.delete_clip("e1") == 0 and (tmp_path / span).exists()
    assert index.delete_clip("e2") > 0 and not (tmp_path / span).exists()
    assert index.get(span) is None
    seg = recording_path("cam", "segment", 5000.0)
    (tmp_path / seg).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / seg).write_bytes(b"x" * 1000)
    index.add(seg, "cam", "segment", 5000.0)
    index.finish(seg, 5000.0, 5010.0, 100, 1000, 320, 240)
    assert index.used_bytes() == 1000
    assert index.expire(now=5010.0 + 86400 * 2.9, retain_days=3) == (0, 0)
    assert index.expire(now=5010.0 + 86400 * 3.1, retain_days=3) == (1, 1000)
    assert not (tmp_path / seg).exists()


@needs_ffmpeg
def test_recover_repairs_growing_files_and_adopts_orphans(tmp_path):
    """After a crash: an in-progress row's fragmented file is made final; a file without row is indexed; junk goes."""
    index = index_on(tmp_path)
    growing = recording_path("cam", "segment", 2000.0)
    (tmp_path / growing).parent.mkdir(parents=True)
    writer = write_clip(tmp_path / growing, 2000.0, 5.0, close=False)
    snapshot = (tmp_path / growing).read_bytes()
    writer.close()
    (tmp_path / growing).write_bytes(snapshot)  # as a kill -9 left it
    index.add(growing, "cam", "segment", 2000.0)
    orphan = recording_path("cam", "segment", 2010.0)
    write_clip(tmp_path / orphan, 2010.0, 3.0)
    empty = recording_path("cam", "span", 2020.0)
    (tmp_path / empty).write_bytes(snapshot[:300])
    index.add(empty, "cam", "span", 2020.0)
    gone = recording_path("cam", "segment", 2030.0)
    index.add(gone, "cam", "segment", 2030.0)
    (tmp_path / (orphan + ".tmp")).write_bytes(b"half a remux")
    report = recover(index)
    assert (report.repaired, report.adopted, report.removed, report.rows_dropped, report.temp_removed) == (1, 1, 1, 1, 1)
    rows = index.recordings("cam")
    assert [r["path"] for r in rows] == [growing, orphan]
    assert not any(r["in_progress"] for r in rows)
    for row in rows:
        assert not is_fragmented(tmp_path / row["path"])
        assert decodes_cleanly(tmp_path / row["path"]) == row["frames"] > 0
    assert rows[1]["end_time"] == pytest.approx(2013.0, abs=0.01)
    assert not recover(index)  # a second sweep finds nothing


@needs_ffmpeg
def test_export_spans_segments_cut_at_keyframes(tmp_path):
    """An export of [start, end] over three contiguous segments: remuxed, starts at a keyframe <= start, ends at the
    first frame at or after end (any frame can end it), so it covers the span and no more than a frame past it."""
    sources = []
    for k, start in enumerate((100.0, 104.0, 108.0)):
        path = tmp_path / f"s{k}.mp4"
        write_clip(path, start, 4.0, first=k * 40)
        remux(path, path)
        sources.append((path, start))
    out = tmp_path / "export.mp4"
    result = export_span(sources, 103.0, 109.0, out)
    assert result is not None and result.skipped_files == 0
    assert result.start == pytest.approx(102.0) and result.end == pytest.approx(109.0)  # keyframes at 100, 102, 104, ...
    assert duration(out) == pytest.approx(7.0, abs=0.05)
    keys = keyframe_times(out)
    assert keys[0] == 0.0 and len(keys) == 4  # 102, 104, 106, 108
    assert decodes_cleanly(out) == 70
    assert export_span(sources, 200.0, 210.0, tmp_path / "none.mp4") is None


def test_export_skips_a_listed_file_not_there_yet_or_half_written(tmp_path):
    """A segment listed before its file exists (its row comes first), or one with no complete header yet, is left
    out of an export of a span still recording, instead of failing it."""
    a = tmp_path / "a.mp4"
    write_clip(a, 0.0, 2.0)
    (tmp_path / "header-only.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom")
    sources = [(a, 0.0), (tmp_path / "header-only.mp4", 2.0), (tmp_path / "not-yet.mp4", 4.0)]
    result = export_span(sources, 0.0, 6.0, tmp_path / "out.mp4")
    assert result is not None and result.frames == 20


def test_export_leaves_out_a_different_frame_size(tmp_path):
    """A segment of another frame size (the camera switched framesize) cannot be concatenated: it is left out and counted."""
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    write_clip(a, 0.0, 2.0)
    write_clip(b, 2.0, 2.0, size=(640, 480))
    result = export_span([(a, 0.0), (b, 2.0)], 0.0, 4.0, tmp_path / "out.mp4")
    assert result is not None and result.frames == 20 and result.skipped_files == 1


def test_spans_of_events_gone_from_the_events_table_expire(tmp_path):
    """A clip whose event no longer exists in the events table (deleted without delete_clip) is pruned; its span expires."""
    index = index_on(tmp_path)
    index.db.execute("CREATE TABLE events (id TEXT PRIMARY KEY)")
    index.db.execute("INSERT INTO events (id) VALUES ('kept')")
    spans = []
    for k, event_id in enumerate(("kept", "gone")):
        span = recording_path("cam", "span", 1000.0 + 100 * k)
        (tmp_path / span).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / span).write_bytes(b"x" * 10)
        index.add(span, "cam", "span", 1000.0 + 100 * k)
        index.finish(span, 1000.0 + 100 * k, 1010.0 + 100 * k, 100, 10, 320, 240)
        index.set_clip(event_id, "cam", span, 1000.0 + 100 * k, 1010.0 + 100 * k)
        spans.append(span)
    assert index.expire() == (0, 0)  # within the grace period: the event row may still be on its way
    # an hour of steady time later (something newer recorded), the clip of the gone event is pruned
    index.add("recordings/cam/later.mp4", "cam", "segment", 1100.0 + 3601, 1100.0 + 3601)
    assert index.expire() == (1, 10)
    assert (tmp_path / spans[0]).exists() and not (tmp_path / spans[1]).exists()
    assert index.clip("gone") is None and index.clip("kept")["has_clip"]


def test_written_since_sums_the_finished_recordings_of_the_span_in_keep_time(tmp_path):
    """The Settings view's "about N days at today's rate" is made of this: finished recordings only, by the keep-time
    they were finished at, whatever their labels say (the last one labelled a day ahead by a wall-clock step)."""
    db = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    keep = [0.0]
    index = RecordingIndex(db, tmp_path, keep_clock=lambda: keep[0])
    index.create()
    for kept, label, size in ((1010.0, 1000.0, 300), (2010.0, 2000.0, 500), (3010.0, 3000.0 + 86400, 700)):
        keep[0] = kept
        seg = recording_path("cam", "segment", label)
        index.add(seg, "cam", "segment", label)
        index.finish(seg, label, label + 10.0, 100, size, 320, 240)
    index.add(recording_path("cam", "segment", 9500.0), "cam", "segment", 9500.0)  # still being written
    assert index.written_since(1500.0) == (1200, 2010.0)
    assert index.written_since(10_000.0) == (0, None)
