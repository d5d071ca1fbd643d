"""Event rules for one camera: from tracked objects to events that go new -> update -> end.

An object becomes an event once the median of its last scores (misses count as 0) reaches
`threshold`, so flicker and one-frame false positives never do. An update is sent only when
something a user cares about changed: a clearly better snapshot, a zone entered or left, the
object turning stationary or active, or the heartbeat while it stands still. Times are the
frames' own times (seconds), so rules do not depend on the camera's frame rate.
"""

from __future__ import annotations

import secrets
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from ..config import EventsConfig, ZoneConfig
from ..detect.base import Detection
from .tracker import CameraTracker, Track
from .zones import zones_of

SCORE_WINDOW = 5  # scores kept per object for the median
MIN_HISTORY = 3  # fewer scores are padded with misses: one frame alone never makes an event
MOVED_IOU = 0.8  # a box overlapping its anchor less than this has moved
SNAPSHOT_GAIN = 0.05  # a snapshot is replaced only by one this much more confident
EDGE_PX = 2  # a box this close to the frame's edge is cut off by it


@dataclass
class Event:
    """An event record, as stored and as the API shows it."""

    id: str
    camera: str
    label: str
    score: float
    top_score: float
    box: list[float]
    start_time: float
    end_time: float | None = None
    end_reason: str | None = None
    stationary: bool = False
    current_zones: list[str] = field(default_factory=list)
    entered_zones: list[str] = field(default_factory=list)
    has_snapshot: bool = False
    snapshot_box: list[float] | None = None
    snapshot_score: float = 0.0
    announced: bool = True  # False while the label's cooldown holds: stored, not announced

    def to_json(self) -> dict[str, Any]:
        """JSON-ready copy (by hand: dataclasses.asdict is ten times slower, and this runs per change)."""
        d = dict(self.__dict__)
        for key in ("box", "current_zones", "entered_zones", "snapshot_box"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d


@dataclass
class Change:
    """One step of an event: new, update (with the reasons) or end."""

    type: str
    before: dict[str, Any] | None
    after: dict[str, Any]
    reasons: list[str] = field(default_factory=list)
    snapshot: bytes | None = None  # the camera's JPEG, when the event's best frame changed


@dataclass
class _Object:
    track_id: int
    label: str
    box: tuple[float, float, float, float]
    last_seen: float
    scores: deque[float] = field(default_factory=lambda: deque(maxlen=SCORE_WINDOW))
    anchor_box: tuple[float, float, float, float] | None = None
    anchor_time: float = 0.0
    last_update: float = 0.0
    event: Event | None = None
    deleted: bool = False  # its event was deleted while open: no new event while this track lives


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two x1 y1 x2 y2 boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def touches_edge(box: tuple[float, float, float, float], size: tuple[int, int]) -> bool:
    """Whether the frame's edge cuts the box."""
    return box[0] <= EDGE_PX or box[1] <= EDGE_PX or box[2] >= size[0] - EDGE_PX or box[3] >= size[1] - EDGE_PX


def new_event_id(now: float) -> str:
    """The frame time in ms plus random characters: unique across restarts, sortable by time."""
    return f"{int(now * 1000)}-{secrets.token_hex(3)}"


class CameraRules:
    """Tracks one camera's objects and turns them into events."""

    def __init__(
        self,
        camera: str,
        config: EventsConfig,
        zones: list[ZoneConfig] | None = None,
        tracker: Callable[[float], Any] = CameraTracker,
    ) -> None:
        self.camera = camera
        self.config = config
        self.zones = zones or []
        self.labels = None if "*" in config.labels else set(config.labels)
        self.tracker = tracker(config.max_disappeared_s)
        self.objects: dict[int, _Object] = {}
        self.last_end: dict[str, float] = {}  # label -> end time of its last event (for the cooldown)

    def on_frame(self, now: float, jpeg: bytes, size: tuple[int, int], detections: list[Detection]) -> list[Change]:
        """Feed one processed frame's detections; returns the event changes it causes."""
        wanted = [d for d in detections if d.confidence >= self.config.min_score
                  and (self.labels is None or d.class_name in self.labels)]
        if not wanted and not self.objects:
            return []  # nothing to track, nothing tracked: the common empty frame costs nothing
        tracks = self.tracker.update(wanted, size)
        changes: list[Change] = []
        seen = set()
        for track in tracks:
            seen.add(track.track_id)
            obj = self.objects.get(track.track_id)
            if obj is None:
                obj = self.objects[track.track_id] = _Object(track.track_id, track.label, track.box, now)
                obj.anchor_box, obj.anchor_time = track.box, now
            obj.scores.append(track.score)
            obj.box, obj.last_seen = track.box, now
            if obj.event is not None:
                change = self._update(obj, track, now, jpeg, size)
            else:
                change = None if obj.deleted else self._new(obj, track, now, jpeg, size)
            if change is not None:
                changes.append(change)
        for track_id, obj in self.objects.items():
            if track_id not in seen:
                obj.scores.append(0.0)
        return changes + self.sweep(now)

    def sweep(self, now: float) -> list[Change]:
        """End the events of objects unseen for max_disappeared_s (also when no frame comes)."""
        changes = []
        for track_id, obj in list(self.objects.items()):
            if now - obj.last_seen > self.config.max_disappeared_s:
                del self.objects[track_id]
                if obj.event is not None:
                    changes.append(self._end(obj.event, obj.last_seen, "disappeared"))
        return changes

    def end_all(self, now: float, reason: str) -> list[Change]:
        """End every open event (camera offline, server stopping)."""
        changes = [self._end(obj.event, now, reason) for obj in self.objects.values() if obj.event is not None]
        self.objects.clear()
        return changes

    def forget(self, event_id: str, now: float) -> Change | None:
        """Drop an open event that was deleted; its end (end_reason "deleted") for the listeners, None if not open here.

        The object stays tracked, so it neither brings the event back when it leaves nor starts a
        new one while it stays in view.
        """
        for obj in self.objects.values():
            if obj.event is not None and obj.event.id == event_id:
                change = self._end(obj.event, now, "deleted")
                obj.event, obj.deleted = None, True
                return change
        return None

    def open_events(self) -> list[dict[str, Any]]:
        """The records of the events still open."""
        return [obj.event.to_json() for obj in self.objects.values() if obj.event is not None]

    def _new(self, obj: _Object, track: Track, now: float, jpeg: bytes, size: tuple[int, int]) -> Change | None:
        history = [0.0] * (MIN_HISTORY - len(obj.scores)) + list(obj.scores)
        if statistics.median(history) < self.config.threshold:
            return None
        zones = zones_of(track.box, size, track.label, self.zones)
        event = obj.event = Event(
            id=new_event_id(now), camera=self.camera, label=track.label, score=track.score,
            top_score=track.score, box=[round(v, 1) for v in track.box], start_time=now,
            current_zones=zones, entered_zones=list(zones),
        )
        last_end = self.last_end.get(track.label)
        event.announced = last_end is None or now - last_end >= self.config.cooldown_s
        obj.last_update = now
        snapshot = self._take_snapshot(event, track, jpeg, size)
        return Change("new", None, event.to_json(), snapshot=snapshot)

    def _update(self, obj: _Object, track: Track, now: float, jpeg: bytes, size: tuple[int, int]) -> Change | None:
        event = obj.event
        assert event is not None
        before = event.to_json()
        event.score, event.top_score = track.score, max(event.top_score, track.score)
        event.box = [round(v, 1) for v in track.box]
        reasons = []
        zones = zones_of(track.box, size, track.label, self.zones)
        if zones != event.current_zones:
            event.current_zones = zones
            event.entered_zones += [z for z in zones if z not in event.entered_zones]
            reasons.append("zones")
        assert obj.anchor_box is not None
        if iou(track.box, obj.anchor_box) < MOVED_IOU:
            obj.anchor_box, obj.anchor_time = track.box, now
            if event.stationary:
                event.stationary = False
                reasons.append("active")
        elif not event.stationary and now - obj.anchor_time >= self.config.stationary_s:
            event.stationary = True
            reasons.append("stationary")
        snapshot = None
        if not event.stationary:
            snapshot = self._take_snapshot(event, track, jpeg, size)
            if snapshot is not None:
                reasons.append("snapshot")
        elif not reasons and now - obj.last_update >= self.config.update_interval_s:
            reasons.append("heartbeat")
        if not reasons:
            return None
        obj.last_update = now
        return Change("update", before, event.to_json(), reasons, snapshot)

    def _take_snapshot(self, event: Event, track: Track, jpeg: bytes, size: tuple[int, int]) -> bytes | None:
        """The frame, if it is a clearly better picture of the object than the one kept."""
        cut = touches_edge(track.box, size)
        if event.has_snapshot:
            kept_cut = touches_edge(tuple(event.snapshot_box or ()), size) if event.snapshot_box else True
            better = (kept_cut and not cut) or (cut == kept_cut and track.score >= event.snapshot_score + SNAPSHOT_GAIN)
            if not better:
                return None
        event.has_snapshot = True
        event.snapshot_box = [round(v, 1) for v in track.box]
        event.snapshot_score = track.score
        return jpeg

    def _end(self, event: Event, when: float, reason: str) -> Change:
        before = event.to_json()
        event.end_time, event.end_reason = when, reason
        self.last_end[event.label] = when
        return Change("end", before, event.to_json())
