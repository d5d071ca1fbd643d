"""Event history that survives: SQLite (WAL) under storage.dir, snapshots as JPEG files beside it.

Every method is synchronous and runs on the events thread, never on the event loop. Retention
removes the oldest events first, by age (`retain_days`) and by size (`max_mb`), so the disk
never fills because of camserver.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from ..storage import StorageError

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
    data TEXT NOT NULL            -- the whole record as JSON
);
CREATE INDEX IF NOT EXISTS events_start ON events (start_time);
"""


class EventStore:
    """The events database and the snapshot files."""

    def __init__(self, directory: Path, retain_days: float, max_mb: float) -> None:
        self.directory = directory
        self.snapshots = directory / "snapshots"
        self.retain_s = retain_days * 86400
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.db: sqlite3.Connection | None = None

    def open(self, db: sqlite3.Connection, now: float) -> int:
        """Create the snapshot folder and the table in `db`; close the events a crash left open. Returns how many.

        Raises:
            StorageError: the snapshot folder cannot be created.
        """
        try:
            self.snapshots.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"{self.snapshots}: {exc}") from None
        self.db = db
        self.db.executescript(SCHEMA)
        left_open = self.db.execute("SELECT id, data, updated_at FROM events WHERE end_time IS NULL").fetchall()
        for event_id, data, updated_at in left_open:
            record = json.loads(data)
            record["end_time"], record["end_reason"] = updated_at, "server restart"
            self.save(record, None, updated_at)
        return len(left_open)

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
            os.replace(tmp, path)  # a reader never sees half a file
        self.db.execute(
            "INSERT OR REPLACE INTO events (id, camera, label, start_time, end_time, zones, has_snapshot, updated_at, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record["id"], record["camera"], record["label"], record["start_time"], record["end_time"],
             "," + ",".join(record["entered_zones"]) + ",", int(record["has_snapshot"]), now, json.dumps(record)),
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
        assert self.db is not None
        deleted = self.db.execute("DELETE FROM events WHERE id = ?", (event_id,)).rowcount > 0
        self.snapshot_path(event_id).unlink(missing_ok=True)
        return deleted

    def used_bytes(self) -> int:
        """The database, its WAL and the snapshots, in bytes."""
        total = 0
        for folder in (self.directory, self.snapshots):
            with os.scandir(folder) as entries:
                total += sum(e.stat().st_size for e in entries if e.is_file())
        return total

    def enforce_retention(self, now: float | None = None) -> int:
        """Delete the oldest events past retain_days, then until under max_mb. Returns how many went."""
        assert self.db is not None
        now = time.time() if now is None else now
        removed = 0
        old = self.db.execute("SELECT id FROM events WHERE start_time < ? AND end_time IS NOT NULL",
                              (now - self.retain_s,)).fetchall()
        for (event_id,) in old:
            removed += self.delete(event_id)
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # count the database, not a WAL about to be folded in
        used = self.used_bytes()
        while used > self.max_bytes:
            oldest = self.db.execute("SELECT id FROM events WHERE end_time IS NOT NULL ORDER BY start_time, id LIMIT 50").fetchall()
            if not oldest:
                break
            for (event_id,) in oldest:
                path = self.snapshot_path(event_id)
                size = path.stat().st_size if path.exists() else 0
                removed += self.delete(event_id)
                used -= size + 512  # a row is a few hundred bytes; the file size is exact
                if used <= self.max_bytes:
                    break
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            used = self.used_bytes()
        return removed
