"""Keep-time: the clock that retention by age reads, so that a wall-clock step neither shortens nor lengthens it.

Laptops step their clocks after a suspend; a Raspberry Pi without a real-time clock boots with a
stale time and jumps when NTP syncs. An age measured on labels (`now - end_time`) moves by the
whole step: a step forward of a day expires a day of footage at once, a step back keeps it a day
longer. Keep-time instead is accumulated: while the server runs it advances with the monotonic
clock (which no step moves); it is saved in the database (table storage_clock) every budget round
and at close, and at the next start it goes on from the saved value plus the downtime. No
monotonic clock spans a reboot, so the downtime is the only part read from the wall clock
(now minus the wall time of the last save); a negative one (the clock is behind what it was) counts
as 0. Each item stores the keep-time it was kept at (`kept_at`); its age is `now() - kept_at`.

A new database starts keep-time at the wall-clock time, so rows of an earlier version, migrated
with their wall-clock labels as `kept_at`, keep the age they had.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Callable

SCHEMA = ("CREATE TABLE IF NOT EXISTS storage_clock (id INTEGER PRIMARY KEY CHECK (id = 1),"
          " kept_s REAL NOT NULL, wall REAL NOT NULL)")


class KeepClock:
    """Seconds of keep-time; `now()` from any thread once attached (two floats, set once per file)."""

    def __init__(self, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.wall = wall
        self.monotonic = monotonic
        self._base = wall()  # until a database is attached: wall-clock time, as a new database starts
        self._anchor = monotonic()

    def attach(self, conn: sqlite3.Connection) -> None:
        """Go on from the keep-time saved in `conn` (plus the downtime), or start it there (on the database's thread)."""
        conn.execute(SCHEMA)
        row = conn.execute("SELECT kept_s, wall FROM storage_clock WHERE id = 1").fetchone()
        wall, mono = self.wall(), self.monotonic()
        if row is None:
            self._base, self._anchor = wall, mono
            conn.execute("INSERT INTO storage_clock (id, kept_s, wall) VALUES (1, ?, ?)", (wall, wall))
            return
        kept_s, saved_wall = row
        self._base, self._anchor = kept_s + max(0.0, wall - saved_wall), mono

    def now(self) -> float:
        """The keep-time now."""
        return self._base + (self.monotonic() - self._anchor)

    def save(self, conn: sqlite3.Connection) -> None:
        """Write the keep-time and the wall-clock time it was written at (on the database's thread)."""
        conn.execute("UPDATE storage_clock SET kept_s = ?, wall = ? WHERE id = 1", (self.now(), self.wall()))
