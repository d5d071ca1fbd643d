"""The recorder as the events engine's `Clips` port (events/shape.py): each change starts or ends
a clip, and a query says which events have one, so no consumer depends on hearing a change after
the recorder did.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ..events.rules import Change
from ..events.shape import clip_path
from .recorder import Recorder

REMEMBER = 4096  # events whose clip state is kept (open ones, and the last ended); older ones ask the history


class EventClips:
    """Follows event changes for the recorder; `clip_url` answers from what it followed."""

    def __init__(self, recorder: Recorder, remember: int = REMEMBER) -> None:
        self.recorder = recorder
        self.remember = remember
        self._has: OrderedDict[str, bool] = OrderedDict()  # event id -> whether it has a clip

    def follow(self, change: Change) -> None:
        """A new event starts its clip, an ended one (deleted too: its span can close) ends it."""
        event = change.after
        if change.type == "new":
            self.recorder.event_started(event["camera"], event["id"], _steady(change, "start_time"), event["start_time"])
            self._set(event["id"], self.recorder.mode_of(event["camera"]) != "off")
        elif change.type == "end":
            has = self.recorder.event_ended(event["camera"], event["id"], _steady(change, "end_time"), event["end_time"])
            self._set(event["id"], has and event.get("end_reason") != "deleted")

    def clip_url(self, event: dict[str, Any]) -> str | None:
        """The URL of the event's clip if the recorder records (or recorded) one for it, else None."""
        if event.get("end_reason") == "deleted":
            return None
        return clip_path(event["id"]) if self._has.get(event["id"]) else None

    def _set(self, event_id: str, has: bool) -> None:
        self._has[event_id] = has
        self._has.move_to_end(event_id)
        while len(self._has) > self.remember:
            self._has.popitem(last=False)


def _steady(change: Change, key: str) -> float:
    """The steady time of the change (`when`), or the event's label of it when a change has none."""
    return float(change.after[key] if change.when is None else change.when)
