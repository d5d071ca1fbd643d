"""Validated configuration: one frozen dataclass per TOML table, loaded with tomllib."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

CAMERA_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
LOG_LEVELS = ("debug", "info", "warning", "error")
BACKENDS = ("auto", "torch", "openvino", "onnx")


class ConfigError(Exception):
    """A configuration value is missing, unknown or out of range."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"config error: {key} = {value!r}: {allowed}")


Check = Callable[[Any], str | None]


def _number(kind: type, lo: float | None = None, hi: float | None = None) -> Check:
    """A check for an int or float inside [lo, hi]; returns the complaint or None."""
    what = "an integer" if kind is int else "a number"
    span = f" from {lo} to {hi}" if hi is not None else (f" >= {lo}" if lo is not None else "")

    def check(v: Any) -> str | None:
        ok_type = isinstance(v, int) if kind is int else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok_type:
            return f"must be {what}{span}"
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            return f"must be {what}{span}"
        return None

    return check


def _text(pattern: re.Pattern[str] | None = None, hint: str = "", choices: tuple[str, ...] = ()) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, str) or not v:
            return "must be a non-empty string"
        if choices and v.lower() not in choices:
            return f"must be one of {', '.join(choices)}"
        if pattern is not None and not pattern.match(v):
            return hint
        return None

    return check


def _camera_ids(v: Any) -> str | None:
    if not isinstance(v, list) or not all(isinstance(i, str) and CAMERA_ID_RE.match(i) for i in v):
        return "must be a list of camera ids (letters, digits, '-', '_', 1 to 32 characters)"
    if len(set(v)) != len(v):
        return "must not repeat an id"
    return None


def _token(v: Any) -> str | None:
    if not isinstance(v, str) or (v and len(v) < 8) or any(c.isspace() for c in v):
        return "must be empty (no token) or at least 8 characters without spaces"
    return None


def _users(v: Any) -> str | None:
    if not isinstance(v, Mapping) or not all(
        isinstance(k, str) and k and ":" not in k and isinstance(p, str) and p for k, p in v.items()
    ):
        return "must be a table of user = \"password\" (user names without ':')"
    return None


def _path(v: Any) -> str | None:
    return None if isinstance(v, str) else "must be a folder path (a string)"


def _opt(default: Any, check: Check) -> Any:
    return field(default=default, metadata={"check": check})


PORT = _number(int, 0, 65535)
CAMERA_ID = _text(CAMERA_ID_RE, "must be letters, digits, '-' or '_', 1 to 32 characters")


@dataclass(frozen=True)
class IngestConfig:
    """Camera side: the WebSocket listener."""

    host: str = _opt("0.0.0.0", _text())
    port: int = _opt(3001, PORT)
    max_frame_bytes: int = _opt(1024 * 1024, _number(int, 1024, 64 * 1024 * 1024))
    max_width: int = _opt(2592, _number(int, 16, 16384))
    max_height: int = _opt(1944, _number(int, 16, 16384))
    max_cameras: int = _opt(32, _number(int, 1, 1024))
    default_camera_id: str = _opt("default", CAMERA_ID)
    token: str = _opt("", _token)
    handshake_timeout_s: float = _opt(10.0, _number(float, 0.1, 300))
    ping_interval_s: float = _opt(20.0, _number(float, 0.01, 3600))
    ping_timeout_s: float = _opt(20.0, _number(float, 0.01, 3600))
    max_bad_frames: int = _opt(50, _number(int, 1, 100000))


@dataclass(frozen=True)
class HttpConfig:
    """Viewer side: the aiohttp app serving MJPEG, snapshots and JSON."""

    host: str = _opt("0.0.0.0", _text())
    port: int = _opt(8080, PORT)
    viewer_write_timeout_s: float = _opt(10.0, _number(float, 0.1, 600))
    placeholder_interval_s: float = _opt(1.0, _number(float, 0.1, 60))
    max_viewers: int = _opt(200, _number(int, 1, 100000))
    max_viewers_per_camera: int = _opt(50, _number(int, 1, 100000))
    token: str = _opt("", _token)
    users: tuple[tuple[str, str], ...] = _opt((), _users)  # (name, password) pairs


@dataclass(frozen=True)
class DetectConfig:
    """The detector: which model, how it runs, how results are encoded."""

    model: str = _opt("yolo11n.pt", _text())
    device: str = _opt("auto", _text())
    conf: float = _opt(0.25, _number(float, 0.0, 1.0))
    iou: float = _opt(0.45, _number(float, 0.0, 1.0))
    imgsz: int = _opt(640, _number(int, 32, 4096))
    workers: int = _opt(1, _number(int, 1, 16))
    backend: str = _opt("auto", _text(choices=BACKENDS))
    max_batch: int = _opt(0, _number(int, 0, 256))  # 0: per backend (32 on CUDA, 1 on CPU)
    cache_dir: str = _opt("", _path)  # "": ~/.cache/camserver
    jpeg_quality: int = _opt(80, _number(int, 10, 100))
    stall_timeout_s: float = _opt(10.0, _number(float, 0.1, 600))


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _labels(v: Any) -> str | None:
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
        return 'must be a non-empty list of labels, e.g. ["person", "car"], or ["*"] for every label'
    return None


def _zones(v: Any) -> str | None:
    """[[events.zones]] entries: camera, name, points (3+ [x, y] pairs from 0 to 1), optional labels."""
    if not isinstance(v, list):
        return "must be a list of tables ([[events.zones]])"
    seen = set()
    for i, zone in enumerate(v):
        where = f"zone {i + 1}: "
        if not isinstance(zone, Mapping) or set(zone) - {"camera", "name", "points", "labels"}:
            return where + "a table with camera, name, points and optionally labels"
        if not isinstance(zone.get("camera"), str) or not CAMERA_ID_RE.match(zone["camera"]):
            return where + "camera must be a camera id"
        if not isinstance(zone.get("name"), str) or not re.match(r"^[A-Za-z0-9_-]{1,32}$", zone["name"]):
            return where + "name must be letters, digits, '-' or '_', 1 to 32 characters"
        points = zone.get("points")
        if not isinstance(points, list) or len(points) < 3 or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                                      and 0 <= c <= 1 for c in p)
            for p in points
        ):
            return where + "points must be 3 or more [x, y] pairs, each from 0 to 1 (relative to the frame)"
        if "labels" in zone and _labels(zone["labels"]):
            return where + "labels must be a non-empty list of labels"
        if (zone["camera"], zone["name"]) in seen:
            return where + f"zone {zone['name']!r} of camera {zone['camera']!r} is defined twice"
        seen.add((zone["camera"], zone["name"]))
    return None


def _polygon(points: Any) -> str | None:
    """Complaint about a relative polygon (3+ [x, y] pairs from 0 to 1), or None."""
    if not isinstance(points, list) or len(points) < 3 or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                                  and 0 <= c <= 1 for c in p)
        for p in points
    ):
        return "points must be 3 or more [x, y] pairs, each from 0 to 1 (relative to the frame)"
    return None


def _masks(table: str, with_labels: bool) -> Check:
    """A check for [[<table>.masks]] entries: camera, points and (object masks) optional labels."""
    allowed = {"camera", "points", "labels"} if with_labels else {"camera", "points"}

    def check(v: Any) -> str | None:
        if not isinstance(v, list):
            return f"must be a list of tables ([[{table}.masks]])"
        for i, mask in enumerate(v):
            where = f"mask {i + 1}: "
            if not isinstance(mask, Mapping) or "points" not in mask or "camera" not in mask or set(mask) - allowed:
                return where + f"a table with {', '.join(sorted(allowed - {'labels'}))}" + (
                    " and optionally labels" if with_labels else "")
            if not isinstance(mask["camera"], str) or not CAMERA_ID_RE.match(mask["camera"]):
                return where + "camera must be a camera id"
            problem = _polygon(mask["points"])
            if problem:
                return where + problem
            if "labels" in mask and _labels(mask["labels"]):
                return where + "labels must be a non-empty list of labels"
        return None

    return check


FILTER_KEYS = ("min_area", "max_area", "min_ratio", "max_ratio", "min_score", "threshold")


def _filters(v: Any) -> str | None:
    """[events.filters.<label>] tables: min_area, max_area, min_ratio, max_ratio, min_score, threshold."""
    if not isinstance(v, Mapping):
        return "must be tables [events.filters.<label>]"
    for label, f in v.items():
        where = f"{label}: "
        if not isinstance(f, Mapping):
            return where + f"must be a table of {', '.join(FILTER_KEYS)}"
        unknown = sorted(set(f) - set(FILTER_KEYS))
        if unknown:
            return where + f"unknown key {unknown[0]!r}; allowed: {', '.join(FILTER_KEYS)}"
        for key, value in f.items():
            hi = 1.0 if key in ("min_score", "threshold") else None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (hi and value > hi):
                span = "from 0 to 1" if hi else ">= 0"
                return where + f"{key} must be a number {span}"
        if "min_ratio" in f and f["min_ratio"] <= 0 or "max_ratio" in f and f["max_ratio"] <= 0:
            return where + "min_ratio and max_ratio (width / height) must be > 0"
        for lo, hi_key in (("min_area", "max_area"), ("min_ratio", "max_ratio")):
            # areas compare only when both are pixels or both fractions of the frame (<= 1)
            if lo in f and hi_key in f and f[lo] > f[hi_key] and (lo != "min_area" or (f[lo] <= 1) == (f[hi_key] <= 1)):
                return where + f"{lo} ({f[lo]}) is larger than {hi_key} ({f[hi_key]})"
    return None


@dataclass(frozen=True)
class EventsConfig:
    """Turning detections into events: which labels, how sure, how long, and zones."""

    enabled: bool = _opt(True, _bool)
    labels: tuple[str, ...] = _opt(("person",), _labels)
    min_score: float = _opt(0.5, _number(float, 0.0, 1.0))
    threshold: float = _opt(0.7, _number(float, 0.0, 1.0))
    max_disappeared_s: float = _opt(5.0, _number(float, 0.1, 3600))
    stationary_s: float = _opt(10.0, _number(float, 0.1, 86400))
    update_interval_s: float = _opt(60.0, _number(float, 1.0, 86400))
    cooldown_s: float = _opt(0.0, _number(float, 0.0, 86400))
    zones: tuple[Any, ...] = _opt((), _zones)
    # per label: (label, {min_area, max_area, min_ratio, max_ratio, min_score, threshold}) pairs
    filters: tuple[tuple[str, Any], ...] = _opt((), _filters)
    masks: tuple[Any, ...] = _opt((), _masks("events", with_labels=True))  # object masks: bottom centre inside

    def __post_init__(self) -> None:
        if "*" in self.labels:
            return
        for label, _ in self.filters:
            if label not in self.labels:
                raise ConfigError(f"events.filters.{label}", dict(self.filters)[label],
                                  f"label not in events.labels ({', '.join(self.labels)})")


@dataclass(frozen=True)
class MotionConfig:
    """Motion detection: the detector runs only on frames where something moves (Frigate's names)."""

    enabled: bool = _opt(True, _bool)
    threshold: int = _opt(30, _number(int, 1, 255))  # pixel difference from the background
    contour_area: int = _opt(10, _number(int, 0, 100000))  # pixels, at the detector's ~100 px height
    improve_contrast: bool = _opt(True, _bool)
    lightning_threshold: float = _opt(0.8, _number(float, 0.3, 1.0))  # share of the frame: reset, not motion
    # seconds between detections of a camera with no motion: stationary objects are re-checked,
    # and a scene that changed slowly is caught
    recheck_s: float = _opt(5.0, _number(float, 0.1, 86400))
    mqtt_off_delay_s: float = _opt(30.0, _number(float, 0.0, 86400))
    masks: tuple[Any, ...] = _opt((), _masks("motion", with_labels=False))  # motion inside is ignored


@dataclass(frozen=True)
class StorageConfig:
    """Where event history and snapshots live, and for how long."""

    dir: str = _opt("camserver-data", _text())
    retain_days: float = _opt(10.0, _number(float, 0.0, 36500))
    max_mb: float = _opt(1024.0, _number(float, 1.0, 10_000_000))


EVENT_TYPES = ("new", "update", "end")


def _event_types(v: Any) -> str | None:
    if not isinstance(v, list) or not v or not all(t in EVENT_TYPES for t in v):
        return f"must be a non-empty list of {', '.join(EVENT_TYPES)}"
    return None


def _url(v: Any) -> str | None:
    if not isinstance(v, str) or not re.match(r"^https?://[^\s/]+", v):
        return "must be an http:// or https:// URL"
    return None


def _headers(v: Any) -> str | None:
    if not isinstance(v, Mapping) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        return 'must be a table of "Header-Name" = "value"'
    return None


def _ids(v: Any) -> str | None:
    return None if v == [] else _camera_ids(v)


def _optional_labels(v: Any) -> str | None:
    return None if v == [] else _labels(v)


@dataclass(frozen=True)
class WebhookConfig:
    """One [[webhooks]] entry: where event changes are POSTed as JSON."""

    url: str = _opt("", _url)
    types: tuple[str, ...] = _opt(("new", "end"), _event_types)
    cameras: tuple[str, ...] = _opt((), _ids)  # empty: every camera
    labels: tuple[str, ...] = _opt((), _optional_labels)  # empty: every label
    headers: tuple[tuple[str, str], ...] = _opt((), _headers)  # e.g. a token


def _any_text(v: Any) -> str | None:
    return None if isinstance(v, str) else "must be a string"


TOPIC_RE = re.compile(r"^[A-Za-z0-9_/-]{1,64}$")


@dataclass(frozen=True)
class MqttConfig:
    """MQTT: event states for Home Assistant, Node-RED and friends. Off while host is empty."""

    host: str = _opt("", _any_text)
    port: int = _opt(1883, _number(int, 1, 65535))
    username: str = _opt("", _any_text)
    password: str = _opt("", _any_text)
    client_id: str = _opt("", _any_text)  # "": camserver-<hostname>
    topic_prefix: str = _opt("camserver", _text(TOPIC_RE, "must be letters, digits, '_', '-' or '/'"))
    tls: bool = _opt(False, _bool)
    ca_file: str = _opt("", _any_text)  # "": the system's CA certificates
    homeassistant: bool = _opt(True, _bool)
    discovery_prefix: str = _opt("homeassistant", _text(TOPIC_RE, "must be letters, digits, '_', '-' or '/'"))


@dataclass(frozen=True)
class CamerasConfig:
    """Cameras known before they connect (they show a placeholder until then)."""

    ids: tuple[str, ...] = _opt((), _camera_ids)


@dataclass(frozen=True)
class LogConfig:
    """Logging."""

    level: str = _opt("info", _text(choices=LOG_LEVELS))


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    ingest: IngestConfig = field(default_factory=IngestConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    cameras: CamerasConfig = field(default_factory=CamerasConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    webhooks: tuple[WebhookConfig, ...] = ()
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    log: LogConfig = field(default_factory=LogConfig)

    @property
    def passthrough(self) -> bool:
        """True when detection is off (`model = "none"`): frames pass through untouched."""
        return self.detect.model.lower() == "none"


def _section(cls: type, table: Any, prefix: str) -> Any:
    if not isinstance(table, Mapping):
        raise ConfigError(prefix, table, "must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(f"{prefix}.{key}", value, f"unknown key; allowed: {', '.join(fields)}")
        problem = fields[key].metadata["check"](value)
        if problem:
            raise ConfigError(f"{prefix}.{key}", value, problem)
        if fields[key].type == "float":
            value = float(value)
        if key in ("level", "backend"):
            value = value.lower()
        if isinstance(value, list):
            value = tuple(value)
        if isinstance(value, Mapping):
            value = tuple(sorted(value.items()))
        values[key] = value
    return cls(**values)


def _webhooks(entries: Any) -> tuple[WebhookConfig, ...]:
    if not isinstance(entries, list):
        raise ConfigError("webhooks", entries, "must be a list of tables ([[webhooks]])")
    hooks = []
    for i, entry in enumerate(entries):
        key = f"webhooks[{i}]"
        if isinstance(entry, Mapping) and "url" not in entry:
            raise ConfigError(f"{key}.url", None, "is required")
        hooks.append(_section(WebhookConfig, entry, key))
    return tuple(hooks)


def from_mapping(data: Mapping[str, Any]) -> Config:
    """Build a Config from nested dicts (a parsed TOML file plus overrides)."""
    sections = {f.name: f for f in dataclasses.fields(Config)}
    built = {}
    for name, table in data.items():
        if name not in sections:
            raise ConfigError(name, table, f"unknown table; allowed: {', '.join(sections)}")
        if name == "webhooks":
            built[name] = _webhooks(table)
            continue
        built[name] = _section(sections[name].default_factory, table, name)  # type: ignore[misc]
    return Config(**built)


def load(path: Path | None, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Config:
    """Read a TOML file (if given), apply overrides table by table, validate.

    Args:
        path: config file; None means the built-in defaults.
        overrides: {"table": {"key": value}} from the command line, applied over the file.
    """
    data: dict[str, dict[str, Any]] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("--config", str(path), "file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", str(path), f"not valid TOML: {exc}") from None
    for table, values in (overrides or {}).items():
        merged = dict(data.get(table, {}))
        merged.update({k: v for k, v in values.items() if v is not None})
        data[table] = merged
    return from_mapping(data)
