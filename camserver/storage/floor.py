"""storage.min_free_mb: the free space kept on storage.dir's disk, whatever else fills it.

The housekeeping (housekeeping.py) has the budget look every tick (1 s): one statvfs, a system call of a few microseconds
that reads the file system's counters and touches no file, so a disk that fills at 100 MB/s is
caught within about 100 MB. Below the floor it removes camserver's own oldest items until the
free space is back above the floor plus HYSTERESIS. An episode ends when the free space has stayed
above the floor for QUIET_S: a disk that something keeps filling is one episode (one log line at
its end, one warning if nothing of camserver's own is left), not a line a second.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

SHARE = 0.10  # the floor is at most this share of the disk: a small card is not emptied to keep 1 GB free
HYSTERESIS = 0.10  # in an episode, room is made up to this share above the floor
QUIET_S = 30.0  # an episode ends once the free space stayed above the floor this long
# Below this much free space, with nothing of camserver's own left to remove, recording pauses
# (a write would fail); it resumes at the next tick that finds more.
PAUSE_BELOW = 256 * 1024


@dataclass(frozen=True)
class Space:
    """The disk under storage.dir, as statvfs says: bytes free to us and its size."""

    free: int
    size: int


def statvfs_space(directory: Path) -> Space:
    """The free bytes (for an unprivileged writer, f_bavail) and the size of the disk holding `directory`."""
    st = os.statvfs(directory)
    return Space(st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)


@dataclass
class Episode:
    """One stretch below the floor: what was removed to get out of it."""

    free_at_start: int
    removed: dict[str, int] = field(default_factory=dict)  # items by kind
    freed: int = 0  # bytes the kinds reported
    stuck: bool = False  # nothing of camserver's own was left to remove (logged once)
    above_since: float | None = None  # monotonic time the free space was last found back above the floor


class FreeSpaceFloor:
    """The floor and its state: the last figures, the current episode, the counters for /healthz."""

    def __init__(self, directory: Path, min_free_mb: float,
                 space: Callable[[Path], Space] = statvfs_space) -> None:
        self.directory = directory
        self.min_free = int(min_free_mb * 1024 * 1024)
        self.space = space
        self.last: Space | None = None
        self.episode: Episode | None = None
        self.episodes = 0
        self.removed: dict[str, int] = {}  # items by kind, since start
        self.errors = 0

    def bytes_for(self, size: int) -> int:
        """The floor on a disk of `size` bytes: min_free_mb, at most SHARE of the disk."""
        return min(self.min_free, int(size * SHARE))

    @property
    def floor(self) -> int:
        """The floor as of the last measure (min_free_mb before the first)."""
        return self.bytes_for(self.last.size) if self.last is not None else self.min_free

    def measure(self) -> Space | None:
        """statvfs now (None if it failed: a folder gone; the next tick looks again)."""
        try:
            self.last = self.space(self.directory)
        except OSError:
            self.errors += 1
            self.last = None
        return self.last

    def need(self) -> int:
        """Bytes to free now: 0 above the floor; in an episode, up to the floor plus HYSTERESIS."""
        if self.last is None or self.min_free <= 0:
            return 0
        floor = self.floor
        target = floor + int(floor * HYSTERESIS) if self.episode is not None else floor
        return max(0, target - self.last.free)

    @property
    def paused(self) -> str | None:
        """Why recording waits, or None: the disk is full and nothing of camserver's own is left to remove."""
        if self.episode is None or not self.episode.stuck or self.last is None or self.last.free >= PAUSE_BELOW:
            return None
        return (f"{self.last.free // 1024} KB free under {self.directory} and nothing of camserver's own left to "
                f"remove (storage.min_free_mb keeps {self.floor / 2**20:.1f} MB free): recording resumes when "
                f"space returns")

    def space_ok(self) -> bool:
        """Whether a recording that failed to write may try again (any thread: reads one field)."""
        return self.paused is None

    def health(self) -> dict[str, object]:
        """The floor's part of /healthz `storage`."""
        return {"free_bytes": self.last.free if self.last is not None else None, "min_free_bytes": self.floor,
                "below_floor": self.last is not None and self.last.free < self.floor, "floor_episodes": self.episodes,
                "removed_for_free_space": dict(self.removed), "paused_reason": self.paused}
