"""storage.dir's SQLite database and the one thread that uses it.

Every stage that keeps rows (events, camera settings, recordings) runs its SQL through
`Database.run`, on the database's own thread, never on the event loop; the events stage also
does its tracking there, so a frame's events are stored in the order they happened.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

log = logging.getLogger(__name__)

FILE = "camserver.db"
LEGACY_FILE = "events.db"  # before camera settings and recordings joined the events in one file
T = TypeVar("T")


class StorageError(Exception):
    """storage.dir cannot be created or written; the text says why."""


class Database:
    """The SQLite file (WAL) under `directory`, used from one thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / FILE
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="storage")
        self.conn: sqlite3.Connection | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the database's thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def open(self) -> None:
        """Create the folder and open the database. Raises StorageError."""
        await self.run(self._open)

    def _open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / ".write-test"
            probe.write_bytes(b"ok")
            probe.unlink()
            self._adopt_legacy_file()
            self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"{self.directory}: {exc}") from None

    def _adopt_legacy_file(self) -> None:
        legacy = self.directory / LEGACY_FILE
        if legacy.exists() and not self.path.exists():
            for suffix in ("", "-wal", "-shm"):
                old = legacy.with_name(LEGACY_FILE + suffix)
                if old.exists():
                    os.replace(old, self.path.with_name(FILE + suffix))
            log.info("the event history in %s is now kept in %s", legacy, self.path)

    async def close(self) -> None:
        """Close the database (a checkpoint folds the WAL into it) and end its thread."""
        if self.conn is not None:
            await self.run(self.conn.close)
            self.conn = None
        self.executor.shutdown(wait=True)
