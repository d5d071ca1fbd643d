"""Log lines that a misbehaving peer could repeat thousands of times a second, throttled."""

from __future__ import annotations

import logging
import time
from typing import Any


class ThrottledLog:
    """At most one line per key per interval; the next line says how many were held back."""

    MAX_KEYS = 1024  # keys are camera ids or peers; forget them all rather than grow

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._last: dict[str, tuple[float, int]] = {}  # key -> (time logged, lines held back since)

    def warning(self, key: str, msg: str, *args: Any) -> None:
        """Log `msg % args` at warning level unless `key` logged within the interval."""
        self.log(logging.WARNING, key, msg, *args)

    def log(self, level: int, key: str, msg: str, *args: Any) -> None:
        """Log at `level`, throttled per key."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval_s:
            self._last[key] = (last[0], last[1] + 1)
            return
        if len(self._last) >= self.MAX_KEYS:
            self._last.clear()
        held = last[1] if last else 0
        self._last[key] = (now, 0)
        if held:
            msg += " (%d similar lines held back)"
            args = (*args, held)
        self.logger.log(level, msg, *args)
