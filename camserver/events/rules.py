"""Event rules for one camera: from tracked objects to events that go new -> update -> end.

An object becomes an event once the median of its last scores (misses count as 0) reaches
`threshold`, so flicker and one-frame false positives never do. An update is sent only when
something a user cares about changed: a clearly better snapshot, a zone entered or left, the
object turning stationary or active, or the heartbeat while it stands still. Times are the
frames' own steady times (seconds, clock.Timeline), so rules depend neither on the camera's frame
rate nor on a wall-clock step; an event's start_time is the wall-clock label of its first frame and
its end_time that label plus the steady time it lasted, so it never ends before it starts.

One event per object, also when objects overlap. The tracker gives a new track id whenever it
loses an object for a moment (a person hidden by another, a parked car split in two boxes by a
person walking in front of it); the rules do not let such a track start a second event:

- a new track of the same label as an event whose object was not seen in this frame, lying where
  that object was heading (its last whole box moved on at its recent speed) or where it stood
  still, continues that event under its id (within max_disappeared_s, as long as the event is open);
- a new track mostly inside the box of an event's object that is still seen is a piece of that
  object and starts no event while it stays inside.

An object has moved when both edges of its box moved the same way beyond a tolerance (or the box
grew or shrank on both axes), not when its box merely changed: a box cut short on one side by
something in front of it is still the same object standing still.
"""

from __future__ import annotations

import secrets
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..config import EventsConfig, ZoneConfig
from ..detect.base import Detection
from .filters import ObjectFilter
from .tracker import CameraTracker, Track
from .zones import zones_of

Box = tuple[float, float, float, float]

SCORE_WINDOW = 5  # scores kept per object for the median
MIN_HISTORY = 3  # fewer scores are padded with misses: one frame alone never makes an event
SHIFT_TOLERANCE = 0.1  # both edges of a box moving this share of its size the same way: it moved
SHIFT_MIN_PX = 2.0  # ... and at least this many pixels (detector jitter)
SCALE_TOLERANCE = 0.2  # a box this much larger or smaller on both axes: it came closer or went away
SAME_OBJECT_OVERLAP = 0.5  # a share of the smaller box inside the other: where the object is or was
SPEED_WINDOW_S = 1.0  # an object's speed is taken over its last second
STILL_S = 1.0  # an object that has not moved for this long stands somewhere (its anchor box)
WHOLE_SHARE = 0.85  # a box this large (width and height) against the trail's largest shows the whole object
TRAIL_LEN = 50  # boxes kept per object to predict where it was heading
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
    steady_start: float = 0.0  # the steady time of start_time (not in the record: a label is what it shows)

    def wall_at(self, when: float) -> float:
        """The wall-clock label of steady time `when` during this event: its start label plus the time since."""
        return self.start_time + max(0.0, when - self.steady_start)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready copy (by hand: dataclasses.asdict is ten times slower, and this runs per change)."""
        d = dict(self.__dict__)
        del d["steady_start"]
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
    when: float | None = None  # the steady time it is about: the start (new), the end (end), the frame (update)
    at: float | None = None  # the wall-clock label of `when` (the event's own: start label + steady time since)
    message: dict[str, Any] | None = None  # what every consumer gets (events/shape.py), set by the engine


@dataclass
class _Object:
    track_id: int
    label: str
    box: Box
    last_seen: float
    scores: deque[float] = field(default_factory=lambda: deque(maxlen=SCORE_WINDOW))
    anchor_box: Box = (0.0, 0.0, 0.0, 0.0)  # where it stands still (the box when it last moved)
    anchor_time: float = 0.0  # when it last moved
    last_update: float = 0.0
    event: Event | None = None
    deleted: bool = False  # its event was deleted while open: no new event while this track lives
    trail: deque[tuple[float, Box]] = field(default_factory=lambda: deque(maxlen=TRAIL_LEN))  # (time, box)

    def predicted(self, now: float) -> Box:
        """Where the object should be at `now`: its last whole box moved on at its recent speed.

        Only boxes about as large as the largest of the trail count: while something passes in front
        of the object its box shrinks on one side, and that box's centre and speed would lag behind.
        """
        if not self.trail:
            return self.box
        max_w = max(b[2] - b[0] for _, b in self.trail)
        max_h = max(b[3] - b[1] for _, b in self.trail)
        whole = [(t, b) for t, b in self.trail if b[2] - b[0] >= WHOLE_SHARE * max_w and b[3] - b[1] >= WHOLE_SHARE * max_h]
        t1, b1 = whole[-1]
        t0, b0 = next((t, b) for t, b in whole if t1 - t <= SPEED_WINDOW_S)
        vx = vy = 0.0
        if t1 > t0:
            vx = ((b1[0] + b1[2]) - (b0[0] + b0[2])) / 2 / (t1 - t0)
            vy = ((b1[1] + b1[3]) - (b0[1] + b0[3])) / 2 / (t1 - t0)
        dx, dy = vx * (now - t1), vy * (now - t1)
        return (b1[0] + dx, b1[1] + dy, b1[2] + dx, b1[3] + dy)


def overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """The share of the smaller of two boxes that lies inside the other."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller if smaller > 0 else 0.0


def inside(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """The share of box `a` that lies inside box `b`."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1])
    return ix * iy / area if area > 0 else 0.0


def moved(anchor: Box, box: Box) -> bool:
    """Whether `box` shows the object moved away from `anchor`.

    A move shifts both edges of an axis the same way (or scales the box on both axes); a box that
    only lost or regained one side (something passing in front, the detector splitting the object)
    has not moved.
    """
    aw, ah = anchor[2] - anchor[0], anchor[3] - anchor[1]
    if aw <= 0 or ah <= 0:
        return True
    tx, ty = max(SHIFT_MIN_PX, SHIFT_TOLERANCE * aw), max(SHIFT_MIN_PX, SHIFT_TOLERANCE * ah)
    for d1, d2, tol in ((box[0] - anchor[0], box[2] - anchor[2], tx), (box[1] - anchor[1], box[3] - anchor[3], ty)):
        if (d1 > tol and d2 > tol) or (d1 < -tol and d2 < -tol):
            return True
    sw, sh = (box[2] - box[0]) / aw, (box[3] - box[1]) / ah
    return (sw > 1 + SCALE_TOLERANCE and sh > 1 + SCALE_TOLERANCE) or (sw < 1 - SCALE_TOLERANCE and sh < 1 - SCALE_TOLERANCE)


def touches_edge(box: Sequence[float], size: tuple[int, int]) -> bool:
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
        self.filter = ObjectFilter(config, camera)
        self.tracker = tracker(config.max_disappeared_s)
        self.objects: dict[int, _Object] = {}
        self.last_end: dict[str, float] = {}  # label -> end time of its last event (for the cooldown)
        self.visible: set[int] = set()  # track ids seen in the last processed frame
        self.moving = False  # an object seen in the last processed frame is still moving (the motion gate reads it)

    def reshape(self, config: EventsConfig, zones: list[ZoneConfig] | None) -> None:
        """New zones, masks and filters; what is tracked stays tracked (an event's zones follow from its next frame)."""
        self.config = config
        self.zones = zones or []
        self.filter = ObjectFilter(config, camera=self.camera)

    def on_frame(self, now: float, jpeg: bytes, size: tuple[int, int], detections: list[Detection],
                 wall: float | None = None) -> list[Change]:
        """Feed one processed frame's detections (steady time `now`, wall-clock label `wall`, default `now`)."""
        wanted = self.filter.apply(detections, size)
        if not wanted and not self.objects:
            self.visible, self.moving = set(), False
            return []  # nothing to track, nothing tracked: the common empty frame costs nothing
        tracks = self.tracker.update(wanted, size, now)
        seen: dict[int, tuple[_Object, Track]] = {}
        for track in tracks:
            obj = self.objects.get(track.track_id)
            if obj is None:
                obj = self.objects[track.track_id] = _Object(track.track_id, track.label, track.box, now)
                obj.anchor_box, obj.anchor_time = track.box, now
            elif moved(obj.anchor_box, track.box):
                obj.anchor_box, obj.anchor_time = track.box, now
            obj.scores.append(track.score)
            obj.box, obj.last_seen = track.box, now
            obj.trail.append((now, track.box))
            seen[track.track_id] = (obj, track)
        for track_id, obj in self.objects.items():
            if track_id not in seen:
                obj.scores.append(0.0)
        self._continue_events(now, seen)
        changes: list[Change] = []
        for obj, track in seen.values():
            if obj.event is not None:
                change = self._update(obj, track, now, jpeg, size)
            else:  # an object whose event was deleted while open makes none again
                change = None if obj.deleted else self._new(obj, track, now, jpeg, size, seen,
                                                            now if wall is None else wall)
            if change is not None:
                changes.append(change)
        self.visible = set(seen)
        self.moving = any(now - obj.anchor_time < self.config.stationary_s for obj, _ in seen.values())
        return changes + self.sweep(now)

    def on_held(self, now: float) -> list[Change]:
        """A frame the motion gate kept from the detector: nothing moved, so what was seen is still there.

        The objects of the last processed frame count as seen now (a parked car stays while the
        detector rests), their stationary timers run on, and events of objects already gone end.
        """
        changes: list[Change] = []
        for track_id in self.visible:
            obj = self.objects.get(track_id)
            if obj is None:
                continue
            obj.last_seen = now
            event = obj.event
            if event is None:
                continue
            reasons = []
            if not event.stationary and now - obj.anchor_time >= self.config.stationary_s:
                before = event.to_json()
                event.stationary = True
                reasons.append("stationary")
            elif event.stationary and now - obj.last_update >= self.config.update_interval_s:
                before = event.to_json()
                reasons.append("heartbeat")
            if reasons:
                obj.last_update = now
                changes.append(Change("update", before, event.to_json(), reasons, when=now, at=event.wall_at(now)))
        self.moving = any(now - self.objects[i].anchor_time < self.config.stationary_s
                          for i in self.visible if i in self.objects)
        return changes + self.sweep(now)

    def sweep(self, now: float) -> list[Change]:
        """End the events of objects unseen for max_disappeared_s (also when no frame comes)."""
        changes = []
        for track_id, obj in list(self.objects.items()):
            if now - obj.last_seen > self.config.max_disappeared_s:
                del self.objects[track_id]
                self.visible.discard(track_id)
                if obj.event is not None:
                    changes.append(self._end(obj.event, obj.last_seen, "disappeared"))
        return changes

    def end_all(self, now: float, reason: str) -> list[Change]:
        """End every open event (camera offline, server stopping)."""
        changes = [self._end(obj.event, now, reason) for obj in self.objects.values() if obj.event is not None]
        self.objects.clear()
        self.visible, self.moving = set(), False
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

    def _continue_events(self, now: float, seen: dict[int, tuple[_Object, Track]]) -> None:
        """Give the events of objects not seen in this frame to new tracks where those objects are or were heading.

        An object whose event was deleted passes that on the same way, so it starts no new event.
        """
        lost = [obj for track_id, obj in self.objects.items()
                if (obj.event is not None or obj.deleted) and track_id not in seen]
        if not lost:
            return
        fresh = [obj for obj, _ in seen.values() if obj.event is None and not obj.deleted]
        pairs = []
        for old in lost:
            heading = old.predicted(now)
            # where it stood counts only for an object that stood still (a parked car hidden in part);
            # a person who walked out of the frame is not back because someone else walks in there
            stood = old.last_seen - old.anchor_time >= STILL_S
            for obj in fresh:
                if obj.label == old.label:
                    fit = max(overlap(obj.box, heading), overlap(obj.box, old.anchor_box) if stood else 0.0)
                    if fit >= SAME_OBJECT_OVERLAP:
                        pairs.append((fit, old.track_id, obj.track_id))
        taken: set[int] = set()
        for _, old_id, new_id in sorted(pairs, reverse=True):
            if old_id in taken or new_id in taken:
                continue
            taken |= {old_id, new_id}
            old, obj = self.objects.pop(old_id), self.objects[new_id]
            obj.event, obj.last_update, obj.deleted = old.event, old.last_update, old.deleted
            if moved(old.anchor_box, obj.box):
                obj.anchor_box, obj.anchor_time = obj.box, now
            else:  # the same place: it has stood still since the old track's anchor
                obj.anchor_box, obj.anchor_time = old.anchor_box, old.anchor_time
            self.visible.discard(old_id)

    def _part_of_event(self, obj: _Object, seen: dict[int, tuple[_Object, Track]]) -> bool:
        """Whether `obj` lies mostly inside an object of its label that has an event (or had one deleted) and is seen now."""
        return any((other.event is not None or other.deleted) and other.label == obj.label and other is not obj
                   and max(inside(obj.box, other.box), inside(obj.box, other.anchor_box)) >= SAME_OBJECT_OVERLAP
                   for other, _ in seen.values())

    def _new(self, obj: _Object, track: Track, now: float, jpeg: bytes, size: tuple[int, int],
             seen: dict[int, tuple[_Object, Track]], wall: float) -> Change | None:
        history = [0.0] * (MIN_HISTORY - len(obj.scores)) + list(obj.scores)
        if statistics.median(history) < self.filter.threshold_of(track.label):
            return None
        if self._part_of_event(obj, seen):
            return None  # a second box over an object that has its event: a piece of it, not a new object
        zones = zones_of(track.box, size, track.label, self.zones)
        event = obj.event = Event(
            id=new_event_id(wall), camera=self.camera, label=track.label, score=track.score,
            top_score=track.score, box=[round(v, 1) for v in track.box], start_time=wall,
            current_zones=zones, entered_zones=list(zones), steady_start=now,
        )
        last_end = self.last_end.get(track.label)
        event.announced = last_end is None or now - last_end >= self.config.cooldown_s
        obj.last_update = now
        snapshot = self._take_snapshot(event, track, jpeg, size)
        return Change("new", None, event.to_json(), snapshot=snapshot, when=now, at=wall)

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
        if event.stationary and obj.anchor_time == now:  # it moved in this frame
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
        return Change("update", before, event.to_json(), reasons, snapshot, when=now, at=event.wall_at(now))

    def _take_snapshot(self, event: Event, track: Track, jpeg: bytes, size: tuple[int, int]) -> bytes | None:
        """The frame, if it is a clearly better picture of the object than the one kept."""
        cut = touches_edge(track.box, size)
        if event.has_snapshot:
            kept_cut = touches_edge(event.snapshot_box, size) if event.snapshot_box else True
            better = (kept_cut and not cut) or (cut == kept_cut and track.score >= event.snapshot_score + SNAPSHOT_GAIN)
            if not better:
                return None
        event.has_snapshot = True
        event.snapshot_box = [round(v, 1) for v in track.box]
        event.snapshot_score = track.score
        return jpeg

    def _end(self, event: Event, when: float, reason: str) -> Change:
        before = event.to_json()
        event.end_time, event.end_reason = event.wall_at(when), reason
        self.last_end[event.label] = when  # steady: the cooldown is a duration
        return Change("end", before, event.to_json(), when=max(when, event.steady_start), at=event.end_time)
