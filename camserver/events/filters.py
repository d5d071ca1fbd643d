"""Object filters and object masks: detections that are not worth tracking are dropped before the tracker.

Per label (`[events.filters.<label>]`): box area (pixels, or a fraction of the frame when <= 1),
width / height ratio, a minimum score, and the event threshold. Object masks (`[[events.masks]]`)
drop a detection whose box's bottom centre lies inside: where an object stands, not what it
overlaps (Frigate's semantics), so a person walking past a masked parked-car spot is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..config import EventsConfig
from ..detect.base import Detection
from .zones import Zone


@dataclass(frozen=True)
class LabelFilter:
    """Limits for one label's detections; None means no limit."""

    min_area: float | None = None  # pixels, or a fraction of the frame when <= 1
    max_area: float | None = None
    min_ratio: float | None = None  # width / height
    max_ratio: float | None = None
    min_score: float | None = None
    threshold: float | None = None

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> LabelFilter:
        """From a validated [events.filters.<label>] table."""
        return cls(**{k: float(v) for k, v in table.items()})

    def keeps(self, box: tuple[float, float, float, float], frame_area: float) -> bool:
        """Whether a box of this label is inside the area and ratio limits."""
        w, h = box[2] - box[0], box[3] - box[1]
        area = w * h
        if self.min_area is not None and area < _pixels(self.min_area, frame_area):
            return False
        if self.max_area is not None and area > _pixels(self.max_area, frame_area):
            return False
        if self.min_ratio is not None or self.max_ratio is not None:
            ratio = w / h if h > 0 else float("inf")
            if self.min_ratio is not None and ratio < self.min_ratio:
                return False
            if self.max_ratio is not None and ratio > self.max_ratio:
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
        self.filters = {label: LabelFilter.from_table(table) for label, table in config.filters}
        self.masks = masks_of(config.masks, camera)

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
        if f is not None and not f.keeps(d.box, size[0] * size[1]):
            return False
        if self.masks:
            x, y = (d.box[0] + d.box[2]) / 2 / size[0], d.box[3] / size[1]
            if any(m.counts(d.class_name) and m.contains(x, y) for m in self.masks):
                return False
        return True

    def apply(self, detections: Iterable[Detection], size: tuple[int, int]) -> list[Detection]:
        """The detections worth tracking."""
        return [d for d in detections if self.keeps(d, size)]


def masks_of(entries: Iterable[Any], camera: str) -> list[Zone]:
    """The validated [[events.masks]] entries of one camera, as polygons."""
    return [Zone(camera, f"mask-{i}", tuple((float(x), float(y)) for x, y in e["points"]), frozenset(e.get("labels", ())))
            for i, e in enumerate(entries) if e["camera"] == camera]
