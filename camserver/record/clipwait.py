"""The notifier's wait for an event's clip to be finished, woken by the recording index.

A notification's sender thread asks for the clip once the event ended; its post-capture is still
being recorded. Instead of asking again every half second, it waits on a notice the recording
index gives (its `grew` callback: a recording was finished, on the database thread) and asks again
only then. One condition and a counter serve every waiter, so nothing grows with the number of
clips; the overall limit is the clip's pre- and post-capture and a margin, as before.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Callable, Coroutine

MARGIN_S = 15.0  # beyond pre- and post-capture, for the encoder to finish the file
ASK_TIMEOUT_S = 10.0  # for one question to the loop


class ClipWait:
    """Wakes the threads waiting for finished clips whenever a recording is finished.

    Args:
        limit_s: how long a waiter waits at most.
        then: also called on each notice (the storage budget looks soon).
    """

    def __init__(self, limit_s: float, then: Callable[[], None] = lambda: None) -> None:
        self.limit_s = limit_s
        self.then = then
        self.version = 0  # finished recordings so far
        self._changed = threading.Condition()

    def grew(self) -> None:
        """A recording was finished (the index's `grew`, on the database thread): every waiter looks again."""
        self.then()
        with self._changed:
            self.version += 1
            self._changed.notify_all()

    def finished(self, event_id: str, clip_file: Callable[[str], Coroutine[Any, Any, Any]],
                 loop: asyncio.AbstractEventLoop) -> Path | None:
        """The event's clip file once it is finished, or None (no clip, or none within `limit_s`);
        `clip_file`: the recorder's query on `loop` (an event id -> its clip, `path` and `in_progress`, or None).

        Blocking: called on a notification's sender thread, never on the loop.
        """
        deadline = time.monotonic() + self.limit_s
        while True:
            seen = self.version  # read before asking: a notice between the answer and the wait is not lost
            clip = asyncio.run_coroutine_threadsafe(clip_file(event_id), loop).result(ASK_TIMEOUT_S)
            if clip is None or not clip.in_progress:
                return None if clip is None else Path(clip.path)
            if not self._wait_past(seen, deadline):
                return None

    def _wait_past(self, seen: int, deadline: float) -> bool:
        """Until a notice after `seen` (True), or the deadline (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.version != seen, timeout=deadline - time.monotonic())
