"""Loading: a TOML file plus command-line overrides into one validated Config."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from .checks import ConfigError, _section
from .checks import CAMERA_ID, _camera_ids, _table
from .tables import CamerasConfig, CameraTables, Config, MotionConfig, NotifyConfig, WebhookConfig

def _webhooks(entries: Any) -> tuple[WebhookConfig, ...]:
    if not isinstance(entries, list):
        raise ConfigError("webhooks", entries, "must be a list of tables ([[webhooks]])")
    hooks = []
    for i, entry in enumerate(entries):
        key = f"webhooks[{i}]"
        if isinstance(entry, Mapping) and "url" not in entry:
            raise ConfigError(f"{key}.url", None, "is required")
        hook = _section(WebhookConfig, entry, key)
        if urlsplit(hook.url).username is not None and any(k.lower() == "authorization" for k, _ in hook.headers):
            raise ConfigError(f"{key}.headers", "Authorization",
                              "conflicts with the user:password in url; keep one of them")
        hooks.append(hook)
    return tuple(hooks)


def _notify(entries: Any) -> tuple[NotifyConfig, ...]:
    """[[notify]] tables; a bad URL is named by its table and shown redacted (it holds secrets)."""
    from .apprise_urls import redact, url_problem  # imports Apprise: only when used

    if not isinstance(entries, list):
        raise ConfigError("notify", "...", "must be a list of tables ([[notify]])")
    groups = []
    for i, entry in enumerate(entries):
        key = f"notify[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(key, type(entry).__name__, "must be a table")
        urls = entry.get("urls")
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            shown = ([redact(u) if isinstance(u, str) else type(u).__name__ for u in urls] if isinstance(urls, list)
                     else redact(urls) if isinstance(urls, str) else type(urls).__name__)
            raise ConfigError(f"{key}.urls", shown,
                              'must be a non-empty list of Apprise URLs, e.g. ["ntfys://ntfy.sh/my-topic"]')
        for n, url in enumerate(urls):
            problem = url_problem(url)
            if problem:
                raise ConfigError(f"{key}.urls", redact(url), f"URL {n + 1}: {problem}")
        group = _section(NotifyConfig, {k: v for k, v in entry.items() if k != "urls"}, key)
        groups.append(dataclasses.replace(group, urls=tuple(urls)))
    return tuple(groups)


def _check_notify_zones(config: Config) -> None:
    known = {z.name for z in config.events.zones}
    for i, group in enumerate(config.notify):
        for zone in group.zones:
            if zone not in known:
                raise ConfigError(f"notify[{i}].zones", list(group.zones),
                                  f"no [[events.zones]] is named {zone!r}; known: {', '.join(sorted(known)) or 'none'}")


def from_mapping(data: Mapping[str, Any]) -> Config:
    """Build a Config from nested dicts (a parsed TOML file plus overrides)."""
    sections = {f.name: f for f in dataclasses.fields(Config)}
    built = {}
    for name, table in data.items():
        if name not in sections:
            raise ConfigError(name, "[" + name + "]", f"unknown table; allowed: {', '.join(sections)}")
        if name == "webhooks":
            built[name] = _webhooks(table)
            continue
        if name == "notify":
            built[name] = _notify(table)
            continue
        if name == "cameras":
            built[name] = parse_cameras(table)
            continue
        built[name] = _section(sections[name].default_factory, table, name)  # type: ignore[misc]
    config = Config(**built)
    _check_notify_zones(config)
    return config


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


def parse_cameras(table: Any, prefix: str = "cameras") -> CamerasConfig:
    """[cameras]: `ids`, and a sub-table per camera id with `motion` and `settings` tables."""
    if not isinstance(table, Mapping):
        raise ConfigError(prefix, type(table).__name__, "must be a table")
    ids = table.get("ids", [])
    if problem := _camera_ids(ids):
        raise ConfigError(f"{prefix}.ids", ids, problem)
    tables = []
    for camera, sub in table.items():
        if camera == "ids":
            continue
        key = f"{prefix}.{camera}"
        if problem := CAMERA_ID(camera):
            raise ConfigError(key, f"[{key}]", "unknown key; allowed: ids, or a camera id with motion and settings "
                              "tables ([cameras.door.motion])")
        sub = _table(sub, key, (), ("motion", "settings"))
        motion = sub.get("motion", {})
        if isinstance(motion, Mapping) and "masks" in motion:
            raise ConfigError(f"{key}.motion.masks", "...", "motion masks go in [[motion.masks]] with camera = ...")
        parsed = _section(MotionConfig, motion, f"{key}.motion")  # validates and converts each key like [motion]
        settings = sub.get("settings", {})
        if not isinstance(settings, Mapping) or not all(isinstance(v, (bool, int, float, str)) for v in settings.values()):
            raise ConfigError(f"{key}.settings", f"[{key}.settings]", "must be a table of board settings, "
                              'e.g. brightness = 1, vflip = true, framesize = "SVGA"')
        motion_keys = tuple(sorted((name, getattr(parsed, name)) for name in motion))
        tables.append((camera, CameraTables(motion_keys, tuple(sorted(settings.items())))))
    return CamerasConfig(tuple(ids), tuple(tables))
