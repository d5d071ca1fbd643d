"""Object filters and object masks: detections that are not worth tracking are dropped before the tracker.

Per label (`[events.filters.<label>]`): box area (pixels, or a fraction of the frame when <= 1),
width / height ratio, a minimum score, and the event threshold. Object masks (`[[events.masks]]`)
drop a detection whose box's bottom centre lies inside: where an object stands, not what it
overlaps (Frigate's semantics), so a person walking past a masked parked-car spot is kept.
"""

from __future__ import annotations

from typing import Iterable

from ..config import EventsConfig, FilterConfig
from ..detect.base import Detection
from .zones import contains


def within(limits: FilterConfig, box: tuple[float, float, float, float], frame_area: float) -> bool:
    """Whether a box is inside a label's area and ratio limits."""
    w, h = box[2] - box[0], box[3] - box[1]
    area = w * h
    if limits.min_area is not None and area < _pixels(limits.min_area, frame_area):
        return False
    if limits.max_area is not None and area > _pixels(limits.max_area, frame_area):
        return False
    if limits.min_ratio is not None or limits.max_ratio is not None:
        ratio = w / h if h > 0 else float("inf")
        if limits.min_ratio is not None and ratio < limits.min_ratio:
            return False
        if limits.max_ratio is not None and ratio > limits.max_ratio:
            return False
    return True


def _pixels(limit: float, frame_area: float) -> float:
    return limit * frame_area if limit <= 1 else limit


class ObjectFilter:
    """One camera's label filters, minimum scores and object masks."""

    def __init__(self, config: EventsConfig, camera: str) -> None:
        self.labels = None if "*" in config.labels else frozenset(config.labels)
        self.min_score = config.min_score
        self.threshold = config.threshold
        self.filters = dict(config.filters)
        self.masks = [m for m in config.masks if m.camera == camera]

    def score_floor(self, label: str) -> float:
        """The lowest score a detection of `label` may have to be tracked."""
        f = self.filters.get(label)
        return f.min_score if f is not None and f.min_score is not None else self.min_score

    def threshold_of(self, label: str) -> float:
        """The median score an object of `label` must reach to become an event."""
        f = self.filters.get(label)
        return f.threshold if f is not None and f.threshold is not None else self.threshold

    def keeps(self, d: Detection, size: tuple[int, int]) -> bool:
        """Whether a detection passes the label list, its label's filter and the camera's object masks."""
        if self.labels is not None and d.class_name not in self.labels:
            return False
        if d.confidence < self.score_floor(d.class_name):
            return False
        f = self.filters.get(d.class_name)
        if f is not None and not within(f, d.box, size[0] * size[1]):
            return False
        if self.masks:
            x, y = (d.box[0] + d.box[2]) / 2 / size[0], d.box[3] / size[1]
            if any((not m.labels or d.class_name in m.labels) and contains(m.points, x, y) for m in self.masks):
                return False
        return True

    def apply(self, detections: Iterable[Detection], size: tuple[int, int]) -> list[Detection]:
        """The detections worth tracking."""
        return [d for d in detections if self.keeps(d, size)]
