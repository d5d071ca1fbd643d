"""Zones, masks and object filters: polygons and per-label limits, one model per table."""

from __future__ import annotations

from pydantic import Field, model_validator

from .checks import Float, LabelSet, PolygonPoints, Points, Table, ZoneName, CameraId, problem

POINTS_DOC = "3 or more `[x, y]` pairs, relative to the frame (0 to 1)."


class ZoneConfig(Table):
    """One [[events.zones]] entry: a named polygon of one camera's frame, in relative coordinates (0..1)."""

    camera: CameraId = Field(description="The camera the zone belongs to.")
    name: ZoneName = Field(description="The zone's name (letters, digits, `-`, `_`; 1 to 32), unique per camera.")
    points: PolygonPoints = Field(description=POINTS_DOC)
    labels: LabelSet = Field(frozenset(), description="Labels the zone counts; left out = every label.")


class MotionMaskConfig(Table):
    """One [[motion.masks]] entry: a polygon of one camera's frame (relative, 0..1); motion inside is ignored."""

    camera: CameraId = Field(description="The camera the mask belongs to.")
    points: PolygonPoints = Field(description=POINTS_DOC)


class MaskConfig(MotionMaskConfig):
    """One [[events.masks]] entry: an object mask; a detection whose box's bottom centre lies inside is dropped."""

    labels: LabelSet = Field(frozenset(), description="Labels the mask drops; left out = every label.")


class FilterConfig(Table):
    """[events.filters.<label>]: limits for one label's detections; None means no limit."""

    min_area: Float | None = Field(None, ge=0.0, description="Smallest box: pixels, or a fraction of the frame when <= 1.")
    max_area: Float | None = Field(None, ge=0.0, description="Largest box: pixels, or a fraction of the frame when <= 1.")
    min_ratio: Float | None = Field(None, ge=0.001, description="Smallest width / height of the box.")
    max_ratio: Float | None = Field(None, ge=0.001, description="Largest width / height of the box.")
    min_score: Float | None = Field(None, ge=0.0, le=1.0, description="`events.min_score` for this label.")
    # the median score an object of this label needs to become an event
    threshold: Float | None = Field(None, ge=0.0, le=1.0, description="`events.threshold` for this label.")

    @model_validator(mode="after")
    def _min_below_max(self) -> FilterConfig:
        for lo, hi in (("min_area", "max_area"), ("min_ratio", "max_ratio")):
            a, b = getattr(self, lo), getattr(self, hi)
            # areas compare only when both are pixels or both are fractions of the frame (<= 1)
            if a is not None and b is not None and a > b and (lo != "min_area" or (a <= 1) == (b <= 1)):
                raise problem(f"is larger than {hi} ({b})", f".{lo}", a)
        return self


FILTER_KEYS = tuple(FilterConfig.model_fields)
__all__ = ["FILTER_KEYS", "FilterConfig", "MaskConfig", "MotionMaskConfig", "Points", "ZoneConfig"]
