"""A folder of files kept under storage.dir that counts toward storage.max_mb but is never removed by it (firmware/)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

RESCAN_S = 10.0  # the folder holds a few files (firmware images): a scan this often costs a few stats


class CountedFolder:
    """A kind of the storage budget whose files count and stay: the budget makes room among the other kinds.

    Every method runs on the database's thread.
    """

    tables: tuple[str, ...] = ()
    removable = False  # the budget removes older days of the other kinds for it, never their newest day

    def __init__(self, name: str, folder: Path, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.folder = folder
        self.monotonic = monotonic
        self._bytes = 0
        self._scanned = -float("inf")

    def file_bytes(self) -> int:
        """Bytes of the folder's files (scanned at most every RESCAN_S)."""
        now = self.monotonic()
        if now - self._scanned >= RESCAN_S:
            self._scanned = now
            total = 0
            try:
                with os.scandir(self.folder) as entries:
                    for entry in entries:
                        try:
                            if entry.is_file(follow_symlinks=False):
                                total += entry.stat(follow_symlinks=False).st_size
                        except OSError:
                            pass
            except OSError:  # no folder yet
                pass
            self._bytes = total
        return self._bytes

    def sweep(self, limit: int) -> bool:
        """Nothing to sweep: the folder's owner keeps it."""
        return False

    def expire(self, now: float, limit: int) -> int:
        """Nothing expires."""
        return 0

    def trim(self, need: int, keep_newest_day: bool, limit: int) -> int:
        """Nothing is removed: its owner (the firmware store) decides what it keeps."""
        return 0
