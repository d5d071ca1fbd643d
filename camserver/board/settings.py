"""Camera settings kept by the server: what it sends on every hello (desired) and what the board last
said it applied (reported), one row per camera in a table of a database it is given.

Every function here is synchronous: the caller runs it on the thread that owns the connection.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any, Mapping

from ..config import Config, ConfigError
from ..ingest.control import SENSOR_SETTINGS, SETTING_KEYS, ControlError, check_setting

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS camera_settings (
    camera TEXT PRIMARY KEY,
    desired TEXT NOT NULL,        -- JSON object: sent to the camera on every hello
    reported TEXT NOT NULL,       -- JSON object: what the camera last said it applied
    updated_at REAL NOT NULL
);
"""

Settings = dict[str, Any]


def clean_settings(camera: str, values: Mapping[str, Any]) -> Settings:
    """The valid settings of a stored row; a key this version no longer knows is dropped and logged."""
    kept: Settings = {}
    for key, value in values.items():
        try:
            kept[key] = check_setting(key, value)
        except ControlError as exc:
            log.warning("camera %s: stored setting dropped: %s", camera, exc)
    return kept


def check_configured(table: Mapping[str, Any]) -> Settings:
    """A `[cameras.<id>.settings]` table, checked like a control message's settings.

    Raises:
        ControlError: `.key` names the bad key and `.allowed` what it takes, for a ConfigError
            `cameras.<id>.settings.<key>`.
    """
    return {key: check_setting(key, value) for key, value in table.items()}


def check_board_settings(config: Config) -> None:
    """Every [cameras.<id>.settings] table checked against the control table.

    Raises:
        ConfigError: naming `cameras.<id>.settings.<key>` and what it takes.
    """
    for camera, tables in config.cameras.tables:
        try:
            check_configured(dict(tables.settings))
        except ControlError as exc:
            key = exc.key or ""  # check_setting names the key and what it allows
            raise ConfigError(f"cameras.{camera}.settings.{key}", dict(tables.settings).get(key),
                              exc.allowed or str(exc)) from None


def configured_settings(config: Config) -> dict[str, Settings]:
    """camera id -> its checked [cameras.<id>.settings] (the config wins over stored values at start-up)."""
    return {camera: check_configured(dict(tables.settings)) for camera, tables in config.cameras.tables
            if tables.settings}


def merge_settings(stored: Mapping[str, Mapping[str, Any]],
                   configured: Mapping[str, Mapping[str, Any]]) -> dict[str, Settings]:
    """Desired settings per camera at start-up: the stored ones, with every key of the config over them.

    Args:
        stored: camera id -> settings kept in the database (set through the API before).
        configured: camera id -> `[cameras.<id>.settings]`, already validated.
    """
    merged = {camera: dict(values) for camera, values in stored.items()}
    for camera, values in configured.items():
        merged.setdefault(camera, {}).update(values)
    return {camera: values for camera, values in merged.items() if values}


def check_reported(values: Mapping[str, Any]) -> tuple[Settings, list[str]]:
    """Reported values checked with the table settings are sent with: (the valid ones, the keys dropped).

    A board says what it applied; a value no board can hold (an HTML string, 1e308, an object) is not
    kept or shown. Keys this version does not know are left out without counting (newer firmware).
    """
    kept: Settings = {}
    dropped: list[str] = []
    for key, value in values.items():
        if key not in SETTING_KEYS:
            continue
        try:
            kept[key] = check_setting(key, value)
        except ControlError:
            dropped.append(key)
    return kept, dropped


def reported_from_status(status: Mapping[str, Any]) -> tuple[Settings, list[str], list[str]] | None:
    """What a camera's status says it applied (checked, under the control message's keys), what it cannot
    do, and the keys whose values failed the check.

    None for a status without a "settings" object (older firmware).
    """
    applied = status.get("settings")
    if not isinstance(applied, dict):
        return None
    raw = {k: v for k, v in applied.items() if k in SENSOR_SETTINGS}
    for key, field in (("framesize", "frame_size"), ("quality", "quality"), ("fps", "max_fps")):
        if field in status:
            raw[key] = status[field]
    reported, dropped = check_reported(raw)
    unsupported = status.get("unsupported")
    names = [n for n in unsupported if isinstance(n, str) and n in SETTING_KEYS] if isinstance(unsupported, list) else []
    return reported, names[:len(SETTING_KEYS)], dropped


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


class SettingsStore:
    """The camera_settings table on a connection it is given (the events database's, usually)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.executescript(SCHEMA)

    def load(self) -> dict[str, tuple[Settings, Settings]]:
        """camera id -> (desired, reported), as stored."""
        rows = self.db.execute("SELECT camera, desired, reported FROM camera_settings").fetchall()
        return {camera: (clean_settings(camera, json.loads(desired)), check_reported(_object(json.loads(reported)))[0])
                for camera, desired, reported in rows}

    def save_desired(self, camera: str, desired: Settings, now: float) -> None:
        """Replace what the server sends this camera on hello."""
        self.db.execute(
            "INSERT INTO camera_settings (camera, desired, reported, updated_at) VALUES (?, ?, '{}', ?) "
            "ON CONFLICT (camera) DO UPDATE SET desired = excluded.desired, updated_at = excluded.updated_at",
            (camera, json.dumps(desired, sort_keys=True), now),
        )
        self._commit()

    def save_reported(self, camera: str, reported: Settings, now: float) -> None:
        """Replace what the camera last said it applied."""
        self.db.execute(
            "INSERT INTO camera_settings (camera, desired, reported, updated_at) VALUES (?, '{}', ?, ?) "
            "ON CONFLICT (camera) DO UPDATE SET reported = excluded.reported, updated_at = excluded.updated_at",
            (camera, json.dumps(reported, sort_keys=True), now),
        )
        self._commit()

    def _commit(self) -> None:
        if self.db.in_transaction:  # a connection in sqlite3's default mode; autocommit ones never are
            self.db.commit()
