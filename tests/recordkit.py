"""Helpers for the recording tests: a Recorder on a real SQLite index, frames, ffprobe."""

from __future__ import annotations

import functools
import json
import os
import shutil
import sqlite3
import subprocess
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import cv2
import pytest

from camserver.config import from_mapping
from camserver.record import Recorder, RecordingIndex
from camserver.sim.simcam import make_scene
from conftest import wait_for

FFPROBE = shutil.which("ffprobe")
FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFPROBE is None or FFMPEG is None,
                                  reason="ffmpeg/ffprobe not installed (apt-get install ffmpeg)")


@functools.cache
def scene_jpeg(i: int, width: int = 320, height: int = 240) -> bytes:
    """The simulator's moving scene as a JPEG (quality as the simulator's default)."""
    ok, buf = cv2.imencode(".jpg", make_scene(i, width, height), [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


class Clock:
    """A wall clock the test moves (frames carry synthetic arrival times)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Rig:
    """A Recorder with its index database, executor and clock."""

    def __init__(self, root: Path, recorder: Recorder, db: sqlite3.Connection, clock: Clock) -> None:
        self.root, self.recorder, self.db, self.clock = root, recorder, db, clock

    async def feed(self, camera: str, start: float, seconds: float, fps: float = 10.0, size=(320, 240),
                   first: int = 0) -> float:
        """Frames from `start` for `seconds` at `fps`, paced so the encoder keeps up; returns the next frame's time."""
        n = round(seconds * fps)
        for k in range(n):
            t = start + k / fps
            await self.frame(camera, t, first + k, size)
        return start + n / fps

    async def frame(self, camera: str, t: float, i: int = 0, size=(320, 240)) -> None:
        """One frame at time t (the clock moves to t)."""
        self.clock.now = t
        self.recorder.on_frame(camera, scene_jpeg(i % 50, *size), t)
        cam = self.recorder.cameras.get(camera)
        if cam is not None and cam.queued_frames > 30:
            await wait_for(lambda: cam.queued_frames <= 5, what="the encoder to catch up")

    def rows(self, camera: str | None = None) -> list[dict[str, Any]]:
        """Every recording row (oldest first)."""
        index = self.recorder.index
        return [r for c in ([camera] if camera else self.cameras()) for r in index.recordings(c)]

    def cameras(self) -> list[str]:
        """Cameras with recordings."""
        return [r[0] for r in self.db.execute("SELECT DISTINCT camera FROM recordings ORDER BY camera")]

    async def settled(self, camera: str | None = None, count: int | None = None) -> list[dict[str, Any]]:
        """Wait until no recording is in progress (and `count` exist); returns the rows."""
        def done() -> bool:
            rows = self._rows_on_index(camera)
            return bool(rows) and not any(r["in_progress"] for r in rows) and (count is None or len(rows) == count)
        await wait_for(done, timeout=20, what="recordings to be finished")
        return self._rows_on_index(camera)

    async def finished(self, camera: str, at_least: int) -> list[dict[str, Any]]:
        """Wait until `at_least` of the camera's recordings are finished; returns those."""
        def done() -> bool:
            return sum(not r["in_progress"] for r in self._rows_on_index(camera)) >= at_least
        await wait_for(done, timeout=20, what=f"{at_least} finished recordings")
        return [r for r in self._rows_on_index(camera) if not r["in_progress"]]

    def _rows_on_index(self, camera: str | None) -> list[dict[str, Any]]:
        return self.recorder.index_executor.submit(self.rows, camera).result(timeout=10)

    def index(self, fn, *args):
        """Run an index call on the index thread."""
        return self.recorder.index_executor.submit(fn, *args).result(timeout=10)


@asynccontextmanager
async def recording(root: Path, workers: int = 2, retry_s: float = 60.0, start: bool = True,
                    **table: Any) -> AsyncIterator[Rig]:
    """A started Recorder writing under `root`, config from `table` (validated like config.toml's [record])."""
    config = from_mapping({"record": table}).record
    db = sqlite3.connect(root / "events.db", check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="events")
    clock = Clock()
    recorder = Recorder(config, root, RecordingIndex(db, root), executor, clock=clock, workers=workers,
                        retry_s=retry_s, housekeeping_s=0.05)
    if start:
        await recorder.start()
    try:
        yield Rig(root, recorder, db, clock)
    finally:
        if start:
            await recorder.stop()
        executor.shutdown(wait=True)
        db.close()


def ffprobe(path: Path) -> dict[str, Any]:
    """ffprobe's format and stream of a file, plus its packets' keyframe flags and times."""
    out = subprocess.run([FFPROBE, "-v", "error", "-show_format", "-show_streams", "-show_packets",
                          "-show_entries", "packet=pts_time,flags", "-of", "json", str(path)],
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def duration(path: Path) -> float:
    """The file's duration by ffprobe."""
    return float(ffprobe(path)["format"]["duration"])


def keyframe_times(path: Path) -> list[float]:
    """Times of the keyframe packets, by ffprobe."""
    return [float(p["pts_time"]) for p in ffprobe(path)["packets"] if "K" in p["flags"]]


def decodes_cleanly(path: Path) -> int:
    """Decode every frame with ffmpeg; fails on any error; returns the frame count."""
    # passthrough: frames keep their own (wandering) times instead of being fitted to a constant rate
    out = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-fps_mode", "passthrough",
                          "-enc_time_base", "-1", "-f", "null", "-"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    count = subprocess.run([FFPROBE, "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                            "stream=nb_read_frames", "-of", "csv=p=0", str(path)],
                           capture_output=True, text=True, timeout=120, check=True)
    return int(count.stdout.strip())

def du(folder: Path) -> int:
    """Bytes of every file under `folder`, walked."""
    total = 0
    for base, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(base, name)).st_size
            except OSError:
                pass
    return total
