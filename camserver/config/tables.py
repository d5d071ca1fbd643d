"""The configuration's tables: one frozen dataclass per TOML table, with defaults and checks."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from .checks import (
    CAMERA_ID,
    LOG_LEVELS,
    PORT,
    TOPIC_RE,
    ConfigError,
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
    _text,
    _token,
    _url,
    _zone_names,
)
from .shapes import FilterConfig, MaskConfig, ZoneConfig, _filters, _masks, _zones

BACKENDS = ("auto", "torch", "openvino", "onnx", "triton")
PRECISIONS = ("auto", "f32", "bf16", "fp16", "int8")  # detect.precision, backend openvino
TRITON_URL_RE = re.compile(r"^(grpcs?|https?)://[^\s/,]+/?$")
TRITON_MODEL_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _triton_urls(v: Any) -> str | None:
    urls = [u.strip() for u in v.split(",") if u.strip()] if isinstance(v, str) else v
    if not isinstance(urls, (list, tuple)) or not all(isinstance(u, str) and TRITON_URL_RE.match(u) for u in urls):
        return "must be grpc://HOST:PORT or http://HOST:PORT (grpcs://, https:// for TLS), or a list of them"
    return None


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


ROLES = ("viewer", "admin")
USERS_HELP = 'must be a table of user = "password" or user = { password = "...", role = "admin" }'


@dataclass(frozen=True)
class UserConfig:
    """One http.users account: basic auth and the page's login; a viewer may watch, an admin may also change things."""

    name: str
    password: str
    role: str = "viewer"


def _users(entries: Any, prefix: str) -> tuple[UserConfig, ...]:
    """http.users: `alice = "password"` (a viewer) or `alice = { password = "...", role = "admin" }`."""
    if not isinstance(entries, Mapping):
        raise ConfigError(prefix, type(entries).__name__, USERS_HELP)
    users = []
    for name, entry in entries.items():
        key = f"{prefix}.{name}"
        if not name or ":" in name:  # basic auth splits user:password at the first colon
            raise ConfigError(key, name, "user names must be non-empty and without ':'")
        if isinstance(entry, str):
            password, role = entry, "viewer"
        elif isinstance(entry, Mapping):
            for extra in set(entry) - {"password", "role"}:
                raise ConfigError(f"{key}.{extra}", entry[extra], "unknown key; allowed: password, role")
            password, role = entry.get("password"), entry.get("role", "viewer")
            if role not in ROLES:
                raise ConfigError(f"{key}.role", role, f"must be one of {', '.join(ROLES)}")
        else:
            raise ConfigError(key, type(entry).__name__, USERS_HELP)
        if not isinstance(password, str) or not password:
            raise ConfigError(f"{key}.password" if isinstance(entry, Mapping) else key, "...",
                              "must be a non-empty string (the password)")
        users.append(UserConfig(name, password, role))
    return tuple(sorted(users, key=lambda u: u.name))


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
    body_timeout_s: float = _opt(30.0, _number(float, 1.0, 3600))  # to send a request's body; then 408 and closed
    unauthenticated_share: float = _opt(0.5, _number(float, 0.05, 1.0))  # of max_connections, for unproven ones
    event_stream_max_s: float = _opt(600.0, _number(float, 1.0, 86400))  # an SSE stream ends; clients resume
    token: str = _opt("", _token)
    admin_token: str = _opt("", _token)  # the write permission; "" = only admin users have it (or, with none, everyone)
    users: tuple[UserConfig, ...] = _parsed((), _users)
    public_url: str = _opt("", lambda v: None if v == "" else _url(v))  # for links in notifications
    mdns: bool = _opt(True, _bool)  # advertise <mdns_name>.local with _http._tcp and _camserver._tcp
    mdns_name: str = _opt("camserver", _text(HOST_LABEL_RE, "must be a host name: letters, digits and '-', "
                                                          "1 to 63 characters, not starting or ending with '-'"))

    def __post_init__(self) -> None:
        if self.admin_token and self.admin_token == self.token:
            # the same secret for both would make every viewer an admin
            raise ConfigError("http.admin_token", "(hidden)", "must differ from http.token")

    @property
    def passwords(self) -> dict[str, str]:
        """Every user's password by name."""
        return {u.name: u.password for u in self.users}

    @property
    def admins(self) -> frozenset[str]:
        """The names of the users with the admin role."""
        return frozenset(u.name for u in self.users if u.role == "admin")


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
    precision: str = _opt("auto", _text(choices=PRECISIONS))  # openvino: auto measures them all on this CPU
    threads: int = _opt(0, _number(int, 0, 256))  # openvino: inference threads per worker; 0 = the runtime's
    jpeg_quality: int = _opt(80, _number(int, 10, 100))
    stall_timeout_s: float = _opt(10.0, _number(float, 0.1, 600))
    # backend "triton": the shared inference service (python -m camserver.infer)
    url: tuple[str, ...] = _opt((), _triton_urls)  # grpc://HOST:8001 or http://HOST:8000; several: tried in order
    triton_model: str = _opt("detector", _text(TRITON_MODEL_RE, "must be letters, digits, '.', '_' or '-'"))
    timeout_s: float = _opt(3.0, _number(float, 0.1, 120))  # one request's limit; past it the service counts as lost
    triton_inflight: int = _opt(4, _number(int, 1, 64))  # batches sent and not yet answered, at most
    triton_token: str = _opt("", _token)  # the service's access token (camserver-infer --token-file); "" = none

    def __post_init__(self) -> None:
        if isinstance(self.url, str):  # "grpc://a:8001, grpc://b:8001" as well as a list
            object.__setattr__(self, "url", tuple(u.strip() for u in self.url.split(",") if u.strip()))
        if self.backend == "triton" and not self.url:
            raise ConfigError("detect.url", "", "must be set (e.g. grpc://HOST:8001) when detect.backend is triton")


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
    filters: tuple[tuple[str, FilterConfig], ...] = _parsed((), _filters)  # (label, limits) pairs
    masks: tuple[MaskConfig, ...] = _parsed((), _masks(with_labels=True))  # object masks: bottom centre inside

    def __post_init__(self) -> None:
        if "*" in self.labels:
            return
        for label, _ in self.filters:
            if label not in self.labels:
                raise ConfigError(f"events.filters.{label}", f"[events.filters.{label}]",
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
    masks: tuple[MaskConfig, ...] = _parsed((), _masks(with_labels=False))  # motion inside is ignored


RECORD_MODES = ("off", "events", "motion", "continuous")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# camserver's tuning on top of the preset (veryfast and slower; ultrafast and superfast are left as they are),
# for fixed cameras on small CPUs: see camserver/record/encoder.py and bench/record.py
DEFAULT_X264_PARAMS = "subme=1:me=dia:weightp=0:rc-lookahead=5:partitions=none"


def _x264_params(v: Any) -> str | None:
    if not isinstance(v, str) or not re.match(r"^[A-Za-z0-9_.,=:+-]*$", v):
        return 'must be x264 options as "key=value:key=value" (letters, digits, _ . , = : + -)'
    return None


@dataclass(frozen=True)
class RecordConfig:
    """Recording: event clips with pre/post capture, or continuous/motion segments, as H.264 MP4."""

    mode: str = _opt("events", _text(choices=RECORD_MODES))
    pre_capture_s: float = _opt(5.0, _number(float, 0.0, 60))
    post_capture_s: float = _opt(5.0, _number(float, 0.0, 600))
    segment_s: float = _opt(10.0, _number(float, 2, 3600))
    retain_days: float = _opt(3.0, _number(float, 0.0, 36500))
    preset: str = _opt("veryfast", _text(choices=X264_PRESETS))
    crf: int = _opt(28, _number(int, 0, 51))
    x264_params: str = _opt(DEFAULT_X264_PARAMS, _x264_params)
    buffer_mb: float = _opt(32.0, _number(float, 1.0, 4096))  # pre-capture ring per camera, at most


@dataclass(frozen=True)
class StorageConfig:
    """Where event history and snapshots live, and for how long."""

    dir: str = _opt("camserver-data", _text())
    retain_days: float = _opt(10.0, _number(float, 0.0, 36500))
    max_mb: float = _opt(1024.0, _number(float, 1.0, 10_000_000))
    # free space kept on storage.dir's disk (at most 10% of it); 0: none
    min_free_mb: float = _opt(1024.0, _number(float, 0.0, 10_000_000))


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


MUTE_HOLDS = ("notify", "webhooks")


def _mute_holds(v: Any) -> str | None:
    if not isinstance(v, list) or not all(h in MUTE_HOLDS for h in v):
        return f"must be a list of {', '.join(MUTE_HOLDS)} (what a mute holds back); [] = nothing"
    return None


@dataclass(frozen=True)
class MuteConfig:
    """What muting a camera (from the page, the API or Home Assistant) holds back; events are still recorded."""

    holds: tuple[str, ...] = _opt(("notify",), _mute_holds)


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
class CameraTables:
    """[cameras.<id>.motion] and [cameras.<id>.settings]: what one camera does differently.

    `motion` holds only the keys given (validated like [motion]); `settings` the board settings as
    written (checked against the control table by the board stage, which owns it).
    """

    motion: tuple[tuple[str, Any], ...] = ()
    settings: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class CamerasConfig:
    """Cameras known before they connect (they show a placeholder until then), and per-camera tables."""

    ids: tuple[str, ...] = _opt((), _camera_ids)
    tables: tuple[tuple[str, CameraTables], ...] = ()  # (camera id, its tables)

    def of(self, camera: str) -> CameraTables:
        """The tables of one camera (empty when it has none)."""
        return dict(self.tables).get(camera, CameraTables())


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
    record: RecordConfig = field(default_factory=RecordConfig)
    webhooks: tuple[WebhookConfig, ...] = ()
    notify: tuple[NotifyConfig, ...] = ()
    mute: MuteConfig = field(default_factory=MuteConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def motion_for(self, camera: str) -> MotionConfig:
        """[motion] with the camera's [cameras.<id>.motion] keys over it."""
        override = self.cameras.of(camera).motion
        return dataclasses.replace(self.motion, **dict(override)) if override else self.motion

    @property
    def passthrough(self) -> bool:
        """True when detection is off (`model = "none"`): frames pass through untouched."""
        return self.detect.model.lower() == "none"
