"""A bounded outgoing queue for integrations: when full, the oldest message goes and is counted."""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import suppress
from typing import Awaitable, Callable, Generic, Iterable, TypeVar

T = TypeVar("T")


class Outbox(Generic[T]):
    """Messages waiting to go out; `ready` is set whenever one is put."""

    def __init__(self, size: int) -> None:
        self.items: deque[T] = deque(maxlen=size)
        self.dropped = 0
        self.ready = asyncio.Event()

    def put(self, item: T) -> None:
        """Queue `item`; the oldest is dropped (and counted) when the outbox is full."""
        if len(self.items) == self.items.maxlen:
            self.dropped += 1
        self.items.append(item)
        self.ready.set()

    def __len__(self) -> int:
        return len(self.items)

    async def serve(self, deliver: Callable[[T], Awaitable[None]]) -> None:
        """Hand every message to `deliver`, one at a time, oldest first, until cancelled."""
        while True:
            await self.ready.wait()
            while self.items:
                await deliver(self.items.popleft())
            self.ready.clear()

    @property
    def busy(self) -> bool:
        """Messages wait, or the sender has not yet cleared `ready` after the last one."""
        return bool(self.items) or self.ready.is_set()


async def drained(outboxes: Iterable[Outbox[T]], grace_s: float) -> None:
    """Wait until every outbox is empty (its sender took everything), at most `grace_s`."""
    boxes = list(outboxes)
    with suppress(TimeoutError):
        async with asyncio.timeout(grace_s):
            while any(box.busy for box in boxes):
                await asyncio.sleep(0.05)
