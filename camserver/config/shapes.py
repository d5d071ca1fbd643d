"""Zones, masks and object filters: polygons and per-label limits, parsed once from their tables."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .checks import CAMERA_ID, ZONE_NAME_RE, ConfigError, Points, _labels, _number, _points, _table


@dataclass(frozen=True)
class ZoneConfig:
    """One [[events.zones]] entry: a named polygon of one camera's frame, in relative coordinates (0..1)."""

    camera: str
    name: str
    points: Points
    labels: frozenset[str] = frozenset()  # empty: every label counts


def _zones(entries: Any, prefix: str) -> tuple[ZoneConfig, ...]:
    """[[events.zones]]: camera, name, points, optional labels; each (camera, name) once."""
    if not isinstance(entries, list):
        raise ConfigError(prefix, type(entries).__name__, "must be a list of tables ([[events.zones]])")
    zones: list[ZoneConfig] = []
    for i, entry in enumerate(entries):
        key = f"{prefix}[{i}]"
        zone = _table(entry, key, ("camera", "name", "points"), ("labels",))
        if problem := CAMERA_ID(zone["camera"]):
            raise ConfigError(f"{key}.camera", zone["camera"], problem)
        if not isinstance(zone["name"], str) or not ZONE_NAME_RE.match(zone["name"]):
            raise ConfigError(f"{key}.name", zone["name"], "must be letters, digits, '-' or '_', 1 to 32 characters")
        labels = zone.get("labels", ["*"])
        if problem := _labels(labels):
            raise ConfigError(f"{key}.labels", labels, problem)
        if any(z.camera == zone["camera"] and z.name == zone["name"] for z in zones):
            raise ConfigError(f"{key}.name", zone["name"], f"zone of camera {zone['camera']!r} defined twice")
        zones.append(ZoneConfig(zone["camera"], zone["name"], _points(zone["points"], f"{key}.points"),
                                frozenset() if "*" in labels else frozenset(labels)))
    return tuple(zones)


@dataclass(frozen=True)
class MaskConfig:
    """One [[motion.masks]] or [[events.masks]] entry: a polygon of one camera's frame (relative, 0..1)."""

    camera: str
    points: Points
    labels: frozenset[str] = frozenset()  # object masks only; empty: every label


def _masks(with_labels: bool) -> Callable[[Any, str], tuple[MaskConfig, ...]]:
    """A parser of [[<table>.masks]]: camera, points and (object masks) optional labels."""

    def parse(entries: Any, prefix: str) -> tuple[MaskConfig, ...]:
        if not isinstance(entries, list):
            raise ConfigError(prefix, type(entries).__name__, f"must be a list of tables ([[{prefix}]])")
        masks = []
        for i, entry in enumerate(entries):
            key = f"{prefix}[{i}]"
            mask = _table(entry, key, ("camera", "points"), ("labels",) if with_labels else ())
            if problem := CAMERA_ID(mask["camera"]):
                raise ConfigError(f"{key}.camera", mask["camera"], problem)
            labels = mask.get("labels", ["*"])
            if problem := _labels(labels):
                raise ConfigError(f"{key}.labels", labels, problem)
            masks.append(MaskConfig(mask["camera"], _points(mask["points"], f"{key}.points"),
                                    frozenset() if "*" in labels else frozenset(labels)))
        return tuple(masks)

    return parse


@dataclass(frozen=True)
class FilterConfig:
    """[events.filters.<label>]: limits for one label's detections; None means no limit."""

    min_area: float | None = None  # pixels, or a fraction of the frame when <= 1
    max_area: float | None = None
    min_ratio: float | None = None  # width / height
    max_ratio: float | None = None
    min_score: float | None = None
    threshold: float | None = None  # the median score an object of this label needs to become an event


FILTER_KEYS = tuple(f.name for f in dataclasses.fields(FilterConfig))


def _filters(tables: Any, prefix: str) -> tuple[tuple[str, FilterConfig], ...]:
    """[events.filters.<label>] tables, each checked: numbers, scores from 0 to 1, min <= max."""
    if not isinstance(tables, Mapping):
        raise ConfigError(prefix, type(tables).__name__, "must be tables [events.filters.<label>]")
    parsed = []
    for label, table in tables.items():
        key = f"{prefix}.{label}"
        if not isinstance(table, Mapping):
            raise ConfigError(key, type(table).__name__, f"must be a table of {', '.join(FILTER_KEYS)}")
        _table(table, key, (), FILTER_KEYS)
        for name, value in table.items():
            if name in ("min_score", "threshold"):
                check = _number(float, 0.0, 1.0)
            elif name.endswith("_ratio"):
                check = _number(float, 0.001)
            else:
                check = _number(float, 0.0)
            if problem := check(value):
                raise ConfigError(f"{key}.{name}", value, problem)
        f = FilterConfig(**{name: float(value) for name, value in table.items()})
        for lo, hi in (("min_area", "max_area"), ("min_ratio", "max_ratio")):
            a, b = getattr(f, lo), getattr(f, hi)
            # areas compare only when both are pixels or both are fractions of the frame (<= 1)
            if a is not None and b is not None and a > b and (lo != "min_area" or (a <= 1) == (b <= 1)):
                raise ConfigError(f"{key}.{lo}", a, f"is larger than {hi} ({b})")
        parsed.append((label, f))
    return tuple(parsed)
