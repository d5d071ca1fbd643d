"""Event history that survives: the events table of storage.dir's database, snapshots as JPEG files beside it.

Every method is synchronous and runs on the database's thread, never on the event loop. The store
is the "events" kind of the storage budget (storage/budget.py): it removes its oldest ended events
past `retain_days`, and as many as the budget asks for to stay under `max_mb`.

A snapshot file is written before its row and removed after it, so a crash can leave a file without
a row, never a row pointing at a file that is gone; those files (and half-written `.tmp` ones) are
counted until `sweep` removes them, at start-up.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

from .. import jsonsafe
from ..storage import StorageError

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    camera TEXT NOT NULL,
    label TEXT NOT NULL,
    start_time REAL NOT NULL,
    end_time REAL,
    zones TEXT NOT NULL,          -- ",porch,drive," : every zone entered, for the zone filter
    has_snapshot INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    data TEXT NOT NULL,           -- the whole record as JSON
    kept_at REAL                  -- keep-time (storage/keepclock.py) of its start: retention by age
);
CREATE INDEX IF NOT EXISTS events_start ON events (start_time);
"""
# Retention's order is the rowid: the order events were stored in (an update keeps it, a new row gets
# one above every row there is; VACUUM renumbers in the same order), never a clock label. A table of
# an earlier version gets kept_at by ALTER TABLE alone (no row rewritten); its rows' NULL reads as
# their start label (a new database's keep-time starts at the wall-clock time).
KEPT_AT = "COALESCE(kept_at, start_time)"

DAY_S = 86400.0
# bytes a row takes besides its text columns: numbers, record header, cell pointer, two index entries
ROW_EXTRA = 80


class EventStore:
    """The events table and the snapshot files."""

    name = "events"  # as a kind of the storage budget
    tables = ("events",)

    def __init__(self, directory: Path, retain_days: float, keep_clock: Callable[[], float] | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.keep_clock = keep_clock  # None: keep-time is the wall clock (a store of its own, in tests)
        self.wall = wall
        self.snapshots = directory / "snapshots"
        self.retain_s = retain_days * DAY_S
        self.db: sqlite3.Connection | None = None
        self.swept = 0  # files without a row removed, since start
        self._swept_now = 0  # ... by the sweep under way
        self._file_bytes = 0  # every file in snapshots/, kept up to date (a scan only when attached)
        self._unswept: list[str] = []  # names in snapshots/ not yet checked for a row

    def open(self, db: sqlite3.Connection, now: float) -> list[dict[str, Any]]:
        """Attach to `db` and close the events a crash left open. Returns their records.

        Raises:
            StorageError: the snapshot folder cannot be created.
        """
        self.attach(db)
        assert self.db is not None
        left_open = self.db.execute("SELECT id, data, updated_at FROM events WHERE end_time IS NULL").fetchall()
        closed = []
        for _id, data, updated_at in left_open:
            record = json.loads(data)
            # its last change's label; never before its start (a row from before labels were measured so)
            record["end_time"], record["end_reason"] = max(updated_at, record["start_time"]), "server restart"
            self.save(record, None, updated_at)
            closed.append(record)
        return closed

    def attach(self, db: sqlite3.Connection) -> None:
        """Use `db` (a new file too): the table, the snapshot folder, its size; every file is to be swept.

        Raises:
            StorageError: the snapshot folder cannot be created or read.
        """
        try:
            self.snapshots.mkdir(parents=True, exist_ok=True)
            names, total = [], 0
            with os.scandir(self.snapshots) as entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False):
                        names.append(entry.name)
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError as exc:
            raise StorageError(f"{self.snapshots}: {exc}") from None
        self.db = db
        self.db.executescript(SCHEMA)
        if "kept_at" not in {row[1] for row in db.execute("PRAGMA table_info(events)")}:
            db.execute("ALTER TABLE events ADD COLUMN kept_at REAL")
        self._file_bytes, self._unswept, self._swept_now = total, names, 0

    def snapshot_path(self, event_id: str) -> Path:
        """Where an event's best frame is kept."""
        return self.snapshots / f"{event_id}.jpg"

    def read_snapshot(self, event_id: str) -> bytes | None:
        """The snapshot JPEG of an event, or None when there is none."""
        try:
            return self.snapshot_path(event_id).read_bytes()
        except FileNotFoundError:
            return None

    def save(self, record: dict[str, Any], snapshot: bytes | None, now: float) -> None:
        """Insert or replace an event; write its snapshot first when there is a new one."""
        assert self.db is not None
        if snapshot is not None:
            path = self.snapshot_path(record["id"])
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(snapshot)
            replaced = _size(path)
            os.replace(tmp, path)  # a reader never sees half a file
            self._file_bytes += len(snapshot) - replaced
        # its start in keep-time: now, less how long ago (by the wall clock) it started, for an event stored late
        kept_at = (record["start_time"] if self.keep_clock is None
                   else self.keep_clock() - max(0.0, self.wall() - record["start_time"]))
        self.db.execute(
            "INSERT INTO events (id, camera, label, start_time, end_time, zones, has_snapshot, updated_at, data,"
            " kept_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET camera = excluded.camera, label = excluded.label,"
            " start_time = excluded.start_time, end_time = excluded.end_time, zones = excluded.zones,"
            " has_snapshot = excluded.has_snapshot, updated_at = excluded.updated_at, data = excluded.data",
            (record["id"], record["camera"], record["label"], record["start_time"], record["end_time"],
             "," + ",".join(record["entered_zones"]) + ",", int(record["has_snapshot"]), now,
             jsonsafe.dumps(record, "an event record"), kept_at),
        )
    def get(self, event_id: str) -> dict[str, Any] | None:
        """One event, or None."""
        assert self.db is not None
        row = self.db.execute("SELECT data FROM events WHERE id = ?", (event_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def query(self, filters: dict[str, Any], limit: int, before_key: tuple[float, str] | None) -> list[dict[str, Any]]:
        """Events newest first, matching `filters` (camera, label, zone, after, before, has_snapshot).

        `before_key` is the (start_time, id) of the last event of the previous page.
        """
        assert self.db is not None
        where, args = [], []
        for column in ("camera", "label"):
            if filters.get(column):
                where.append(f"{column} = ?")
                args.append(filters[column])
        if filters.get("zone"):
            where.append("zones LIKE ? ESCAPE '\\'")  # a zone name is matched as it is, % and _ too
            args.append("%," + re.sub(r"([\\%_])", r"\\\1", filters["zone"]) + ",%")
        if filters.get("after") is not None:
            where.append("start_time >= ?")
            args.append(filters["after"])
        if filters.get("before") is not None:
            where.append("start_time < ?")
            args.append(filters["before"])
        if filters.get("has_snapshot") is not None:
            where.append("has_snapshot = ?")
            args.append(int(filters["has_snapshot"]))
        if before_key is not None:
            where.append("(start_time < ? OR (start_time = ? AND id < ?))")
            args += [before_key[0], before_key[0], before_key[1]]
        sql = "SELECT data FROM events" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY start_time DESC, id DESC LIMIT ?"
        return [json.loads(r[0]) for r in self.db.execute(sql, [*args, limit])]

    def facets(self) -> dict[str, list[str]]:
        """The distinct cameras, labels and zones in the history: the choices of the page's filters."""
        assert self.db is not None
        cameras = [r[0] for r in self.db.execute("SELECT DISTINCT camera FROM events ORDER BY camera")]
        labels = [r[0] for r in self.db.execute("SELECT DISTINCT label FROM events ORDER BY label")]
        rows = self.db.execute("SELECT DISTINCT zones FROM events")
        zones = sorted({zone for (joined,) in rows for zone in joined.split(",") if zone})
        return {"cameras": cameras, "labels": labels, "zones": zones}

    def delete(self, event_id: str) -> bool:
        """Remove an event and its snapshot; False if there was none."""
        return self._delete([event_id]) > 0

    def _delete(self, ids: list[str], files_first: bool = False) -> int:
        """Remove events, the rows first (a crash in between leaves files the next sweep removes). Returns rows removed.

        `files_first` (the free-space floor): the snapshots first, so that a disk too full for the rows'
        deletion still gets their bytes back and the next round can delete the rows."""
        assert self.db is not None
        if not ids:
            return 0
        if files_first:
            for event_id in ids:
                self._unlink(self.snapshot_path(event_id))
        removed = self.db.execute(f"DELETE FROM events WHERE id IN ({','.join('?' * len(ids))})", ids).rowcount
        if not files_first:
            for event_id in ids:
                self._unlink(self.snapshot_path(event_id))
        return removed

    def _unlink(self, path: Path) -> None:
        size = _size(path)
        path.unlink(missing_ok=True)
        self._file_bytes -= size

    # --- the "events" kind of the storage budget -------------------------------------------

    def file_bytes(self) -> int:
        """Bytes in snapshots/: the snapshots, and files without a row until they are swept."""
        return max(0, self._file_bytes)

    def sweep(self, limit: int) -> bool:
        """Remove up to `limit` snapshot and .tmp files that have no row; True while more remain to look at."""
        assert self.db is not None
        batch, self._unswept = self._unswept[:limit], self._unswept[limit:]
        stems = [name[:-4] for name in batch if name.endswith(".jpg")]
        known = {row[0] for row in self.db.execute(
            f"SELECT id FROM events WHERE id IN ({','.join('?' * len(stems))})", stems)} if stems else set()
        for name in batch:
            stem, ext = name[:-4], name[-4:]
            if ext == ".tmp" or (ext == ".jpg" and stem not in known):
                self._unlink(self.snapshots / name)
                self.swept += 1
                self._swept_now += 1
        if not self._unswept and self._swept_now:
            log.info("removed %d snapshot file(s) without an event (left by a crash, a full disk or a lost database)",
                     self._swept_now)
            self._swept_now = 0
        return bool(self._unswept)

    def expire(self, now: float, limit: int) -> int:
        """Remove up to `limit` ended events that started more than retain_days ago (`now`, `kept_at`: keep-time)."""
        assert self.db is not None
        rows = self.db.execute(f"SELECT id FROM events WHERE {KEPT_AT} < ? AND end_time IS NOT NULL"
                               " ORDER BY rowid LIMIT ?", (now - self.retain_s, limit)).fetchall()
        return self._delete([event_id for (event_id,) in rows])

    def trim(self, need: int, keep_newest_day: bool, limit: int) -> int:
        """Remove the oldest ended events, about `need` bytes of rows and snapshots, at most `limit`; returns how many.

        With `keep_newest_day`, events that started less than a day before the newest one stay. Both the
        order (rowid, the order they were stored in) and the day (keep-time) are immune to clock steps.
        """
        assert self.db is not None
        before = float("inf")
        if keep_newest_day:
            newest = self.db.execute(f"SELECT {KEPT_AT} FROM events ORDER BY rowid DESC LIMIT 1").fetchone()
            if newest is None:
                return 0
            before = newest[0] - DAY_S
        rows = self.db.execute(
            "SELECT id, length(data) + length(zones) + 2 * length(id) + length(camera) + length(label)"
            f" FROM events WHERE end_time IS NOT NULL AND {KEPT_AT} < ? ORDER BY rowid LIMIT ?",
            (before, limit)).fetchall()
        chosen, freed = [], 0
        for event_id, row_bytes in rows:
            chosen.append(event_id)
            freed += row_bytes + ROW_EXTRA + _size(self.snapshot_path(event_id))
            if freed >= need:
                break
        return self._delete(chosen, files_first=not keep_newest_day)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
