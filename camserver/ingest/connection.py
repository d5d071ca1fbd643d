"""A camera's connection as the ingest sees it: messages numbered as they arrive and as they are handled
(to tell what a camera sent after it read a message of the server's), and its text messages paced."""

from __future__ import annotations

import time
from typing import Any, Callable

from websockets.asyncio.server import ServerConnection
from websockets.frames import DATA_OPCODES, Frame, Opcode

MAX_MARKS = 8  # pings awaiting their pong per connection (one per update being sent, in practice)
# A board sends a status every 5 s and one after each control message. Beyond this rate a camera's
# text messages wait their turn: the handler stops reading, so TCP holds the flood back at the camera
# instead of the loop parsing 15,000 statuses a second ahead of every other camera and request.
TEXTS_PER_S = 20.0
TEXT_BURST = 40.0


class TextPacer:
    """A token bucket for one connection's text messages: how long to wait before handling the next."""

    def __init__(self, rate: float = TEXTS_PER_S, burst: float = TEXT_BURST) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.at = time.monotonic()
        self.waits = 0  # texts that had to wait

    def delay(self) -> float:
        """Seconds to wait before handling the next text (0 within the rate), taking its token."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= 1
        if self.tokens >= 0:
            return 0.0
        self.waits += 1
        return -self.tokens / self.rate


class CameraConnection(ServerConnection):
    """A camera's connection that numbers the messages it receives, so the server can tell what the
    camera sent after it had read a given message of the server's (see CameraIngest.after_pending).

    The protocol takes messages in ahead of the handler that reads them: `received` counts the former,
    `handled` the latter, and a marked ping's pong notes how many had been received before it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received = 0
        self.handled = 0
        self.pong_marks: dict[bytes, int] = {}  # marked ping payload -> messages received before its pong
        self.at_handled: dict[int, list[Callable[[], None]]] = {}  # message count -> what to call then

    def process_event(self, event: Any) -> None:
        """Count each data message; note the count when a marked ping's pong arrives."""
        if isinstance(event, Frame):
            if event.opcode in DATA_OPCODES and event.fin:
                self.received += 1
            elif event.opcode is Opcode.PONG and bytes(event.data) in self.pong_marks:
                self.pong_marks[bytes(event.data)] = self.received
        super().process_event(event)

    def message_handled(self) -> None:
        """The handler finished one message: call what waited for every message before a pong."""
        self.handled += 1
        for callback in self.at_handled.pop(self.handled, ()):
            callback()
