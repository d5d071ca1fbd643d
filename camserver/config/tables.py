"""The configuration: one frozen pydantic model per TOML table (server.py, pipeline.py, outputs.py, shapes.py),
the per-camera tables, and `Config`, the whole file. The models are the schema: `Config.model_json_schema()`
is what `--config-schema` prints, and the docs' configuration reference is generated from their fields."""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, Mapping

from pydantic import ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, create_model, model_validator

from .checks import CAMERA_ID_RE, FROZEN, LOWER, Allowed, CameraIds, CameraName, GroupName, FrozenDict, Inline, Table, problem
from .outputs import (DEFAULT_X264_PARAMS, MUTE_HOLDS, NOTIFY_ATTACH, RECORD_MODES, X264_PRESETS, LogConfig, RecordMode,
                      MqttConfig, MuteConfig, NotifyConfig, RecordConfig, StorageConfig, WebhookConfig)
from .pipeline import EventsConfig, MotionConfig
from .server import BACKENDS, DEVICE_RE, ROLES, DetectConfig, HttpConfig, IngestConfig, UserConfig
from .shapes import FilterConfig, MaskConfig, MotionMaskConfig, ZoneConfig


def _override(name: str) -> Any:
    """A [motion] key as [cameras.<id>.motion] takes it: the same type and bounds, None when not given."""
    f = MotionConfig.model_fields[name]
    kind: Any = f.annotation  # a type form mypy cannot | with None, though every annotation here can
    return (Annotated[(kind | None, *f.metadata)], Field(None, description=f.description))


class _CameraMotionBase(Table):
    """[cameras.<id>.motion]'s checks beyond its keys' own."""

    @model_validator(mode="before")
    @classmethod
    def _no_masks(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "masks" in data:
            raise problem("motion masks go in [[motion.masks]] with camera = ...", ".masks", "...")
        return data


# [cameras.<id>.motion]: every [motion] key but masks, each optional
CameraMotion = create_model("CameraMotion", __base__=_CameraMotionBase,
                            **{n: _override(n) for n in MotionConfig.model_fields if n != "masks"})

Setting = StrictBool | StrictInt | StrictFloat | StrictStr


class CameraTables(Table):
    """[cameras.<id>]: what one camera does differently: its name, recording mode, motion and board settings.

    `motion` holds only the keys given (validated like [motion]); `settings` the board settings as
    written (checked against the control table by the board stage, which owns it).
    """

    name: CameraName | None = Field(None, description="The name the page shows for the camera (its id stays in "
                                    "URLs, topics and files); the id when unset.")
    record: Annotated[RecordMode, LOWER] | None = Field(None, description="This camera's recording mode (off, events, "
                                                        "motion, continuous); `[record] mode` when unset.")

    motion: CameraMotion = Field(default_factory=CameraMotion,
                                 description="Any `[motion]` key but `masks`, for that camera only.")
    settings: Annotated[dict[str, Setting], FROZEN, Allowed(
        'a table of board settings, e.g. brightness = 1, vflip = true, framesize = "SVGA"')] = Field(
        FrozenDict(), description="Board settings kept for that camera and sent on every hello; they win over what "
                                  "was set from the page.")


def _cameras_schema(schema: dict[str, Any]) -> None:
    """In the file a camera's tables are [cameras.<id>]: per_camera is the table's other keys."""
    schema["additionalProperties"] = schema["properties"].pop("per_camera")["additionalProperties"]
    schema["propertyNames"] = {"anyOf": [{"const": "ids"}, {"pattern": CAMERA_ID_RE.pattern}]}


class CamerasConfig(Table):
    """Cameras known before they connect (they show a placeholder until then), and per-camera tables."""

    model_config = ConfigDict(json_schema_extra=_cameras_schema)

    ids: CameraIds = Field((), description="Cameras known before they connect: their URLs exist and show a "
                           "placeholder until then.")
    # [cameras.<id>]: read from the table's other keys (see _per_camera)
    per_camera: Annotated[dict[str, CameraTables], FROZEN, Inline()] = Field(FrozenDict(),
                                                                            description="Per camera id: its tables.")

    @model_validator(mode="before")
    @classmethod
    def _per_camera(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or "per_camera" in data:
            return data
        for camera in data:
            if camera != "ids" and not (isinstance(camera, str) and CAMERA_ID_RE.match(camera)):
                raise problem("unknown key; allowed: ids, or a camera id with name, record, and motion and settings "
                              "tables ([cameras.door.motion])", f".{camera}", f"[cameras.{camera}]")
        return {"ids": data.get("ids", ()), "per_camera": {k: v for k, v in data.items() if k != "ids"}}

    @property
    def tables(self) -> tuple[tuple[str, CameraTables], ...]:
        """(camera id, its tables) pairs, by id."""
        return tuple(sorted(self.per_camera.items()))

    def of(self, camera: str) -> CameraTables:
        """The tables of one camera (empty when it has none)."""
        return self.per_camera.get(camera) or CameraTables()

    @property
    def names(self) -> dict[str, str]:
        """The cameras that have a name: id -> name."""
        return {camera: t.name for camera, t in self.tables if t.name is not None}

    @property
    def record_modes(self) -> dict[str, str]:
        """The cameras with a recording mode of their own: id -> mode."""
        return {camera: t.record for camera, t in self.tables if t.record is not None}


class Config(Table):
    """The whole configuration."""

    ingest: IngestConfig = Field(default_factory=IngestConfig, description="Camera side: the WebSocket listener.")
    http: HttpConfig = Field(default_factory=HttpConfig, description="Viewer side: page, MJPEG, snapshots, API.")
    detect: DetectConfig = Field(default_factory=DetectConfig, description="The detector.")
    cameras: CamerasConfig = Field(default_factory=CamerasConfig, description="Known cameras and per-camera tables.")
    groups: Annotated[dict[GroupName, CameraIds], FROZEN, Allowed(
        'a table of group name = list of camera ids, e.g. Outside = ["door", "yard"]')] = Field(
        FrozenDict(), max_length=32, description="`[groups]`: camera groups, name = camera ids (at most 32 groups). The "
        "live grid shows a chip per group that shows only its cameras, and `/api/overview.mjpg?group=NAME` only "
        "theirs. An id of a camera not known yet is allowed (it counts once it connects).")
    events: EventsConfig = Field(default_factory=EventsConfig, description="Detections into events.")
    motion: MotionConfig = Field(default_factory=MotionConfig, description="Motion detection.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="What is kept, and for how long.")
    record: RecordConfig = Field(default_factory=RecordConfig, description="Recording.")
    webhooks: tuple[WebhookConfig, ...] = Field((), description="`[[webhooks]]`: event changes POSTed as JSON "
                                                "`{\"type\", \"before\", \"after\"}`.")
    notify: tuple[NotifyConfig, ...] = Field((), description="`[[notify]]`: phone notifications through Apprise URLs.")
    mute: MuteConfig = Field(default_factory=MuteConfig, description="What a mute holds back.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT and Home Assistant.")
    log: LogConfig = Field(default_factory=LogConfig, description="Logging.")

    @model_validator(mode="after")
    def _notify_zones_exist(self) -> Config:
        known = {z.name for z in self.events.zones}
        for i, group in enumerate(self.notify):
            for zone in group.zones:
                if zone not in known:
                    raise problem(f"no [[events.zones]] is named {zone!r}; known: {', '.join(sorted(known)) or 'none'}",
                                  f"notify[{i}].zones", list(group.zones))
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Config:
        """A copy with `update` over it (not validated); what was cached from this one is not carried over."""
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop("motion_overrides", None)
        return copied

    @cached_property
    def motion_overrides(self) -> dict[str, MotionConfig]:
        """[motion] with each camera's [cameras.<id>.motion] keys over it, for the cameras that have some."""
        overrides = ((camera, t.motion.model_dump(exclude_none=True)) for camera, t in self.cameras.per_camera.items())
        return {camera: self.motion.model_copy(update=keys) for camera, keys in overrides if keys}

    def motion_for(self, camera: str) -> MotionConfig:
        """[motion] with the camera's [cameras.<id>.motion] keys over it."""
        return self.motion_overrides.get(camera, self.motion)

    @property
    def passthrough(self) -> bool:
        """True when detection is off (`model = "none"`): frames pass through untouched."""
        return self.detect.model.lower() == "none"


__all__ = [
    "BACKENDS", "DEFAULT_X264_PARAMS", "DEVICE_RE", "MUTE_HOLDS", "NOTIFY_ATTACH", "RECORD_MODES", "ROLES",
    "X264_PRESETS", "CameraMotion", "CameraTables", "CamerasConfig", "Config", "DetectConfig", "EventsConfig",
    "FilterConfig", "HttpConfig", "IngestConfig", "LogConfig", "MaskConfig", "MotionConfig", "MotionMaskConfig",
    "MqttConfig", "MuteConfig", "NotifyConfig", "RecordConfig", "StorageConfig", "UserConfig", "WebhookConfig",
    "ZoneConfig",
]
