"""The one public shape of an event, for every consumer: the live feed, webhooks, MQTT, notifications
and /api/events.

A record is the event's stored JSON plus `clip` (its clip's URL, or null) and `has_clip`; a change
is {"type", "before", "after", "reasons"} with records for before and after. The clip comes from a
query (a `ClipUrl` port: the recorder's for live changes, the recording index's for the history),
never from a stage rewriting a shared dict, so the order the consumers hear a change in never
changes what they get.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from .rules import Change

ClipUrl = Callable[[dict[str, Any]], "str | None"]  # an event record -> its clip's URL, or None


class Clips(Protocol):
    """The recorder, as the events engine sees it: a change starts or ends a clip; which events have one."""

    def follow(self, change: Change) -> None:
        """The recorder's part of a change (a clip starts or ends), before any consumer hears of it."""

    def clip_url(self, event: dict[str, Any]) -> str | None:
        """The URL of the event's clip (recording or recorded), or None."""


def clip_path(event_id: str) -> str:
    """Where the viewer serves an event's clip."""
    return f"/api/events/{event_id}/clip.mp4"


def no_clip(event: dict[str, Any]) -> str | None:
    """The ClipUrl of a server that records nothing."""
    return None


def public_record(event: dict[str, Any], clip: str | None) -> dict[str, Any]:
    """The event as every consumer gets it: a copy with `clip` (URL or None) and `has_clip`."""
    record = dict(event)
    record["clip"] = clip
    record["has_clip"] = clip is not None
    return record


def public_change(change: Change, clip_url: ClipUrl = no_clip) -> dict[str, Any]:
    """The message of a change: type, before and after (public records), reasons."""
    before = None if change.before is None else public_record(change.before, clip_url(change.before))
    return {"type": change.type, "before": before, "after": public_record(change.after, clip_url(change.after)),
            "reasons": list(change.reasons)}


def message(change: Change) -> dict[str, Any]:
    """The public message the events engine built for a change (one built without clips if none was)."""
    return change.message if change.message is not None else public_change(change)


def history_record(record: dict[str, Any]) -> dict[str, Any]:
    """A stored event (with the recording index's has_clip) in the public shape."""
    return public_record(record, clip_path(record["id"]) if record.get("has_clip") else None)
