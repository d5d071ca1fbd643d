"""What a saved config change does to the running server (PATCH /api/config), and the figures the Settings
view shows beside the storage keys.

The live keys (config/writeback.py's LIVE_KEYS) go to the stage that owns them: [events]' shapes to the
events engine, the [[notify]] rules to the notifier, [record]'s mode, capture and retention and each
camera's own mode ([cameras.<id>] record) to the recorder and its kind under the budget, storage.max_mb
and storage.min_free_mb to the budget (on the database's thread, which owns the budget's state), the
cameras' names ([cameras.<id>] name) and [groups] to whoever shows them. Every other key waits for a restart.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Awaitable, Callable, Iterable

from ..config import Config, EventsConfig
from ..config.writeback import camera_key
from ..integrations.notify import Notifier
from ..record import Recorder
from ..record.kind import RecordingsKind
from ..storage import Database

DAY_S = 86400.0
MIN_SPAN_S = 3600.0  # a rate from less than an hour of recordings is counted over an hour


class LiveApply:
    """Takes the live keys of a new config into the stages that own them."""

    def __init__(self, notifier: Notifier, recorder: Recorder, recordings: RecordingsKind, database: Database,
                 apply_events: Callable[[EventsConfig], Awaitable[None]], shapes_changed: Callable[[Config], None],
                 shown_changed: Callable[[Config], None], clock: Callable[[], float] | None = None) -> None:
        self.notifier = notifier
        self.recorder = recorder
        self.recordings = recordings
        self.database = database
        self.apply_events = apply_events
        self.shapes_changed = shapes_changed
        self.shown_changed = shown_changed  # the names and groups the page shows
        # keep-time (storage/keepclock.py): "the last 24 h" of the rate is measured on it, so a wall-clock step
        # neither empties nor doubles it
        self.clock = clock or database.budget.keep_clock.now

    async def __call__(self, config: Config, keys: list[str]) -> None:
        """Apply `keys` (the changed live keys) of `config`."""
        if any(k.startswith("events.") for k in keys):
            await self.apply_events(config.events)
            self.shapes_changed(config)
        if "notify" in keys:
            await self.notifier.set_rules(config.notify)
        if any(k.startswith("record.") for k in keys) or _camera_keys(keys, "record"):
            self.recorder.set_config(config.record, config.cameras.record_modes)
            await self.database.run(setattr, self.recordings, "retain_days", config.record.retain_days)
            self.database.budget.soon()
        if any(k.startswith("storage.") for k in keys):
            await self.database.run(self._budget, config.storage.max_mb, config.storage.min_free_mb)
        if _camera_keys(keys, "name") or any(k == "groups" or k.startswith("groups.") for k in keys):
            self.shown_changed(config)

    def _budget(self, max_mb: float, min_free_mb: float) -> None:
        """On the database's thread: the budget's new size and free-space floor, kept from the next round."""
        budget = self.database.budget
        budget.max_bytes = int(max_mb * 1024 * 1024)
        budget.floor.min_free = int(min_free_mb * 1024 * 1024)
        budget.soon()

    async def storage(self) -> dict[str, Any]:
        """Today's write rate and the room it fills: what "about N days at today's rate" is made of."""
        now = self.clock()
        written, first = await self.database.run(self._written, now - DAY_S)
        span = max(now - first, MIN_SPAN_S) if first is not None else None
        budget = self.database.budget
        used = budget.used_total()
        free = budget.floor.last.free if budget.floor.last is not None else None
        per_day = written * DAY_S / span if span else 0.0
        room = budget.max_bytes if free is None or used is None else min(budget.max_bytes, used + free - budget.floor.floor)
        return {"written_bytes": written, "over_s": round(span or 0.0), "per_day_bytes": round(per_day),
                "max_bytes": budget.max_bytes, "used_bytes": used, "free_bytes": free,
                "min_free_bytes": budget.floor.floor, "room_bytes": max(room, 0),
                "days": round(max(room, 0) / per_day, 1) if per_day > 0 else None}

    def _written(self, after: float) -> tuple[int, float | None]:
        try:
            return self.recordings.index.written_since(after)
        except sqlite3.OperationalError as exc:  # before the recorder made its tables; any other error is a bug
            if "no such table" not in str(exc):
                raise
            return 0, None


def _camera_keys(keys: Iterable[str], key: str) -> bool:
    """Whether a camera's `key` is among the changed keys (cameras.<id>.<key>)."""
    return any(camera_key(k) == key for k in keys)
