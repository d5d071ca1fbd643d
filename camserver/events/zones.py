"""Zones: named polygons in relative coordinates (0-1), so they survive a frame-size change.

They are parsed and validated once, into `ZoneConfig`, by the configuration; this module only
answers which zones hold an object.
"""

from __future__ import annotations

from typing import Iterable

from ..config import Points, ZoneConfig


def contains(points: Points, x: float, y: float) -> bool:
    """Whether the relative point (x, y) is inside the polygon (ray casting; edges count as inside)."""
    inside = False
    for i, (x1, y1) in enumerate(points):
        x2, y2 = points[i - 1]
        if (y1 > y) != (y2 > y):
            cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x <= cross:
                inside = not inside
    return inside


def by_camera(zones: Iterable[ZoneConfig]) -> dict[str, list[ZoneConfig]]:
    """The zones grouped by camera."""
    grouped: dict[str, list[ZoneConfig]] = {}
    for zone in zones:
        grouped.setdefault(zone.camera, []).append(zone)
    return grouped


def zones_of(box: tuple[float, float, float, float], size: tuple[int, int], label: str,
             zones: list[ZoneConfig]) -> list[str]:
    """Names of the zones counting `label` that hold the bottom centre of `box` (pixels) in a frame of `size` (w, h)."""
    w, h = size
    x, y = (box[0] + box[2]) / 2 / w, box[3] / h
    return [z.name for z in zones if (not z.labels or label in z.labels) and contains(z.points, x, y)]
