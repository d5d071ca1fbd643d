"""How many CPU cores camserver may use: sizes the frame pool and torch's threads."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
