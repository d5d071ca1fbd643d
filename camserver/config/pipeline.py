"""What happens to frames: [motion] (which frames are detected) and [events] (what detections become)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from .checks import FROZEN, Bool, FrozenDict, Float, Int, Labels, Table, problem
from .shapes import FilterConfig, MaskConfig, MotionMaskConfig, ZoneConfig


class EventsConfig(Table):
    """Turning detections into events: which labels, how sure, how long, and zones."""

    enabled: Bool = Field(True, description="`false`: no tracking, no history, no `/api/events`.")
    labels: Labels = Field(("person",), description="Labels that become events; `[\"*\"]` = every label.")
    min_score: Float = Field(0.5, ge=0.0, le=1.0, description="Detections below this score are ignored.")
    threshold: Float = Field(0.7, ge=0.0, le=1.0, description="An object becomes an event once the median of its "
                             "recent scores reaches this.")
    max_disappeared_s: Float = Field(5.0, ge=0.1, le=3600, description="An event ends this long after its object was "
                                     "last seen.")
    stationary_s: Float = Field(10.0, ge=0.1, le=86400, description="An object that has not moved this long is stationary.")
    update_interval_s: Float = Field(60.0, ge=1.0, le=86400, description="Heartbeat: an update this often while "
                                     "nothing else changes.")
    cooldown_s: Float = Field(0.0, ge=0.0, le=86400, description="A new event of the same camera and label within "
                              "this many seconds of the last one's end is stored but not announced.")
    zones: tuple[ZoneConfig, ...] = Field((), description="`[[events.zones]]`: named polygons of a camera's frame; an "
                                          "object is in a zone when the bottom centre of its box is.")
    # label -> limits; read with dict(config.filters)
    filters: Annotated[dict[str, FilterConfig], FROZEN] = Field(FrozenDict(), description="`[events.filters.<label>]`: limits for one label's "
                                             "detections, applied before tracking.")
    masks: tuple[MaskConfig, ...] = Field((), description="`[[events.masks]]`: object masks; a detection whose box's "
                                          "bottom centre lies inside is dropped.")

    @model_validator(mode="after")
    def _zones_once_and_filters_of_known_labels(self) -> EventsConfig:
        seen: set[tuple[str, str]] = set()
        for i, zone in enumerate(self.zones):
            if (zone.camera, zone.name) in seen:
                raise problem(f"zone of camera {zone.camera!r} defined twice", f".zones[{i}].name", zone.name)
            seen.add((zone.camera, zone.name))
        if "*" not in self.labels:
            for label in self.filters:
                if label not in self.labels:
                    raise problem(f"label not in events.labels ({', '.join(self.labels)})", f".filters.{label}",
                                  f"[events.filters.{label}]")
        return self


class MotionConfig(Table):
    """Motion detection: the detector runs only on frames where something moves (Frigate's names)."""

    enabled: Bool = Field(True, description="Detect only frames where something moves; `false`: every frame goes to "
                          "the detector.")
    threshold: Int = Field(30, ge=1, le=255, description="Grey levels a pixel must differ from the background to "
                           "count as changed.")
    contour_area: Int = Field(10, ge=0, le=100000, description="Smallest moving area, in pixels of the 100-row picture.")
    improve_contrast: Bool = Field(True, description="Stretch each frame's contrast before comparing.")
    lightning_threshold: Float = Field(0.8, ge=0.3, le=1.0, description="A change over this share of the frame resets "
                                       "the background instead of being motion.")
    # seconds between detections of a camera with no motion: stationary objects are re-checked,
    # and a scene that changed slowly is caught
    recheck_s: Float = Field(5.0, ge=0.1, le=86400, description="Seconds between detections of a camera without "
                             "motion (stationary objects, slow changes).")
    mqtt_off_delay_s: Float = Field(30.0, ge=0.0, le=86400, description="MQTT motion turns `OFF` this long after the "
                                    "last motion.")
    masks: tuple[MotionMaskConfig, ...] = Field((), description="`[[motion.masks]]`: motion inside is ignored (a tree, "
                                                "a timestamp overlay).")

