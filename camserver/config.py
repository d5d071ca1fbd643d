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
BACKENDS = ("auto", "torch", "openvino", "onnx", "triton")


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
TRITON_URL_RE = re.compile(r"^(grpcs?|https?)://[^\s/,]+/?$")
TRITON_MODEL_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _triton_urls(v: Any) -> str | None:
    urls = [u.strip() for u in v.split(",") if u.strip()] if isinstance(v, str) else v
    if not isinstance(urls, (list, tuple)) or not all(isinstance(u, str) and TRITON_URL_RE.match(u) for u in urls):
        return "must be grpc://HOST:PORT or http://HOST:PORT (grpcs://, https:// for TLS), or a list of them"
    return None
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
    # backend "triton": the shared inference service (python -m camserver.infer)
    url: tuple[str, ...] = _opt((), _triton_urls)  # grpc://HOST:8001 or http://HOST:8000; several: tried in order
    triton_model: str = _opt("detector", _text(TRITON_MODEL_RE, "must be letters, digits, '.', '_' or '-'"))
    timeout_s: float = _opt(3.0, _number(float, 0.1, 120))  # one request's limit; past it the service counts as lost
    triton_inflight: int = _opt(4, _number(int, 1, 64))  # batches sent and not yet answered, at most

    def __post_init__(self) -> None:
        if isinstance(self.url, str):  # "grpc://a:8001, grpc://b:8001" as well as a list
            object.__setattr__(self, "url", tuple(u.strip() for u in self.url.split(",") if u.strip()))
        if self.backend == "triton" and not self.url:
            raise ConfigError("detect.url", "", "must be set (e.g. grpc://HOST:8001) when detect.backend is triton")


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
