"""storage.dir under stress: the size budget, files a crash left, corrupt and deleted databases."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest

import camserver.storage.housekeeping as housekeeping_module
from camserver.app import CamServer
from camserver.events.store import EventStore
from camserver.storage import Database
from camserver.storage.budget import STEP_ITEMS, STEP_PAGES
from conftest import ScriptedDetector, connect_camera, make_config, tagged_jpeg, wait_for

MiB = 1024 * 1024
DAY = 86400.0
ZONES = [f"zone-{k}-along-the-garden-path" for k in range(6)]


def record(event_id: str, start: float, end: float | None = None) -> dict:
    """An event record like the rules make, with six zones: about 1 KB a row, as in the issue's database."""
    return {"id": event_id, "camera": "door", "label": "person", "score": 0.8812, "top_score": 0.9213,
            "box": [123.4, 56.7, 234.5, 456.7], "start_time": start, "end_time": end,
            "end_reason": "disappeared" if end else None, "stationary": False, "current_zones": ZONES,
            "entered_zones": ZONES, "has_snapshot": False, "snapshot_box": None, "snapshot_score": 0.0,
            "announced": True}


# the events table of an earlier version (no seq, no kept_at): start-up migrates it
LEGACY_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, camera TEXT NOT NULL, label TEXT NOT NULL, start_time REAL NOT NULL, end_time REAL,
    zones TEXT NOT NULL, has_snapshot INTEGER NOT NULL, updated_at REAL NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_start ON events (start_time);
"""


def fill(folder: Path, starts: list[float], other_table_bytes: int = 0) -> None:
    """camserver.db as an earlier version left it (no auto-vacuum, WAL): ended events starting at `starts`."""
    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(folder / "camserver.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(LEGACY_SCHEMA)
    db.execute("BEGIN")
    for i, start in enumerate(starts):
        r = record(f"{int(start * 1000)}-{i:06x}", start, start + 10)
        db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (r["id"], "door", "person", start, start + 10, "," + ",".join(ZONES) + ",", 0, start + 10, json.dumps(r)))
    if other_table_bytes:  # another stage's table: the database's own overhead for the events
        db.execute("CREATE TABLE notes (n INTEGER PRIMARY KEY, text TEXT)")
        for _ in range(other_table_bytes // 1000):
            db.execute("INSERT INTO notes (text) VALUES (?)", ("n" * 1000,))
    db.execute("COMMIT")
    db.close()


def db_files_bytes(folder: Path) -> int:
    """The database file, its WAL and SHM on disk."""
    return sum(p.stat().st_size for p in folder.glob("camserver.db*") if p.name.endswith(("db", "-wal", "-shm")))


def starts_of(folder: Path) -> list[float]:
    """start_time of every stored event, oldest first (read with a connection of the test's own)."""
    db = sqlite3.connect(folder / "camserver.db")
    try:
        return [r[0] for r in db.execute("SELECT start_time FROM events ORDER BY start_time")]
    finally:
        db.close()


async def health(server: CamServer) -> dict:
    """GET /healthz."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{server.http_port}/healthz") as resp:
        return await resp.json()


async def test_max_mb_removes_only_the_oldest_it_must_and_the_file_shrinks(tmp_path):
    """The issue's case: 4,000 ended events (~4.3 MB) and max_mb = 2 -> the oldest go until it fits, the file shrinks under 2 MB."""
    now = time.time()
    data = tmp_path / "data"
    starts = [now - 60 - 60 * i for i in range(4000)][::-1]  # one a minute, 2.8 days back
    fill(data, starts)
    before = db_files_bytes(data)
    assert 4.0e6 < before < 4.6e6, before
    server = CamServer(make_config(storage={"dir": str(data), "max_mb": 2}), detector_factory=None)
    async with server:
        await wait_for(lambda: db_files_bytes(data) <= 2 * MiB and server.database.budget.last.total <= 2 * MiB,
                       what="the file under max_mb")
        report = (await health(server))["storage"]
        stored = starts_of(data)
    kept = len(stored)
    assert stored == starts[-kept:]  # oldest first, and only those
    assert 1700 < kept < 2100, kept
    assert stored[0] < now - DAY  # the newest day is far inside the budget
    assert report["removed_by_retention"] == {"exports": 0, "recordings": 0, "firmware": 0, "events": 4000 - kept}
    used = report["used_bytes"]
    assert 2 * MiB - 64 * 1024 <= used["total"] <= 2 * MiB  # only as many as needed: within 64 KiB of max_mb
    assert report["max_bytes"] == 2 * MiB and used["events"] + used["database_overhead"] == used["total"]
    assert report["write_errors"] == 0 and report["corrupt_files_moved"] == 0 and report["incremental_vacuum"] is True


async def test_the_newest_day_is_never_removed_for_the_databases_own_overhead(tmp_path, caplog):
    """Old events go; the newest day (0.85 MB) stays although with another table's 200 KB it is over max_mb = 1, and it is logged."""
    now = time.time()
    data = tmp_path / "data"
    newest_day = [now - 60 - 60 * i for i in range(800)][::-1]  # 13 hours
    old = [now - 3 * DAY + 60 * i for i in range(300)]
    fill(data, old + newest_day, other_table_bytes=200_000)
    caplog.set_level(logging.WARNING, "camserver.storage.budget")
    server = CamServer(make_config(storage={"dir": str(data), "max_mb": 1}), detector_factory=None)
    async with server:
        await wait_for(lambda: len(starts_of(data)) <= 800, what="the old events removed")
        assert starts_of(data) == newest_day
        await server.database.budget.round()  # one more round: nothing more goes
        used = (await health(server))["storage"]["used_bytes"]
    assert starts_of(data) == newest_day
    assert used["total"] > MiB >= used["events"]  # over max_mb only because of the overhead
    assert used["database_overhead"] >= 200_000
    assert any("those events are kept" in r.getMessage() for r in caplog.records)


async def test_a_newest_day_over_max_mb_by_itself_is_trimmed_oldest_first(tmp_path):
    """2,000 events in the last 20 hours (~2.2 MB) and max_mb = 1: the newest day's oldest go until its events fit."""
    now = time.time()
    data = tmp_path / "data"
    starts = [now - 30 - 36 * i for i in range(2000)][::-1]
    fill(data, starts)
    server = CamServer(make_config(storage={"dir": str(data), "max_mb": 1}), detector_factory=None)
    async with server:
        await wait_for(lambda: len(starts_of(data)) < 1000, what="the newest day trimmed")
        assert len(starts_of(data)) > 700
        await server.database.budget.round()
        used = (await health(server))["storage"]["used_bytes"]
    kept = starts_of(data)
    assert 700 < len(kept) < 1000 and kept == starts[-len(kept):]
    assert used["events"] <= MiB < used["total"]  # the overhead is never a reason to remove more of it


def orphans(data: Path, now: float) -> str:
    """One event with its snapshot, and files a crash left: a snapshot without a row, two .tmp files. Returns its id."""
    fill(data, [now - 100])
    snapshots = data / "snapshots"
    snapshots.mkdir()
    event_id = f"{int((now - 100) * 1000)}-000000"
    (snapshots / f"{event_id}.jpg").write_bytes(b"k" * 10_000)  # its row exists: kept
    (snapshots / "1700000000000-abcdef.jpg").write_bytes(b"o" * 50_000)  # no row
    (snapshots / f"{event_id}.tmp").write_bytes(b"t" * 20_000)  # a write cut short
    (snapshots / "1700000000001-abcdef.tmp").write_bytes(b"t" * 5_000)
    return event_id


async def test_files_without_a_row_are_swept_at_start(tmp_path):
    """Snapshots without a row and .tmp files left by a crash are removed at start-up; the event's own snapshot stays."""
    data = tmp_path / "data"
    event_id = orphans(data, time.time())
    server = CamServer(make_config(storage={"dir": str(data)}), detector_factory=None)
    async with server:
        await wait_for(lambda: len(list((data / "snapshots").iterdir())) == 1, what="the sweep")
        assert sorted(p.name for p in (data / "snapshots").iterdir()) == [f"{event_id}.jpg"]
        assert (await health(server))["storage"]["used_bytes"]["events"] >= 10_000


async def test_files_without_a_row_count_toward_max_mb_until_swept(tmp_path):
    """Before the sweep the budget counts every file in snapshots/; after it, only the event's own."""
    now = time.time()
    data = tmp_path / "data"
    orphans(data, now)
    database = Database(data, max_mb=100)
    await database.open()
    store = EventStore(data, retain_days=10)
    await database.use(store.open, now)
    budget = database.budget
    budget.add(store)
    assert (await database.run(budget.measure)).files == {"events": 85_000}
    assert not await budget.round()
    assert (await database.run(budget.measure)).files == {"events": 10_000} and store.swept == 3
    await database.close()


async def test_a_budget_step_is_bounded_and_the_file_shrinks_step_by_step(tmp_path):
    """20,000 events (~20 MB) and max_mb = 1: each step removes at most STEP_ITEMS events and gives back at most
    STEP_PAGES pages, in well under 100 ms of thread time; a round stops after its steps with work left."""
    now = time.time()
    data = tmp_path / "data"
    fill(data, [now - 3 * DAY + 10 * i for i in range(20_000)])
    database = Database(data, max_mb=1)
    await database.open()  # converts the file to incremental vacuum (one VACUUM)
    store = EventStore(data, retain_days=10)
    await database.use(store.open, now)
    budget = database.budget
    budget.add(store)
    pages = lambda: database.connection().execute("PRAGMA page_count").fetchone()[0]  # noqa: E731
    count = lambda: database.connection().execute("SELECT count(*) FROM events").fetchone()[0]  # noqa: E731
    times = []
    for _ in range(20):
        before_pages, before_count = await database.run(pages), await database.run(count)
        start = time.process_time()
        assert await database.run(budget.step, now)
        times.append(time.process_time() - start)
        assert 0 < before_count - await database.run(count) <= STEP_ITEMS
        assert 0 <= before_pages - await database.run(pages) <= STEP_PAGES
    assert max(times) < 0.1, times
    assert await budget.round()  # STEPS_PER_ROUND steps, then the rest for later rounds
    await database.close()


async def test_corrupt_database_is_moved_aside_and_the_server_starts(tmp_path, caplog):
    """A file that is not SQLite (with a WAL beside it): moved to camserver.db.corrupt-<time> with its WAL, a loud
    log line naming both, a fresh database that stores events, and /healthz counting it."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "camserver.db").write_bytes(b"this is not a database, it is a shopping list\n" * 200)
    (data / "camserver.db-wal").write_bytes(b"nor is this a write-ahead log" * 10)
    caplog.set_level(logging.ERROR, "camserver.storage.database")
    config = make_config(storage={"dir": str(data)}, events={"max_disappeared_s": 0.5})
    server = CamServer(config, detector_factory=lambda: ScriptedDetector(walking))
    async with server:
        (aside,) = data.glob("camserver.db.corrupt-*[0-9]")
        assert aside.read_bytes().startswith(b"this is not a database")
        assert Path(f"{aside}-wal").read_bytes().startswith(b"nor is this")
        (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert str(data / "camserver.db") in line and str(aside) in line
        report = await health(server)
        assert report["status"] == "ok" and report["storage"]["corrupt_files_moved"] == 1
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        for seq in range(1, 31):
            await cam.send(tagged_jpeg(0, seq, 320, 240))
            await asyncio.sleep(0.05)
        await wait_for(lambda: server.events.events_total == 1 and server.events.idle, what="an event")
        await cam.close()
    assert len(starts_of(data)) == 1


@pytest.mark.parametrize("damage", ["pages overwritten", "a directory"])
async def test_damaged_or_unopenable_database_is_moved_aside(tmp_path, damage):
    """A database with garbage over its pages (quick_check fails) or a directory in its place: moved aside, a fresh one."""
    data = tmp_path / "data"
    if damage == "a directory":
        (data / "camserver.db").mkdir(parents=True)
    else:
        fill(data, [time.time() - 60 * i for i in range(2000)])
        with open(data / "camserver.db", "r+b") as f:
            f.seek(4096 * 20)
            f.write(bytes(range(256)) * 16 * 40)
    server = CamServer(make_config(storage={"dir": str(data)}), detector_factory=None)
    async with server:
        assert server.database.corrupt_files_moved == 1
        assert len(list(data.glob("camserver.db.corrupt-*[0-9]"))) == 1  # its -shm (and -wal) beside it
        assert (await health(server))["storage"]["corrupt_files_moved"] == 1
    assert starts_of(data) == []


async def test_database_deleted_while_running_is_recreated(tmp_path, monkeypatch, caplog):
    """camserver.db (WAL and SHM too) deleted under the running server: noticed, recreated with its tables, logged,
    and the next event is stored in the new file."""
    monkeypatch.setattr(housekeeping_module, "FILE_CHECK_EVERY_S", 0.2)
    data = tmp_path / "data"
    caplog.set_level(logging.ERROR, "camserver.storage.database")
    config = make_config(storage={"dir": str(data)}, events={"max_disappeared_s": 0.5})
    server = CamServer(config, detector_factory=lambda: ScriptedDetector(walking))
    async with server:
        for name in ("camserver.db-wal", "camserver.db-shm", "camserver.db"):  # the file last: a check may come between
            (data / name).unlink()
        await wait_for(lambda: server.database.recreated == 1, what="database recreated")
        assert any(str(data / "camserver.db") in r.getMessage() and "deleted" in r.getMessage() for r in caplog.records)
        db = sqlite3.connect(data / "camserver.db")
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        db.close()
        assert {"events", "camera_settings"} <= tables
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        for seq in range(1, 31):
            await cam.send(tagged_jpeg(0, seq, 320, 240))
            await asyncio.sleep(0.05)
        await wait_for(lambda: server.events.events_total == 1 and server.events.idle, what="an event")
        assert len(starts_of(data)) == 1
        assert (await health(server))["storage"]["recreated"] == 1
        await cam.close()


async def test_corruption_found_while_running_moves_the_file_aside(tmp_path):
    """A write that SQLite reports as corrupt makes the next check look at the file from disk; a bad one is moved aside."""
    data = tmp_path / "data"
    fill(data, [time.time() - 60 * i for i in range(2000)])
    database = Database(data)
    await database.open()
    await database.use(lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
    with open(data / "camserver.db", "r+b") as f:  # the same inode, garbage inside
        f.seek(4096 * 20)
        f.write(b"\xa5" * 4096 * 50)
    assert not await database.run(database.check_file)  # nothing suspected: the file is not read
    error = sqlite3.DatabaseError("database disk image is malformed")
    error.sqlite_errorcode = 11  # SQLITE_CORRUPT
    database.suspect(error)
    assert await database.run(database.check_file)
    assert database.corrupt_files_moved == 1 and len(list(data.glob("camserver.db.corrupt-*[0-9]"))) == 1
    assert await database.use(lambda conn: conn.execute("PRAGMA quick_check").fetchone()[0]) == "ok"
    await database.close()


def walking(cam: int, seq: int):
    """A person walks left to right over frames 1-20, then is gone."""
    if 1 <= seq <= 20:
        x = 10 + 12 * seq
        return [("person", 0.9, (x, 60.0, x + 40, 200.0))]
    return []


async def test_storage_lost_for_good_never_stops_frames_or_viewers(tmp_path, monkeypatch):
    """storage.dir replaced by a plain file while running (the database cannot even be recreated): events go on live,
    frames are processed, the MJPEG viewer keeps getting frames, /healthz stays ok and counts the errors."""
    import shutil

    from conftest import MjpegReader

    monkeypatch.setattr(housekeeping_module, "FILE_CHECK_EVERY_S", 0.2)
    monkeypatch.setattr(housekeeping_module, "ROUND_EVERY_S", 0.5)
    data = tmp_path / "data"
    config = make_config(storage={"dir": str(data)}, events={"max_disappeared_s": 0.5})
    server = CamServer(config, detector_factory=lambda: ScriptedDetector(walking))
    async with server, aiohttp.ClientSession() as http:
        shutil.rmtree(data)
        data.write_bytes(b"not a folder")
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        async with http.get(f"http://127.0.0.1:{server.http_port}/stream.mjpg?camera=door") as resp:
            viewer = MjpegReader(resp)
            for seq in range(1, 41):
                await cam.send(tagged_jpeg(0, seq, 320, 240))
                await asyncio.sleep(0.05)
            await wait_for(lambda: server.events.events_total == 1 and server.events.idle, what="a live event")
            await wait_for(lambda: server.database.budget.errors >= 2, what="failed checks counted")
            camera = server.hub.get("door")
            before = camera.frames_processed
            for seq in range(41, 61):  # every frame sent now reaches the viewer
                await cam.send(tagged_jpeg(0, seq, 320, 240))
                await asyncio.sleep(0.05)
                assert (await viewer.next()).jpeg.startswith(b"\xff\xd8")
            await wait_for(lambda: camera.frames_processed + camera.frames_dropped == 60, what="every frame handled")
            assert camera.frames_processed >= before + 10
        report = await health(server)
        assert report["status"] == "ok" and report["storage"]["write_errors"] >= 3
        assert server.supervisor.failed is None
        await cam.close()
    data.unlink()


async def test_firmware_images_and_exports_count_toward_max_mb(tmp_path):
    """A 1 MB firmware image under storage.dir/firmware is counted in /healthz storage (used_bytes.firmware and the
    total), as are the exports, so max_mb makes room for them among the removable kinds."""
    data = tmp_path / "data"
    (data / "firmware").mkdir(parents=True)
    (data / "firmware" / "camera-1.2.bin").write_bytes(b"\xe9" + bytes(MiB - 1))
    server = CamServer(make_config(storage={"dir": str(data), "max_mb": 100}), detector_factory=None)
    async with server:
        await wait_for(lambda: server.database.budget.last is not None
                       and server.database.budget.last.files.get("firmware"), what="a budget round")
        used = (await health(server))["storage"]["used_bytes"]
    assert used["firmware"] == MiB and used["exports"] == 0
    assert used["total"] >= MiB + used["database_overhead"]
