"""Validated configuration: one frozen dataclass per TOML table (tables.py), loaded with tomllib
(loading.py), checked by the building blocks in checks.py; Apprise URLs, which hold secrets, are
validated and redacted by apprise_urls.py."""

from .checks import CAMERA_ID_RE, LOG_LEVELS, ConfigError, Points
from .loading import from_mapping, load
from .tables import (
    BACKENDS,
    CamerasConfig,
    CameraTables,
    Config,
    DetectConfig,
    EventsConfig,
    FilterConfig,
    HttpConfig,
    IngestConfig,
    LogConfig,
    MaskConfig,
    MotionConfig,
    MqttConfig,
    MuteConfig,
    NotifyConfig,
    RecordConfig,
    StorageConfig,
    UserConfig,
    WebhookConfig,
    ZoneConfig,
)

__all__ = [
    "BACKENDS",
    "CAMERA_ID_RE",
    "LOG_LEVELS",
    "CamerasConfig",
    "CameraTables",
    "Config",
    "ConfigError",
    "DetectConfig",
    "EventsConfig",
    "FilterConfig",
    "HttpConfig",
    "IngestConfig",
    "LogConfig",
    "MaskConfig",
    "MotionConfig",
    "MqttConfig",
    "MuteConfig",
    "NotifyConfig",
    "Points",
    "RecordConfig",
    "StorageConfig",
    "UserConfig",
    "WebhookConfig",
    "ZoneConfig",
    "from_mapping",
    "load",
]
