"""Pre-capture: the last seconds of a camera's JPEG bytes, so an event's clip can start before the event."""

from __future__ import annotations

from collections import deque


class PreCaptureBuffer:
    """A ring of (arrival time, JPEG bytes), bounded in seconds and in bytes; the oldest frames go first.

    It holds the camera's own JPEG bytes (the same objects the hub holds, not copies and not
    decoded pictures): a VGA camera at 10 fps needs about 3 MB for 10 s.
    """

    def __init__(self, max_s: float, max_bytes: int) -> None:
        self.max_s = max_s
        self.max_bytes = max_bytes
        self._frames: deque[tuple[float, bytes]] = deque()
        self.bytes = 0
        self.evicted_for_bytes = 0  # frames pushed out by the byte bound before their time was up

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def frames(self) -> int:
        """How many frames it holds."""
        return len(self._frames)

    @property
    def seconds(self) -> float:
        """The time from its oldest to its newest frame."""
        return self._frames[-1][0] - self._frames[0][0] if self._frames else 0.0

    def append(self, when: float, jpeg: bytes) -> None:
        """Add a frame; drop what is older than `max_s` before it, and the oldest while over `max_bytes`."""
        frames = self._frames
        frames.append((when, jpeg))
        self.bytes += len(jpeg)
        while frames and frames[0][0] < when - self.max_s:
            self.bytes -= len(frames.popleft()[1])
        while self.bytes > self.max_bytes and len(frames) > 1:
            self.bytes -= len(frames.popleft()[1])
            self.evicted_for_bytes += 1

    def since(self, start: float) -> list[tuple[float, bytes]]:
        """The frames that arrived at or after `start`, oldest first."""
        out = []
        for item in reversed(self._frames):
            if item[0] < start:
                break
            out.append(item)
        out.reverse()
        return out

    def clear(self) -> None:
        """Forget every frame (the camera went away)."""
        self._frames.clear()
        self.bytes = 0
