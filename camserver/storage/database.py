"""storage.dir's SQLite database and the one thread that uses it.

Every stage that keeps rows (events, camera settings, recordings, mutes, the budget) runs its SQL
through `Database.run` / `Database.use` (or `submit`, the Executor face, for code off the loop), on
the database's own thread, never on the event loop; the events stage also does its tracking there,
so a frame's events are stored in the order they happened. Only this module holds the connection
and the thread (`_conn`, `_executor`); code already on the thread gets the connection as an
argument (`use`) or from `connection()`, which refuses any other thread. tests/test_structure.py
checks that no other module reaches in.

The database never stops the server: a file that is corrupt, unreadable or not SQLite at all is
moved aside (`camserver.db.corrupt-<YYYYmmdd-HHMMSS>`, its WAL and SHM with it) and a fresh one is
made; a file deleted or replaced while the server runs is noticed (`check_file`) and recreated.
Stages that keep tables `attach` a setup that is run again on every new file.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
import threading
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from ..supervise import Spawn, cancel_and_wait
from .budget import StorageBudget
from .floor import Space, statvfs_space
from .housekeeping import keep

log = logging.getLogger(__name__)

FILE = "camserver.db"
LEGACY_FILE = "events.db"  # before camera settings and recordings joined the events in one file
SIDE_FILES = ("-wal", "-shm")
T = TypeVar("T")
THREAD = "storage"  # the name (prefix) of the database's thread

# Primary result codes that say the file itself is unusable (moved aside), not that it is busy
UNUSABLE = {11: "corrupt", 26: "not a database", 14: "cannot be opened"}  # CORRUPT, NOTADB, CANTOPEN
INCREMENTAL = 2  # PRAGMA auto_vacuum
SQLITE_HEADER = b"SQLite format 3\x00"


class StorageError(Exception):
    """storage.dir cannot be created or written; the text says why."""


class _Unusable(Exception):
    """The file is corrupt, unreadable or not a database; the text says how."""


def unusable(exc: BaseException) -> str | None:
    """Why an SQLite error means the file is unusable (corrupt, not a database, unreadable), else None."""
    code = getattr(exc, "sqlite_errorcode", None)
    return UNUSABLE.get(code & 0xFF) if isinstance(code, int) else None


def disk_full(exc: BaseException) -> bool:
    """Whether an error is a write that found no room: ENOSPC/EDQUOT, or SQLite's SQLITE_FULL."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class Database(Executor):
    """The SQLite file (WAL, incremental auto-vacuum) under `directory`, used from one thread, and the size
    budget of everything under `directory` (`budget`: the stages that keep things there add their kind).

    It is also the Executor of its thread (`submit`), for code that queues work without awaiting it."""

    def __init__(self, directory: Path, max_mb: float = 1024.0, clock: Callable[[], float] = time.time,
                 min_free_mb: float = 0.0, space: Callable[[Path], Space] = statvfs_space,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self.path = directory / FILE
        self.clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD)
        self._conn: sqlite3.Connection | None = None
        self.incremental = False  # auto_vacuum = INCREMENTAL: free pages can be given back
        self.corrupt_files_moved = 0
        self.recreated = 0
        self.suspected = False  # a stage saw an error that may mean the file is gone or corrupt
        self._corrupt_seen = False  # ... and SQLite called it corrupt
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file we opened
        self._setups: list[Callable[[sqlite3.Connection], None]] = []
        self.budget = StorageBudget(self, max_mb, clock, min_free_mb, space, monotonic)
        self._housekeeping: asyncio.Task[None] | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the database's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def use(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(connection, *args)` on the database's thread (the connection of that moment: a recreated
        file gives a new one)."""
        return await self.run(lambda: fn(self.connection(), *args))

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Queue `fn(*args, **kwargs)` on the database's thread, in order (concurrent.futures.Executor)."""
        return self._executor.submit(fn, *args, **kwargs)

    def connection(self) -> sqlite3.Connection:
        """The open connection; only on the database's thread (AssertionError elsewhere, or when closed)."""
        assert threading.current_thread().name.startswith(THREAD), "the connection is used on its own thread only"
        assert self._conn is not None, "the database is not open"
        return self._conn

    @property
    def is_open(self) -> bool:
        """A connection is open (between open() and close(); not while a lost file is being recreated)."""
        return self._conn is not None

    async def open(self, spawn: Spawn | None = None) -> None:
        """Create the folder and open the database (a corrupt one is moved aside); with `spawn`, start the
        housekeeping (the file checked, the budget kept) as a "storage" task. Raises StorageError."""
        await self.run(self._open)
        if spawn is not None:
            self._housekeeping = spawn("storage", keep(self, self.budget), "storage-housekeeping")

    def _open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / ".write-test"
            probe.write_bytes(b"ok")
            probe.unlink()
            self._adopt_legacy_file()
            self._conn = self._connect()
            self.budget.keep_clock.attach(self._conn)
            self.budget.measure()  # a figure for /api/system at once; the kinds' files join with the first round
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"{self.directory}: {exc}") from None

    def attach(self, setup: Callable[[sqlite3.Connection], None]) -> None:
        """Run `setup(conn)` on every file opened from now on (its tables); on the database's thread."""
        self._setups.append(setup)

    def _adopt_legacy_file(self) -> None:
        legacy = self.directory / LEGACY_FILE
        if legacy.exists() and not self.path.exists():
            for suffix in ("", *SIDE_FILES):
                old = legacy.with_name(LEGACY_FILE + suffix)
                if old.exists():
                    os.replace(old, self.path.with_name(FILE + suffix))
            log.info("the event history in %s is now kept in %s", legacy, self.path)

    def _connect(self) -> sqlite3.Connection:
        """The file opened and checked; an unusable one is moved aside and a fresh one made."""
        try:
            return self._connect_checked()
        except _Unusable as exc:
            aside = self._move_aside()
            self.corrupt_files_moved += 1
            log.error("storage: %s is unusable (%s); it was moved to %s and an empty database was created in "
                      "its place: the event history and camera settings start again", self.path, exc, aside)
            return self._connect_checked()

    def _connect_checked(self) -> sqlite3.Connection:
        self._check()
        conn = None
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.incremental = self._incremental(conn)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            stat = os.stat(self.path)
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            if (why := unusable(exc)) is not None:
                raise _Unusable(f"{why}: {exc}") from None
            raise
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        self._identity = (stat.st_dev, stat.st_ino)
        return conn

    def _check(self) -> None:
        """Raise _Unusable unless the file is missing, empty or a sound SQLite database (PRAGMA quick_check).

        Read only: a connection that may write would fold a WAL into a corrupt file, or delete it,
        before it could be moved aside with it.
        """
        try:
            with open(self.path, "rb") as f:
                header = f.read(len(SQLITE_HEADER))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _Unusable(f"cannot be read: {exc.strerror or exc}") from None
        if not header:
            return
        if header != SQLITE_HEADER:
            raise _Unusable("not an SQLite database")
        probe = None
        try:
            probe = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True)
            problems = [row[0] for row in probe.execute("PRAGMA quick_check(5)")]
        except sqlite3.Error as exc:
            if (why := unusable(exc)) is not None:
                raise _Unusable(f"{why}: {exc}") from None
            raise
        finally:
            if probe is not None:
                probe.close()
        if problems != ["ok"]:
            raise _Unusable("quick_check: " + "; ".join(problems))

    def _incremental(self, conn: sqlite3.Connection) -> bool:
        """Turn on incremental auto-vacuum: before the first table, or with one VACUUM for an existing file."""
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL:
            return True
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            start = time.monotonic()
            try:
                conn.execute("VACUUM")
            except sqlite3.OperationalError as exc:  # a full disk: the file keeps working, it only never shrinks
                log.warning("storage: %s could not be converted to incremental vacuum (%s); free space in it is "
                            "reused but not given back", self.path, exc)
                return False
            log.info("storage: %s converted to incremental vacuum in %.1f s (once)", self.path, time.monotonic() - start)
        return bool(conn.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL)

    def _move_aside(self) -> Path:
        """camserver.db (and its WAL and SHM) -> camserver.db.corrupt-<time>; returns the new path."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.clock()))
        aside = self.path.with_name(f"{FILE}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{FILE}.corrupt-{stamp}-{n}")
        os.replace(self.path, aside)
        for suffix in SIDE_FILES:
            side = self.path.with_name(FILE + suffix)
            if side.exists():
                os.replace(side, aside.with_name(aside.name + suffix))  # sqlite finds them beside it
        return aside

    def suspect(self, exc: BaseException) -> None:
        """A stage's SQL or file work failed: the next housekeeping tick checks the file (any thread)."""
        self.suspected = True
        if unusable(exc) in ("corrupt", "not a database"):
            self._corrupt_seen = True

    def check_file(self) -> bool:
        """Recreate the database if its file was deleted, replaced or found corrupt; True if it was.

        On the database's thread, every housekeeping round and after an error. The stages'
        setups run on the new file; what they kept only there is gone.
        """
        corrupt, self.suspected, self._corrupt_seen = self._corrupt_seen, False, False
        try:
            stat = os.stat(self.path)
            same = (stat.st_dev, stat.st_ino) == self._identity
        except OSError:
            same = False
        if same and self._conn is not None and not corrupt:
            return False
        if same and corrupt and self._conn is not None and self._file_is_sound():
            return False
        old, self._conn, self._identity = self._conn, None, None
        if old is not None:
            try:
                old.close()  # a deleted file: folds its WAL into the deleted inode and removes the WAL by name
            except sqlite3.Error:
                pass
        why = "found corrupt" if same else "deleted or replaced while the server ran"
        if same:
            aside = self._move_aside()
            self.corrupt_files_moved += 1
            log.error("storage: %s was %s; it was moved to %s and an empty database was created", self.path, why, aside)
        elif not self.path.exists():
            for suffix in SIDE_FILES:  # a WAL of the deleted file must never be played into the new one
                self.path.with_name(FILE + suffix).unlink(missing_ok=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._conn = self._connect()
        try:
            self.budget.keep_clock.attach(self._conn)
            for setup in self._setups:
                setup(self._conn)
        except BaseException:
            self._identity = None  # the next check starts again rather than keep a half-attached file
            raise
        self.recreated += 1
        if not same:
            log.error("storage: %s was %s; it was opened again (a new, empty one if it was gone): the history "
                      "in the lost file is gone, camera settings and open events are written again", self.path, why)
        return True

    def _file_is_sound(self) -> bool:
        """The file as it is on disk passes _check (a connection of its own: ours may hold cached pages)."""
        try:
            self._check()
        except _Unusable:
            return False
        except sqlite3.Error:
            return True  # busy or locked: not a reason to move it aside
        return True

    def _close(self) -> None:
        assert self._conn is not None
        try:
            self.budget.keep_clock.save(self._conn)  # the next start goes on from here
        except sqlite3.Error:
            pass
        self._conn.close()

    def side_bytes(self) -> int:
        """Size of the WAL and SHM files beside the database (0 when there are none)."""
        total = 0
        for suffix in SIDE_FILES:
            try:
                total += os.stat(self.path.with_name(FILE + suffix)).st_size
            except OSError:
                pass
        return total

    def health(self) -> dict[str, Any]:
        """What /healthz shows of the database file."""
        return {"corrupt_files_moved": self.corrupt_files_moved, "recreated": self.recreated,
                "incremental_vacuum": self.incremental}

    async def close(self) -> None:
        """Stop the housekeeping, close the database (a checkpoint folds the WAL into it) and end its thread."""
        await cancel_and_wait(self._housekeeping)
        if self._conn is not None:
            await self.run(self._close)
            self._conn = None
        self._executor.shutdown(wait=True)
