"""Zones: named polygons in relative coordinates (0-1), so they survive a frame-size change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable


@dataclass(frozen=True)
class Zone:
    """One named area of one camera's frame; `labels` empty means every label counts."""

    camera: str
    name: str
    points: tuple[tuple[float, float], ...]
    labels: frozenset[str] = frozenset()

    def contains(self, x: float, y: float) -> bool:
        """Whether the relative point (x, y) is inside the polygon (ray casting; edges count as inside)."""
        inside = False
        pts = self.points
        for i, (x1, y1) in enumerate(pts):
            x2, y2 = pts[i - 1]
            if (y1 > y) != (y2 > y):
                cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
                if x <= cross:
                    inside = not inside
        return inside

    def counts(self, label: str) -> bool:
        """Whether this zone counts objects of `label`."""
        return not self.labels or label in self.labels


def zones_from_config(entries: Iterable[Any]) -> dict[str, list[Zone]]:
    """The validated [[events.zones]] entries, grouped by camera."""
    by_camera: dict[str, list[Zone]] = {}
    for e in entries:
        zone = Zone(e["camera"], e["name"], tuple((float(x), float(y)) for x, y in e["points"]),
                    frozenset(e.get("labels", ())))
        by_camera.setdefault(zone.camera, []).append(zone)
    return by_camera


def zones_of(box: tuple[float, float, float, float], size: tuple[int, int], label: str, zones: list[Zone]) -> list[str]:
    """Names of the zones holding the bottom centre of `box` (pixels) in a frame of `size` (w, h)."""
    w, h = size
    x, y = (box[0] + box[2]) / 2 / w, box[3] / h
    return [z.name for z in zones if z.counts(label) and z.contains(x, y)]
