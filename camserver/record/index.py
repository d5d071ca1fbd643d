"""The recordings index: which files exist, what they cover, and which event's clip is where.

It lives in the events database (SQLite, WAL): `RecordingIndex` creates its tables on the
connection it is given and must be used only on the thread that owns that connection (the
events thread). A file and its row are written in an order a crash cannot turn into a listed
file that does not play: the row first, marked in progress, then the file; a finished file
replaces the growing one in one rename, then the row says so. Deleting goes the other way:
file first, then row. Start-up (`recovery.recover`) repairs or removes what a crash left.

Times are wall-clock labels (start_time, end_time, clip_start, clip_end: what the API shows) and,
beside them, the server's steady time (clock.Timeline; steady_start, steady_end): an event's clip
is found and cut by its steady span, so footage a clock step labelled an hour back (or a day
ahead) is neither taken into another event's clip nor missing from its own.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

from ..clock import STEP_S
from ..storage import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS recordings (
    path TEXT PRIMARY KEY,          -- relative to storage.dir: recordings/<camera>/<YYYY-MM-DD>/<file>.mp4
    camera TEXT NOT NULL,
    kind TEXT NOT NULL,             -- 'span': one or more overlapping events; 'segment': continuous/motion
    start_time REAL NOT NULL,       -- the first frame's arrival (the file's time 0)
    end_time REAL,                  -- when the last frame stops showing; NULL while recording
    frames INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    width INTEGER NOT NULL DEFAULT 0,
    height INTEGER NOT NULL DEFAULT 0,
    in_progress INTEGER NOT NULL,   -- 1: still growing (fragmented MP4); after a crash: to repair
    seq INTEGER,                    -- the order recordings were made in: retention's order, never a clock label
    kept_at REAL                    -- keep-time (storage/keepclock.py) when it was made, then when finished
);
CREATE INDEX IF NOT EXISTS recordings_camera_start ON recordings (camera, start_time);
CREATE TABLE IF NOT EXISTS event_clips (
    event_id TEXT PRIMARY KEY,
    camera TEXT NOT NULL,
    recording TEXT,                 -- the span file holding the clip; NULL: cut from segments on request
    clip_start REAL NOT NULL,
    clip_end REAL                   -- NULL while the event is open
);
CREATE INDEX IF NOT EXISTS event_clips_recording ON event_clips (recording);
"""
# added to both tables (to older files too, at create): the steady span; NULL in a row from before them
STEADY_COLUMNS = ("steady_start", "steady_end")

# columns a database of an earlier version lacks: added, and filled in the order the rows were made
# (rowid: the rows were inserted as the recordings began) and with their labels as keep-time
MIGRATIONS = (("seq", "INTEGER", "rowid"), ("kept_at", "REAL", "COALESCE(end_time, start_time)"))
COLUMNS = ("path, camera, kind, start_time, end_time, frames, bytes, width, height, in_progress, steady_start, steady_end,"
           " seq")
KINDS = ("span", "segment")


def _row(row: tuple[Any, ...]) -> dict[str, Any]:
    record = dict(zip([c.strip() for c in COLUMNS.split(",")], row))
    record["in_progress"] = bool(record["in_progress"])
    return record


class RecordingIndex:
    """Recordings and event clips in SQLite; every method runs on the connection's own thread."""

    def __init__(self, db: sqlite3.Connection | Database, root: Path,
                 keep_clock: Callable[[], float] | None = None, grew: Callable[[], None] | None = None) -> None:
        self._db = db  # the server's Database (its connection opens at start-up), or a connection
        self.root = root
        if keep_clock is None:
            keep_clock = db.budget.keep_clock.now if isinstance(db, Database) else time.time
        self.keep_clock = keep_clock  # how long a recording has been kept (retention by age)
        self.grew = grew or (lambda: None)  # a recording finished: the storage budget looks soon

    @property
    def db(self) -> sqlite3.Connection:
        """The connection (only on its own thread)."""
        return self._db.connection() if isinstance(self._db, Database) else self._db

    def create(self) -> None:
        """Create the tables (idempotent); a table of an earlier version gets the columns it lacks (the steady
        columns in both tables, seq and kept_at in recordings)."""
        self.db.executescript(SCHEMA)
        have = {row[1] for row in self.db.execute("PRAGMA table_info(recordings)")}
        for column, sql_type, fill in MIGRATIONS:
            if column not in have:
                self.db.execute(f"ALTER TABLE recordings ADD COLUMN {column} {sql_type}")
                self.db.execute(f"UPDATE recordings SET {column} = {fill}")
        for table in ("recordings", "event_clips"):
            have = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            for column in STEADY_COLUMNS:
                if column not in have:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} REAL")
        self.db.execute("CREATE INDEX IF NOT EXISTS recordings_seq ON recordings (seq)")
        self.db.execute("CREATE INDEX IF NOT EXISTS recordings_camera_steady ON recordings (camera, steady_start)")

    def file(self, path: str) -> Path:
        """The absolute file of a recording's relative path."""
        return self.root / path

    # --- recordings --------------------------------------------------------------------------

    def add(self, path: str, camera: str, kind: str, start: float, steady: float | None = None) -> None:
        """A recording about to be written: its row, in progress, before its file exists (`steady`: default `start`)."""
        assert kind in KINDS
        self.db.execute("INSERT OR REPLACE INTO recordings (path, camera, kind, start_time, in_progress, seq, kept_at,"
                        " steady_start) VALUES (?, ?, ?, ?, 1, (SELECT COALESCE(max(seq), 0) + 1 FROM recordings), ?, ?)",
                        (path, camera, kind, start, self.keep_clock(), start if steady is None else steady))

    def finish(self, path: str, start: float, end: float, frames: int, size: int, width: int, height: int,
               steady: float | None = None) -> None:
        """The recording's file is final (a regular MP4, index first); `steady`: its start's steady time
        (default: the row's), its steady end that plus end - start."""
        self.db.execute("UPDATE recordings SET start_time = ?, end_time = ?, frames = ?, bytes = ?, width = ?,"
                        " height = ?, in_progress = 0, kept_at = ?, steady_start = COALESCE(?, steady_start, ?),"
                        " steady_end = COALESCE(?, steady_start, ?) + ? WHERE path = ?",
                        (start, end, frames, size, width, height, self.keep_clock(), steady, start, steady, start,
                         end - start, path))
        self.grew()

    def get(self, path: str) -> dict[str, Any] | None:
        """One recording, or None."""
        row = self.db.execute(f"SELECT {COLUMNS} FROM recordings WHERE path = ?", (path,)).fetchone()
        return _row(row) if row else None

    def in_progress(self) -> list[dict[str, Any]]:
        """Recordings not finished (after a crash: the ones to repair)."""
        return [_row(r) for r in self.db.execute(f"SELECT {COLUMNS} FROM recordings WHERE in_progress = 1")]

    def all_paths(self) -> set[str]:
        """Every recording's relative path."""
        return {r[0] for r in self.db.execute("SELECT path FROM recordings")}

    def recordings(self, camera: str, after: float | None = None, before: float | None = None,
                   kind: str | None = None, limit: int = 10000, steady: bool = False,
                   since_steady: float | None = None) -> list[dict[str, Any]]:
        """A camera's recordings that overlap [after, before], in the order they were made (an open one's end is None).

        `steady`: after and before are steady times, else labels (after a clock step back, one hour of labels
        can hold two recordings: both are listed, see labels.py). `since_steady`: only those that end after it.
        """
        start, end = ("COALESCE(steady_start, start_time)", "COALESCE(steady_end, end_time)") if steady \
            else ("start_time", "end_time")
        sql = f"SELECT {COLUMNS} FROM recordings WHERE camera = ?"
        args: list[Any] = [camera]
        for bound, value in ((end, after), ("COALESCE(steady_end, end_time)", since_steady)):
            if value is not None:
                sql += f" AND (end_time IS NULL OR {bound} > ?)"
                args.append(value)
        if before is not None:
            sql += f" AND {start} < ?"
            args.append(before)
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        sql += " ORDER BY COALESCE(steady_start, start_time), seq LIMIT ?"  # labels may go back: never their order
        return [_row(r) for r in self.db.execute(sql, [*args, limit])]

    def latest_steady(self) -> float:
        """The latest steady time in the index (-inf when none): the next run's steady time starts after it."""
        row = self.db.execute("SELECT max(t) FROM (SELECT max(COALESCE(steady_end, steady_start)) AS t FROM recordings"
                              " UNION ALL SELECT max(COALESCE(steady_end, steady_start)) FROM event_clips)").fetchone()
        return -float("inf") if row[0] is None else float(row[0])

    def remove(self, path: str) -> int:
        """Delete a recording: its file, then its row (events keep their clip rows, without a file). Returns bytes freed."""
        size = self.unlink(path)
        self.forget([path])
        return size

    def unlink(self, path: str) -> int:
        """Delete a recording's file (its row stays until forget); returns the bytes freed, 0 if it was gone."""
        target = self.file(path)
        try:
            size = target.stat().st_size
            target.unlink()
        except FileNotFoundError:
            return 0
        return size

    def forget(self, paths: list[str]) -> None:
        """Delete recordings' rows, in one transaction (events keep their clip rows, without a recording)."""
        if not paths:
            return
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany("DELETE FROM recordings WHERE path = ?", [(p,) for p in paths])
            db.executemany("UPDATE event_clips SET recording = NULL WHERE recording = ?", [(p,) for p in paths])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    # --- event clips ---------------------------------------------------------------------------

    def set_clip(self, event_id: str, camera: str, recording: str | None, clip_start: float,
                 clip_end: float | None = None, steady: float | None = None) -> None:
        """Where an event's clip is: a span file (events mode), or None for segments (continuous/motion);
        `steady`: the steady time of clip_start (default clip_start)."""
        self.db.execute("INSERT OR REPLACE INTO event_clips (event_id, camera, recording, clip_start, clip_end,"
                        " steady_start) VALUES (?, ?, ?, ?, ?, ?)",
                        (event_id, camera, recording, clip_start, clip_end, clip_start if steady is None else steady))

    def end_clip(self, event_id: str, clip_end: float, steady: float | None = None) -> None:
        """The event ended: its clip ends at `clip_end` (the event's end plus post-capture), steady time `steady`."""
        self.db.execute("UPDATE event_clips SET clip_end = ?, steady_end = ? WHERE event_id = ?",
                        (clip_end, clip_end if steady is None else steady, event_id))

    def clip(self, event_id: str) -> dict[str, Any] | None:
        """An event's clip: has_clip, clip_start, clip_end, path (relative; None: cut from segments),
        in_progress, offset_s (where the clip starts in its file), steady_start and steady_end (its
        steady span, end None while open); None if the event has no clip row."""
        row = self.db.execute("SELECT camera, recording, clip_start, clip_end, COALESCE(steady_start, clip_start),"
                              " COALESCE(steady_end, clip_end) FROM event_clips WHERE event_id = ?", (event_id,)).fetchone()
        if row is None:
            return None
        camera, recording, clip_start, clip_end, t0, t1 = row
        info: dict[str, Any] = {"event_id": event_id, "camera": camera, "clip_start": clip_start, "clip_end": clip_end,
                                "path": recording, "in_progress": False, "offset_s": 0.0, "has_clip": False,
                                "steady_start": t0, "steady_end": t1}
        if recording is not None:
            rec = self.get(recording)
            if rec is not None:
                rec_t0 = rec["start_time"] if rec["steady_start"] is None else rec["steady_start"]
                info.update(has_clip=True, in_progress=rec["in_progress"], offset_s=max(0.0, t0 - rec_t0))
                rec_t1 = rec["end_time"] if rec["steady_end"] is None else rec["steady_end"]
                if t1 is not None and rec_t1 is not None and t1 > rec_t1:  # the span ended before the post-capture
                    info["clip_end"] -= t1 - rec_t1
        else:
            info["has_clip"] = bool(self.recordings(camera, t0, t1, kind="segment", limit=1, steady=True))
        return info

    def clip_fields(self, event_ids: list[str]) -> dict[str, dict[str, Any]]:
        """has_clip, clip_start, clip_end per event id (for the event JSON); events without a clip are left out."""
        out = {}
        for event_id in event_ids:
            info = self.clip(event_id)
            if info is not None:
                out[event_id] = {k: info[k] for k in ("has_clip", "clip_start", "clip_end")}
        return out

    def delete_clip(self, event_id: str) -> int:
        """The event was deleted: forget its clip, and delete its span file when no other event uses it. Returns bytes freed."""
        row = self.db.execute("SELECT recording FROM event_clips WHERE event_id = ?", (event_id,)).fetchone()
        self.db.execute("DELETE FROM event_clips WHERE event_id = ?", (event_id,))
        if row is None or row[0] is None:
            return 0
        return self._drop_span_if_unused(row[0])

    def _drop_span_if_unused(self, path: str) -> int:
        used = self.db.execute("SELECT 1 FROM event_clips WHERE recording = ? LIMIT 1", (path,)).fetchone()
        rec = self.get(path)
        if used or rec is None or rec["kind"] != "span" or rec["in_progress"]:
            return 0
        return self.remove(path)

    # --- retention -----------------------------------------------------------------------------

    def used_bytes(self) -> int:
        """Bytes of every recording: finished ones from the index, growing ones from their files."""
        total = self.db.execute("SELECT COALESCE(SUM(bytes), 0) FROM recordings WHERE in_progress = 0").fetchone()[0]
        for (path,) in self.db.execute("SELECT path FROM recordings WHERE in_progress = 1").fetchall():
            try:
                total += self.file(path).stat().st_size
            except OSError:
                pass
        return int(total)

    def written_since(self, after: float) -> tuple[int, float | None]:
        """Bytes of the recordings finished at or after keep-time `after` (a wall-clock step moves neither), and
        the keep-time the first of them finished at."""
        total, first = self.db.execute("SELECT COALESCE(SUM(bytes), 0), MIN(kept_at) FROM recordings"
                                       " WHERE in_progress = 0 AND kept_at >= ?", (after,)).fetchone()
        return int(total), first

    def oldest(self, limit: int = 50, kind: str | None = None) -> list[dict[str, Any]]:
        """Finished recordings, the first made first (a span still used by an event is included: see `reclaim`)."""
        sql = f"SELECT {COLUMNS} FROM recordings WHERE in_progress = 0"
        args: list[Any] = []
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        return [_row(r) for r in self.db.execute(sql + " ORDER BY seq LIMIT ?", [*args, limit])]

    def expire(self, now: float | None = None, retain_days: float = 3.0) -> tuple[int, int]:
        """Delete segments kept longer than `retain_days`, and spans no event uses any more (see prune_clips).

        `now`: keep-time (the index's keep_clock by default): a segment's age is `now - kept_at`. Returns (files, bytes).
        """
        now = self.keep_clock() if now is None else now
        self.prune_clips()
        files = freed = 0
        old = self.db.execute("SELECT path FROM recordings WHERE kind = 'segment' AND in_progress = 0 AND kept_at < ?"
                              " ORDER BY seq", (now - retain_days * 86400,)).fetchall()
        for (path,) in old:
            freed += self.remove(path)
            files += 1
        unused = self.db.execute("SELECT path FROM recordings WHERE kind = 'span' AND in_progress = 0 AND path NOT IN"
                                 " (SELECT recording FROM event_clips WHERE recording IS NOT NULL)").fetchall()
        for (path,) in unused:
            freed += self.remove(path)
            files += 1
        return files, freed

    def prune_clips(self, grace_s: float = 3600.0) -> int:
        """Forget the clips of events no longer in the `events` table (same database) that began `grace_s` of steady
        time before the newest thing recorded, so their spans can expire even if a deletion missed `delete_clip`.

        Steady time, not labels: a step forward would make a clip just begun (its event not yet stored) look an hour
        old, a step back would keep old ones an hour longer. Returns how many went."""
        if not self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone():
            return 0
        return self.db.execute("DELETE FROM event_clips WHERE COALESCE(steady_start, clip_start) < ? AND event_id NOT IN"
                               " (SELECT id FROM events)", (self.latest_steady() - grace_s,)).rowcount

    def reclaim(self, target_bytes: int) -> int:
        """Delete the oldest segments until `target_bytes` are freed (event spans go with their events). Returns bytes freed."""
        freed = 0
        while freed < target_bytes:
            batch = self.oldest(50, kind="segment")
            if not batch:
                break
            for rec in batch:
                freed += self.remove(rec["path"])
                if freed >= target_bytes:
                    break
        return freed


def recording_path(camera: str, kind: str, start: float, steady: float | None = None) -> str:
    """recordings/<camera>/<YYYY-MM-DD>/<HHMMSS>-<kind>-<epoch ms>.mp4 (local date and time; the epoch makes it unique).

    `steady`: the start's steady time; where it is off the label by more than a step (the clock stepped since
    start-up), its ms are added (-<steady ms>): after a step back, a label can repeat one made before it.
    """
    local = time.localtime(start)
    suffix = f"-{round(steady * 1000)}" if steady is not None and abs(steady - start) > STEP_S else ""
    return (f"recordings/{camera}/{time.strftime('%Y-%m-%d', local)}/"
            f"{time.strftime('%H%M%S', local)}-{kind}-{round(start * 1000)}{suffix}.mp4")


def parse_recording_path(path: str) -> tuple[str, str, float] | None:
    """(camera, kind, start) from a path `recording_path` made, or None."""
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != "recordings" or not parts[3].endswith(".mp4"):
        return None
    fields = parts[3][:-4].split("-")
    if len(fields) not in (3, 4) or fields[1] not in KINDS or not all(f.isdigit() for f in fields[2:]):
        return None
    return parts[1], fields[1], int(fields[2]) / 1000


def walk_files(root: Path) -> list[str]:
    """Every file under <root>/recordings, as relative paths with '/' (exports excluded)."""
    base = root / "recordings"
    out: list[str] = []
    if not base.is_dir():
        return out
    for folder, dirs, files in os.walk(base):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            out.append(Path(folder, name).relative_to(root).as_posix())
    return out

