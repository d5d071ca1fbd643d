"""storage.max_mb and storage.retain_days over everything kept under storage.dir, in one place.

What counts (`StorageBudget.measure`, cheap: a few PRAGMAs and stats, no scan):
- the database's pages in use, (page_count - freelist_count) x page_size. Free pages are not
  counted: the steps give them back to the file system (`PRAGMA incremental_vacuum`), so the file
  follows. The WAL is folded into the database after every step (checkpoint TRUNCATE); what is left
  of it (a checkpoint a reader held up) and the SHM index (32 KB) are counted as the database's own.
- the overhead, what no deletion can free: the schema, one empty root page per table and index of
  the kinds, every table that is not a kind's (camera settings), the WAL and SHM files.
- each kind's files (event snapshots; files left without a row count until they are swept).

What goes, oldest first, in bounded steps on the database's thread (frames' events run between
them): below the free-space floor (storage.min_free_mb, floor.py), the oldest items of each kind in
the order the kinds were added, the newest day too, until the floor is back; items past
retain_days (their age in keep-time, keepclock.py, so a clock step does not move it); then, while the total is over max_mb, the oldest items of each kind
in the order the kinds were added (recordings will go before events), never a kind's newest day;
the newest day is trimmed only when the kinds' own bytes, without the overhead, exceed max_mb, so
the database's overhead alone never empties the history.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, TypeVar

from ..logsafe import ThrottledLog
from .floor import PAUSE_BELOW, QUIET_S, Episode, FreeSpaceFloor, Space, statvfs_space
from .keepclock import KeepClock

log = logging.getLogger(__name__)

STEP_ITEMS = 256  # items removed per step
STEP_PAGES = 1024  # pages given back per step (4 MB at 4 KiB pages)
STEPS_PER_ROUND = 40  # then the round yields until the next tick
SWEEP_FILES = 512  # files looked at per sweep step
KEEP_SAVE_S = 60.0  # keep-time (keepclock.py) is saved this often


T = TypeVar("T")


class MeasuredDatabase(Protocol):
    """What the budget asks of the database it measures and vacuums (database.py's Database, which owns the budget)."""

    @property
    def directory(self) -> Path:
        """storage.dir."""

    def connection(self) -> sqlite3.Connection:
        """The open connection; on the database's thread only (it refuses any other)."""

    @property
    def is_open(self) -> bool:
        """A connection is open (not while the file is being recreated)."""

    @property
    def incremental(self) -> bool:
        """Whether free pages can be given back (auto_vacuum = INCREMENTAL)."""

    def side_bytes(self) -> int:
        """Bytes of the WAL and SHM files."""

    def health(self) -> dict[str, Any]:
        """What /healthz shows of the database file."""

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the database's thread."""


class StorageKind(Protocol):
    """Something kept under storage.dir that the budget may remove, oldest first (events, recordings).

    Every method runs on the database's thread.
    """

    @property
    def name(self) -> str:
        """Its name in /healthz, the counters and the logs."""

    @property
    def tables(self) -> tuple[str, ...]:
        """Its tables: their pages and their indexes' are its rows, not overhead."""

    def file_bytes(self) -> int:
        """Bytes of its files, kept as a running total (never a scan per round)."""

    def sweep(self, limit: int) -> bool:
        """Remove up to `limit` files left without a row (a crash, a full disk); True while more remain to look at."""

    def expire(self, now: float, limit: int) -> int:
        """Remove up to `limit` items past their age limit (`now`: keep-time, see keepclock.py); returns how many."""

    def trim(self, need: int, keep_newest_day: bool, limit: int) -> int:
        """Remove its oldest items, about `need` bytes (rows and files), at most `limit`; returns how many.

        With `keep_newest_day`, items less than a day older than its newest one stay.
        """


@dataclass(frozen=True)
class Usage:
    """What storage.dir holds, in bytes, as the budget counts it."""

    page_size: int
    pages: int
    free_pages: int
    wal: int  # the WAL and SHM files
    overhead: int  # the database's own: schema, empty roots, other tables, WAL and SHM
    files: dict[str, int] = field(default_factory=dict)  # by kind

    @property
    def database(self) -> int:
        """Pages in use plus the WAL and SHM files."""
        return (self.pages - self.free_pages) * self.page_size + self.wal

    @property
    def rows(self) -> int:
        """The kinds' rows: the database less its overhead."""
        return max(0, self.database - self.overhead)

    @property
    def total(self) -> int:
        """What max_mb is compared with."""
        return self.database + sum(self.files.values())

    @property
    def kinds(self) -> int:
        """The kinds' own bytes, rows and files, without the overhead."""
        return self.rows + sum(self.files.values())


class StorageBudget:
    """Keeps storage.dir under max_mb and its kinds under their ages; counts what it removed."""

    def __init__(self, database: MeasuredDatabase, max_mb: float, clock: Callable[[], float] = time.time,
                 min_free_mb: float = 0.0, space: Callable[..., Space] = statvfs_space,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.database = database
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.clock = clock
        self.keep_clock = KeepClock(clock, monotonic)
        self.floor = FreeSpaceFloor(database.directory, min_free_mb, space)
        self._keep_saved = -float("inf")
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.kinds: list[StorageKind] = []
        self.removed: dict[str, int] = {}  # by kind, since start
        self.errors = 0
        self.last: Usage | None = None
        self.last_round_ms = 0.0  # thread time of the last round's steps, summed
        self._sweeping: set[str] = set()
        self._due = True  # a round at the next tick: the first one, and one after a kind is added
        self._has_dbstat: bool | None = None
        self._log = ThrottledLog(log, interval_s=3600.0)
        self._errors_log = ThrottledLog(log, interval_s=60.0)

    def add(self, kind: StorageKind) -> None:
        """Put a kind under the budget; kinds added first lose their oldest items first. Its orphans are swept."""
        self.kinds.append(kind)
        self.removed.setdefault(kind.name, 0)
        self._sweeping.add(kind.name)
        self._due = True

    def soon(self) -> None:
        """A round at the next tick rather than at the next timed one (a kind just grew: a recording finished)."""
        self._due = True

    @property
    def due(self) -> bool:
        """Whether a round should run at the next tick (a kind added or grown, or the last round left work over)."""
        return self._due

    def doorbell(self) -> asyncio.Event:
        """The event `urgent` sets from any thread, made on the running loop (the housekeeping waits on it)."""
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        return self._wake

    def failed(self, what: str, exc: Exception) -> None:
        """Count a failed round or file check and log it (rate-limited)."""
        self.errors += 1
        self._errors_log.warning(what, "storage %s failed (%d so far): %s", what, self.errors, exc)

    def urgent(self) -> None:
        """A write failed for want of space: the free-space floor is looked at now, not at the next tick (any thread)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop has closed: shutting down
                pass

    def resweep(self) -> None:
        """Sweep every kind's files again (the database was recreated: its rows are gone)."""
        self._sweeping = {kind.name for kind in self.kinds}
        self._has_dbstat = None

    # --- on the database's thread -----------------------------------------------------------

    def measure(self) -> Usage:
        """What storage.dir holds now."""
        conn = self.database.connection()
        page_size, pages, free = (conn.execute(f"PRAGMA {p}").fetchone()[0]
                                  for p in ("page_size", "page_count", "freelist_count"))
        wal = self.database.side_bytes()
        owned = {table for kind in self.kinds for table in kind.tables}
        trees = conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE rootpage > 0").fetchall()
        overhead_pages = self._pages_of("sqlite_schema") or 1
        for name, table in trees:
            overhead_pages += 1 if table in owned else self._pages_of(name) or 1
        files = {kind.name: kind.file_bytes() for kind in self.kinds}
        self.last = Usage(page_size, pages, free, wal, overhead_pages * page_size + wal, files)
        return self.last

    def _pages_of(self, tree: str) -> int:
        """Pages of one b-tree, where SQLite has the dbstat table (else 0: the caller counts its root)."""
        if self._has_dbstat is False:
            return 0
        conn = self.database.connection()
        try:
            row = conn.execute("SELECT count(*) FROM dbstat WHERE name = ?", (tree,)).fetchone()
        except Exception:  # built without SQLITE_ENABLE_DBSTAT_VTAB
            self._has_dbstat = False
            return 0
        self._has_dbstat = True
        return int(row[0])

    def step(self, now: float) -> bool:
        """One bounded piece of work: a sweep, an expiry or a trim, then free pages given back. True while more to do."""
        worked = self._free_space() or self._sweep() or self._expire(now) or self._trim()
        more_pages = self._vacuum()
        if worked:
            self.measure()  # /healthz shows what is left, not what the step started from
        return worked or more_pages

    def _free_space(self) -> bool:
        """Below the floor: remove the oldest item(s) of the first kind that has any, the newest day too."""
        floor = self.floor
        if floor.measure() is None:
            return False
        need = floor.need()
        episode = floor.episode
        if not need:
            if episode is not None:
                now = self.keep_clock.monotonic()
                if episode.above_since is None:
                    episode.above_since = now
                elif now - episode.above_since >= QUIET_S:
                    self._end_episode(episode)
            return False
        if episode is None:
            assert floor.last is not None
            episode = floor.episode = Episode(floor.last.free)
            floor.episodes += 1
        episode.above_since = None
        for kind in self.kinds:  # the order they were added: exports, recordings, events
            if n := kind.trim(need, False, STEP_ITEMS):
                episode.removed[kind.name] = episode.removed.get(kind.name, 0) + n
                floor.removed[kind.name] = floor.removed.get(kind.name, 0) + n
                episode.stuck = False
                return True
        if not episode.stuck:
            episode.stuck = True
            log.warning("storage: %s has %d KB free, under storage.min_free_mb (%.1f MB here), and nothing of "
                        "camserver's own is left to remove (%s so far); what fills the disk is not camserver's, "
                        "recording pauses below %d KB free and resumes within a second or two of space returning",
                        self.database.directory, floor.last.free // 1024 if floor.last else 0,
                        floor.floor / 2**20, _removed_text(episode.removed) or "nothing", PAUSE_BELOW // 1024)
        return False

    def _end_episode(self, episode: Episode) -> None:
        floor = self.floor
        floor.episode = None
        free = floor.last.free if floor.last is not None else 0
        log.warning("storage: %s fell to %d KB free, under storage.min_free_mb (%.1f MB here); removed %s, oldest "
                    "first, until it stayed above for %.0f s; now %.1f MB free", self.database.directory,
                    episode.free_at_start // 1024,
                    floor.floor / 2**20, _removed_text(episode.removed) or "nothing of camserver's own",
                    QUIET_S, free / 2**20)

    def _sweep(self) -> bool:
        for kind in self.kinds:
            if kind.name in self._sweeping:
                if kind.sweep(SWEEP_FILES):
                    return True
                self._sweeping.discard(kind.name)  # its last files were looked at: go on in this step
        return False

    def _expire(self, now: float) -> bool:
        for kind in self.kinds:
            if n := kind.expire(now, STEP_ITEMS):
                self.removed[kind.name] += n
                return True
        return False

    def _trim(self) -> bool:
        usage = self.measure()
        if usage.total <= self.max_bytes:
            return False
        for kind in self.kinds:  # older days first, the overhead counted
            if n := kind.trim(usage.total - self.max_bytes, True, STEP_ITEMS):
                self.removed[kind.name] += n
                return True
        # what stays whatever the budget does (firmware images) is overhead here: it never costs the newest day
        removable = usage.kinds - sum(usage.files.get(k.name, 0) for k in self.kinds if not getattr(k, "removable", True))
        if removable > self.max_bytes:  # the newest day alone is over max_mb
            for kind in self.kinds:
                if n := kind.trim(removable - self.max_bytes, False, STEP_ITEMS):
                    self.removed[kind.name] += n
                    return True
            return False
        self._log.warning("overhead", "storage.max_mb (%.2f MB) holds the newest day of events and recordings but "
                          "not the database's own %.2f MB and the %.2f MB that stay (firmware images) besides them; "
                          "those events are kept, and the newest day's recordings (storage.dir holds %.2f MB)", self.max_bytes / 2**20,
                          usage.overhead / 2**20, (usage.kinds - removable) / 2**20, usage.total / 2**20)
        return False

    def _vacuum(self) -> bool:
        """Give up to STEP_PAGES free pages back to the file system; fold the WAL in. True if free pages remain."""
        conn = self.database.connection()
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        if free and self.database.incremental:
            # executescript steps the PRAGMA to its end; execute() would free one page per call
            conn.executescript(f"PRAGMA incremental_vacuum({STEP_PAGES});")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        self._save_keep_clock()
        return bool(self.database.incremental and free > STEP_PAGES)

    def _save_keep_clock(self) -> None:
        """Keep-time saved at most every KEEP_SAVE_S (a crash loses at most that much of it); a full disk skips it."""
        now = self.keep_clock.monotonic()
        if now - self._keep_saved < KEEP_SAVE_S:
            return
        conn = self.database.connection()
        try:
            self.keep_clock.save(conn)
            self._keep_saved = now
        except sqlite3.OperationalError:  # the disk is full: the floor's work goes on, the next round saves it
            pass

    # --- on the loop ------------------------------------------------------------------------

    async def round(self) -> bool:
        """Steps until there is nothing to do or STEPS_PER_ROUND ran; True if work is left over."""
        spent = 0.0
        try:
            for _ in range(STEPS_PER_ROUND):
                more, cpu = await self.database.run(self._timed_step)
                spent += cpu
                if not more:
                    return False
            return True
        except Exception as exc:  # a full disk, a database gone: streaming never depends on storage
            self.failed("budget round", exc)
            return False
        finally:
            self.last_round_ms = spent * 1000

    def _timed_step(self) -> tuple[bool, float]:
        start = time.thread_time()
        if not self.database.is_open:
            return False, 0.0
        return self.step(self.keep_clock.now()), time.thread_time() - start

    def below_floor(self) -> bool:
        """One statvfs: whether the floor needs a round now (on the database's thread)."""
        return self.floor.measure() is not None and (self.floor.need() > 0 or self.floor.episode is not None)

    async def run_round(self) -> None:
        """A round now (housekeeping.py decides when); `due` says whether it left work over."""
        self._due = await self.round()

    # --- what recording asks (exporter.DiskSpace), from any thread -----------------------

    def space_ok(self) -> bool:
        """Whether a camera paused by a write error may try again: False while the disk is full and nothing is left to remove."""
        return self.floor.space_ok()

    def room(self) -> int:
        """Bytes free above the floor as last measured (an export bigger than this is refused)."""
        last = self.floor.last
        return 2**62 if last is None else last.free - self.floor.floor

    def used_total(self) -> int | None:
        """Bytes under storage.dir as last measured (None before the first round): no walk of the folder."""
        return self.last.total if self.last is not None else None

    def health(self, write_errors: int = 0) -> dict[str, Any]:
        """What /healthz shows of storage.dir (as of the last round): bytes by kind, the budget, what retention
        removed, write errors (the stages' `write_errors` and the budget's own), the database file's figures."""
        usage = self.last
        used: dict[str, int] = {}
        if usage is not None:
            used = {"total": usage.total, "database_overhead": usage.overhead}
            # the kinds' rows share one database and are shown with the last kind added that has tables, the
            # one that keeps many rows (events; recordings, added before them, are mostly files)
            with_rows = [kind for kind in self.kinds if kind.tables][-1:]
            for kind in self.kinds:
                used[kind.name] = usage.files.get(kind.name, 0) + (usage.rows if kind in with_rows else 0)
        return {"used_bytes": used, "max_bytes": self.max_bytes, "removed_by_retention": dict(self.removed),
                "write_errors": write_errors + self.errors, "last_round_ms": round(self.last_round_ms, 1),
                **self.floor.health(), **self.database.health()}


def _removed_text(removed: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in removed.items() if n)
