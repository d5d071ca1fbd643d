"""The configuration's tables: one frozen dataclass per TOML table, with defaults and checks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .checks import (
    CAMERA_ID,
    CAMERA_ID_RE,
    LOG_LEVELS,
    PORT,
    TOPIC_RE,
    ZONE_NAME_RE,
    ConfigError,
    Points,
    _any_text,
    _bool,
    _camera_ids,
    _event_types,
    _headers,
    _ids,
    _labels,
    _number,
    _opt,
    _optional_labels,
    _parsed,
    _path,
    _points,
    _table,
    _text,
    _token,
    _url,
    _users,
    _zone_names,
)

BACKENDS = ("auto", "torch", "openvino", "onnx")
DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda|cuda:\d+|\d+)\Z")  # what torch and ultralytics take for one device
HOST_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")  # one DNS label, as mDNS names it


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
    max_connections: int = _opt(512, _number(int, 16, 1_000_000))  # open HTTP connections; more get 503
    request_timeout_s: float = _opt(10.0, _number(float, 1.0, 300))  # to send a request's headers, or idle
    event_stream_max_s: float = _opt(600.0, _number(float, 1.0, 86400))  # an SSE stream ends; clients resume
    token: str = _opt("", _token)
    users: tuple[tuple[str, str], ...] = _opt((), _users)  # (name, password) pairs
    public_url: str = _opt("", lambda v: None if v == "" else _url(v))  # for links in notifications
    mdns: bool = _opt(True, _bool)  # advertise <mdns_name>.local with _http._tcp and _camserver._tcp
    mdns_name: str = _opt("camserver", _text(HOST_LABEL_RE, "must be a host name: letters, digits and '-', "
                                                          "1 to 63 characters, not starting or ending with '-'"))


@dataclass(frozen=True)
class DetectConfig:
    """The detector: which model, how it runs, how results are encoded."""

    model: str = _opt("yolo11n.pt", _text())
    device: str = _opt("auto", _text(DEVICE_RE, "must be auto, cpu, mps, cuda, cuda:N or N (a GPU's index)"))
    conf: float = _opt(0.25, _number(float, 0.0, 1.0))
    iou: float = _opt(0.45, _number(float, 0.0, 1.0))
    imgsz: int = _opt(640, _number(int, 32, 4096))
    workers: int = _opt(1, _number(int, 1, 16))
    backend: str = _opt("auto", _text(choices=BACKENDS))
    max_batch: int = _opt(0, _number(int, 0, 256))  # 0: per backend (32 on CUDA, 2 on CPU)
    cache_dir: str = _opt("", _path)  # "": ~/.cache/camserver
    jpeg_quality: int = _opt(80, _number(int, 10, 100))
    stall_timeout_s: float = _opt(10.0, _number(float, 0.1, 600))


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
    zones: tuple[ZoneConfig, ...] = _parsed((), _zones)


@dataclass(frozen=True)
class StorageConfig:
    """Where event history and snapshots live, and for how long."""

    dir: str = _opt("camserver-data", _text())
    retain_days: float = _opt(10.0, _number(float, 0.0, 36500))
    max_mb: float = _opt(1024.0, _number(float, 1.0, 10_000_000))


@dataclass(frozen=True)
class WebhookConfig:
    """One [[webhooks]] entry: where event changes are POSTed as JSON."""

    url: str = _opt("", _url)
    types: tuple[str, ...] = _opt(("new", "end"), _event_types)
    cameras: tuple[str, ...] = _opt((), _ids)  # empty: every camera
    labels: tuple[str, ...] = _opt((), _optional_labels)  # empty: every label
    headers: tuple[tuple[str, str], ...] = _opt((), _headers)  # e.g. a token
    follow_redirects: bool = _opt(False, _bool)  # true: follow a redirect to the same origin only


NOTIFY_ATTACH = ("snapshot", "crop", "none")
@dataclass(frozen=True)
class NotifyConfig:
    """One [[notify]] table: Apprise URLs and which events reach them. The URLs hold secrets."""

    # checked by _notify (a URL must never reach an error message unredacted); repr=False keeps
    # them out of any printed config
    urls: tuple[str, ...] = field(default=(), repr=False, metadata={"check": lambda v: None})
    cameras: tuple[str, ...] = _opt((), _ids)  # empty: every camera
    labels: tuple[str, ...] = _opt((), _optional_labels)  # empty: every label that makes events
    zones: tuple[str, ...] = _opt((), _zone_names)  # non-empty: only objects that entered one
    cooldown_s: float = _opt(60.0, _number(float, 0.0, 86400))  # per camera and label
    attach: str = _opt("snapshot", _text(choices=NOTIFY_ATTACH))
    clip: bool = _opt(False, _bool)  # a second message with the clip when the event ends


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
    notify: tuple[NotifyConfig, ...] = ()
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    log: LogConfig = field(default_factory=LogConfig)

    @property
    def passthrough(self) -> bool:
        """True when detection is off (`model = "none"`): frames pass through untouched."""
        return self.detect.model.lower() == "none"
