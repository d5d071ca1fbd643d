"""Validation building blocks: ConfigError, value checks, and the table parser every section uses."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import field
from typing import Any, Callable, Mapping

CAMERA_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
LOG_LEVELS = ("debug", "info", "warning", "error")

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

    # what the docs' configuration reference lists as allowed (the complaint says it only for a bad value)
    check.allowed = (f"one of {', '.join(choices)}" if choices else hint.removeprefix("must be ")  # type: ignore[attr-defined]
                     if hint else "a non-empty string")
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


def _path(v: Any) -> str | None:
    return None if isinstance(v, str) else "must be a folder path (a string)"


def _opt(default: Any, check: Check) -> Any:
    return field(default=default, metadata={"check": check})


PORT = _number(int, 0, 65535)
CAMERA_ID = _text(CAMERA_ID_RE, "must be letters, digits, '-' or '_', 1 to 32 characters")


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _labels(v: Any) -> str | None:
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
        return 'must be a non-empty list of labels, e.g. ["person", "car"], or ["*"] for every label'
    return None


ZONE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
Points = tuple[tuple[float, float], ...]


def _points(v: Any, key: str) -> Points:
    """3 or more [x, y] pairs, each from 0 to 1 (relative to the frame)."""
    if not isinstance(v, list) or len(v) < 3 or not all(
        isinstance(p, list) and len(p) == 2
        and all(isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c <= 1 for c in p)
        for p in v
    ):
        raise ConfigError(key, v, "must be 3 or more [x, y] pairs, each from 0 to 1 (relative to the frame)")
    return tuple((float(x), float(y)) for x, y in v)


def _table(v: Any, key: str, required: tuple[str, ...], optional: tuple[str, ...]) -> Mapping[str, Any]:
    """An entry of an array of tables with the required keys and no unknown ones."""
    if not isinstance(v, Mapping):
        raise ConfigError(key, type(v).__name__, f"must be a table with {', '.join(required + optional)}")
    for name in v:
        if name not in required + optional:
            raise ConfigError(f"{key}.{name}", v[name], f"unknown key; allowed: {', '.join(required + optional)}")
    for name in required:
        if name not in v:
            raise ConfigError(f"{key}.{name}", None, "is required")
    return v


def _parsed(default: Any, parse: Callable[[Any, str], Any]) -> Any:
    """A field whose value is parsed (and validated) by `parse(value, dotted_key)`."""
    return field(default=default, metadata={"parse": parse})


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


def _zone_names(v: Any) -> str | None:
    if not isinstance(v, list) or not all(isinstance(z, str) and ZONE_NAME_RE.match(z) for z in v):
        return 'must be a list of zone names from [[events.zones]], e.g. ["porch"]; [] = anywhere'
    return None


def _any_text(v: Any) -> str | None:
    return None if isinstance(v, str) else "must be a string"


TOPIC_RE = re.compile(r"^[A-Za-z0-9_/-]{1,64}$")


def _section(cls: type, table: Any, prefix: str) -> Any:
    if not isinstance(table, Mapping):
        raise ConfigError(prefix, table, "must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(f"{prefix}.{key}", value, f"unknown key; allowed: {', '.join(fields)}")
        if "parse" in fields[key].metadata:
            values[key] = fields[key].metadata["parse"](value, f"{prefix}.{key}")
            continue
        problem = fields[key].metadata["check"](value)
        if problem:
            raise ConfigError(f"{prefix}.{key}", value, problem)
        if fields[key].type == "float":
            value = float(value)
        if key in ("level", "backend", "attach", "mode", "preset"):
            value = value.lower()
        if isinstance(value, list):
            value = tuple(value)
        if isinstance(value, Mapping):
            value = tuple(sorted(value.items()))
        values[key] = value
    return cls(**values)
