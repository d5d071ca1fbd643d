"""Retention across wall-clock steps: the order recordings were made in, and their age in keep-time."""

from __future__ import annotations

import sqlite3

from camserver.record.index import RecordingIndex, recording_path
from camserver.record.kind import RecordingsKind
from camserver.storage import Database
from camserver.storage.keepclock import KeepClock

HOUR = 3600.0
DAY = 86400.0


def segment(index: RecordingIndex, camera: str, start: float, size: int = 1000) -> str:
    """A finished segment of 10 s from `start` (its label), with a file of `size` bytes."""
    path = recording_path(camera, "segment", start)
    index.add(path, camera, "segment", start)
    file = index.file(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(b"x" * size)
    index.finish(path, start, start + 10, 100, size, 320, 240)
    return path


def test_a_clock_step_back_never_makes_the_newest_recordings_oldest(tmp_path):
    """Ten segments, then the clock steps back 1 h and five more are made: trimming five removes the first five
    made, not the five made after the step whose labels are an hour earlier."""
    db = sqlite3.connect(tmp_path / "camserver.db", isolation_level=None)
    index = RecordingIndex(db, tmp_path)
    index.create()
    before = [segment(index, "yard", 1_000_000.0 + 10 * i) for i in range(10)]
    after = [segment(index, "yard", 1_000_000.0 + 100 - HOUR + 10 * i) for i in range(5)]
    kind = RecordingsKind(index, retain_days=30)
    assert kind.trim(5 * 1000, False, 256) == 5
    left = {r[0] for r in db.execute("SELECT path FROM recordings")}
    assert left == set(before[5:]) | set(after)
    assert all(index.file(p).exists() for p in after)


async def test_a_clock_step_forward_does_not_age_the_recordings(tmp_path):
    """record.retain_days = 0.5 and segments just made; the wall clock steps forward a day: a budget round keeps
    them (their age is keep-time, seconds old), where an age from labels would have removed them all."""
    wall = [1_800_000_000.0]
    database = Database(tmp_path, 100, clock=lambda: wall[0])
    await database.open()
    try:
        index = RecordingIndex(database, tmp_path)
        await database.run(index.create)
        database.budget.add(RecordingsKind(index, retain_days=0.5))
        made = [await database.run(segment, index, "yard", wall[0] - 60 + 10 * i) for i in range(5)]
        wall[0] += DAY  # NTP syncs a Pi that booted a day behind
        while await database.budget.round():
            pass
        left = await database.run(lambda: [r[0] for r in index.db.execute("SELECT path FROM recordings")])
        assert sorted(left) == sorted(made)
        assert database.budget.removed["recordings"] == 0
    finally:
        await database.close()


def test_keep_time_follows_the_monotonic_clock_and_adds_the_downtime_once(tmp_path):
    """Keep-time advances with the monotonic clock whatever the wall clock does, goes on across a restart from
    the saved value plus the downtime, and a wall clock behind the saved one counts no downtime."""
    conn = sqlite3.connect(tmp_path / "camserver.db", isolation_level=None)
    wall, mono = [1_000_000.0], [50.0]
    clock = KeepClock(lambda: wall[0], lambda: mono[0])
    clock.attach(conn)
    assert clock.now() == 1_000_000.0  # a new database starts at the wall-clock time
    mono[0] += 100
    wall[0] += 100 - HOUR  # stepped back an hour meanwhile
    assert clock.now() == 1_000_100.0
    clock.save(conn)
    wall[0] += 300  # down 5 minutes; the next boot's monotonic clock starts again
    mono[0] = 7.0
    again = KeepClock(lambda: wall[0], lambda: mono[0])
    again.attach(conn)
    assert again.now() == 1_000_400.0
    again.save(conn)
    wall[0] -= DAY  # a stale clock at the next boot: no negative downtime
    third = KeepClock(lambda: wall[0], lambda: mono[0])
    third.attach(conn)
    assert third.now() == 1_000_400.0


def test_a_recordings_table_of_an_earlier_version_is_migrated_in_the_order_it_was_made(tmp_path):
    """A recordings table without seq and kept_at gets both: seq in the order rows were inserted, kept_at from the
    labels; new rows come after the old ones whatever their label."""
    db = sqlite3.connect(tmp_path / "camserver.db", isolation_level=None)
    db.executescript("""
        CREATE TABLE recordings (path TEXT PRIMARY KEY, camera TEXT NOT NULL, kind TEXT NOT NULL,
            start_time REAL NOT NULL, end_time REAL, frames INTEGER NOT NULL DEFAULT 0,
            bytes INTEGER NOT NULL DEFAULT 0, width INTEGER NOT NULL DEFAULT 0, height INTEGER NOT NULL DEFAULT 0,
            in_progress INTEGER NOT NULL);
        INSERT INTO recordings VALUES ('recordings/a/1/z.mp4', 'a', 'segment', 2000, 2010, 1, 10, 1, 1, 0);
        INSERT INTO recordings VALUES ('recordings/a/1/a.mp4', 'a', 'segment', 1000, 1010, 1, 10, 1, 1, 0);
    """)
    index = RecordingIndex(db, tmp_path, keep_clock=lambda: 5000.0)
    index.create()
    rows = db.execute("SELECT path, seq, kept_at FROM recordings ORDER BY seq").fetchall()
    assert rows == [("recordings/a/1/z.mp4", 1, 2010.0), ("recordings/a/1/a.mp4", 2, 1010.0)]
    new = segment(index, "a", 500.0)
    assert db.execute("SELECT seq, kept_at FROM recordings WHERE path = ?", (new,)).fetchone() == (3, 5000.0)
    assert [r["path"] for r in index.oldest()] == ["recordings/a/1/z.mp4", "recordings/a/1/a.mp4", new]


def test_recordings_without_rows_are_adopted_in_the_order_they_were_written(tmp_path):
    """A database lost with its rows: the files found are adopted oldest-written first (seq) and aged by when they
    were written, so retention removes the oldest of them first whatever their names (labels of a stepped clock)."""
    import os
    import time as _time

    from camserver.record import recover
    from test_record import write_clip

    db = sqlite3.connect(tmp_path / "camserver.db", isolation_level=None)
    index = RecordingIndex(db, tmp_path, keep_clock=lambda: 1_000_000.0)
    index.create()
    now = _time.time()
    labels = [5000.0, 3000.0, 4000.0]  # the names' times: not the order they were written in
    paths = []
    for k, label in enumerate(labels):
        path = recording_path("yard", "segment", label)
        file = tmp_path / path
        file.parent.mkdir(parents=True, exist_ok=True)
        write_clip(file, label, 1.0)
        os.utime(file, (now - 3 * 86400 + k * 3600, now - 3 * 86400 + k * 3600))  # written 3 days ago, an hour apart
        paths.append(path)
    assert recover(index).adopted == 3
    rows = db.execute("SELECT path, kept_at FROM recordings ORDER BY seq").fetchall()
    assert [p for p, _ in rows] == paths
    assert all(abs(kept - (1_000_000.0 - 3 * 86400 + k * 3600)) < 60 for k, (_, kept) in enumerate(rows))


async def test_firmware_over_max_mb_costs_older_days_never_the_newest(tmp_path):
    """3 MB of firmware images under max_mb = 2 with segments of today and of three days ago: the old segments go
    to make room, today's stay (firmware is counted, but never a reason to empty the newest day)."""
    from camserver.storage.folder import CountedFolder

    wall = [1_800_000_000.0]
    database = Database(tmp_path, 2, clock=lambda: wall[0], monotonic=lambda: 0.0)
    await database.open()
    try:
        (tmp_path / "firmware").mkdir()
        (tmp_path / "firmware" / "cam.bin").write_bytes(bytes(3 * 1024 * 1024))
        index = RecordingIndex(database, tmp_path, keep_clock=lambda: wall[0])
        await database.run(index.create)
        database.budget.add(RecordingsKind(index, retain_days=30))
        database.budget.add(CountedFolder("firmware", tmp_path / "firmware"))
        wall[0] -= 3 * DAY
        old = [await database.run(segment, index, "yard", wall[0] + 10 * i, 50_000) for i in range(4)]
        wall[0] += 3 * DAY
        today = [await database.run(segment, index, "yard", wall[0] + 10 * i, 50_000) for i in range(4)]
        while await database.budget.round():
            pass
        left = await database.run(lambda: {r[0] for r in index.db.execute("SELECT path FROM recordings")})
        assert left == set(today) and not left & set(old)
        assert database.budget.last.files["firmware"] == 3 * 1024 * 1024
    finally:
        await database.close()
