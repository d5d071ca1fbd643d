"""The recordings' kind of the storage budget (storage/budget.py): what it counts, what expires, what goes first."""

from __future__ import annotations

import sqlite3
from typing import Any

from .index import RecordingIndex


class RecordingsKind:
    """Recordings under the storage budget (storage.max_mb): they go before events, oldest segments first.

    An event's clip (a span) goes with its event: when the budget or retention deletes events, their
    spans are no longer used and expire. Every method runs on the database's thread.
    """

    name = "recordings"
    tables = ("recordings", "event_clips")

    def __init__(self, index: RecordingIndex, retain_days: float) -> None:
        self.index = index
        self.retain_days = retain_days

    def file_bytes(self) -> int:
        """Bytes of every recording (finished ones from the index, growing ones from their files)."""
        try:
            return self.index.used_bytes()
        except sqlite3.OperationalError:  # measured at open, before the recorder made its tables
            return 0

    def sweep(self, limit: int) -> bool:
        """Files without a row are handled at start-up by the recovery sweep (it repairs or removes them)."""
        return False

    def expire(self, now: float, limit: int) -> int:
        """Segments kept past record.retain_days (`now`: keep-time), and spans no event uses; returns how many files went."""
        try:
            files, _ = self.index.expire(now, self.retain_days)
        except sqlite3.OperationalError:  # a round at open, before the recorder made its tables
            return 0
        return files

    def trim(self, need: int, keep_newest_day: bool, limit: int) -> int:
        """The first-made finished segments, about `need` bytes, at most `limit`; returns how many went.

        Without `keep_newest_day` (the free-space floor, or a newest day over max_mb by itself), event clips
        (spans) go too once no segment is left. The order is the order they were made in (seq) and the
        newest day is measured in keep-time, so a clock step never makes the newest footage look oldest.
        """
        sql = "SELECT path, bytes FROM recordings WHERE in_progress = 0 AND kind = ?"
        args: list[Any] = []
        if keep_newest_day:
            newest = self.index.db.execute("SELECT max(kept_at) FROM recordings WHERE kind = 'segment'").fetchone()[0]
            if newest is None:
                return 0
            sql += " AND kept_at < ?"
            args.append(newest - 86400)
        rows = self.index.db.execute(sql + " ORDER BY seq LIMIT ?", ["segment", *args, limit]).fetchall()
        if not rows and not keep_newest_day:
            rows = self.index.db.execute(sql + " ORDER BY seq LIMIT ?", ["span", *args, limit]).fetchall()
        # Files first, then their rows in one transaction: on a full disk the rows' deletion may find no room
        # (others took the bytes just freed); the files are gone all the same, and the next round, counting a
        # file already gone as nothing freed, goes on to the next ones rather than retrying that row forever.
        gone: list[str] = []
        freed = 0
        for path, _recorded_bytes in rows:  # a file already gone frees nothing
            if freed >= need:
                break
            freed += self.index.unlink(path)
            gone.append(path)
        self.index.forget(gone)
        return len(gone)
