"""The live feed of event changes: a bounded in-memory history that SSE clients read at their own pace.

Each change gets an increasing id. A client that reconnects with Last-Event-ID gets what it
missed, as long as it is still in the history; nothing queues per client.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from .. import jsonsafe
from ..hub import Signal

HISTORY = 1000  # changes kept for clients that reconnect


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One change as sent on the stream; its JSON is encoded once for every client."""

    id: int
    type: str  # new, update, end; delete (an event removed through the API)
    data: dict[str, Any]
    sse_data: bytes  # the JSON of `data`, one line


class EventFeed:
    """Latest-history broadcast of event changes."""

    def __init__(self, history: int = HISTORY) -> None:
        self.items: deque[FeedItem] = deque(maxlen=history)
        self.last_id = 0
        self._signal = Signal()

    def publish(self, kind: str, data: dict[str, Any]) -> FeedItem:
        """Add a change and wake every reader."""
        self.last_id += 1
        item = FeedItem(self.last_id, kind, data, jsonsafe.dumps(data, "an event change").encode())
        self.items.append(item)
        self._signal.touch()
        return item

    def wake(self) -> None:
        """Wake every reader without a change (shutdown)."""
        self._signal.touch()

    def after(self, last_id: int) -> list[FeedItem]:
        """The changes after `last_id` still in the history."""
        return [item for item in self.items if item.id > last_id]

    async def wait(self, last_id: int, timeout: float) -> None:
        """Until a change after `last_id` exists, or `timeout`."""
        if self.last_id <= last_id:
            await self._signal.wait_changed(self._signal.version, timeout)
