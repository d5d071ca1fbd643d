"""The configuration reference: every key of every table, its type, default, allowed values and what it does.

Types and defaults come from the dataclasses in config/tables.py; the allowed values are what the loader
itself says of a value no check accepts (a probe through `from_mapping`); the descriptions are
config/descriptions.py's. Nothing here is typed by hand.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

from ..config import ConfigError, from_mapping
from ..config import tables as t
from ..config.descriptions import DESCRIPTIONS
from ..config.shapes import FilterConfig, MaskConfig, ZoneConfig


class _Probe:
    """A value no check accepts: the loader's complaint about it says what is allowed."""

    def __repr__(self) -> str:
        return "<probe>"


PROBE = _Probe()
# a string no pattern or list of choices takes (a space and a control character): it brings out the hint
# of a text key whose complaint about a non-string only says "a non-empty string"
TEXT_PROBE = "\x01 no such value"
POINTS = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]
# what a list-of-tables entry needs besides the probed key, so that only the probed key is wrong
REQUIRED = {
    "events.zones": {"camera": "door", "name": "porch", "points": POINTS},
    "events.masks": {"camera": "door", "points": POINTS},
    "motion.masks": {"camera": "door", "points": POINTS},
    "webhooks": {"url": "http://hooks.lan/camserver"},
    "notify": {"urls": ["json://localhost"]},
}
TYPES = {
    "str": "string", "int": "integer", "float": "number", "bool": "boolean", "float | None": "number",
    "tuple[str, ...]": "list of strings", "frozenset[str]": "list of strings", "Points": "list of [x, y]",
    "tuple[tuple[str, str], ...]": "table of strings",
}


@dataclasses.dataclass(frozen=True)
class Key:
    """One documented key: its dotted name, TOML type, default, allowed values, description."""

    name: str
    type: str
    default: str
    allowed: str
    doc: str


def toml_value(value: Any) -> str:
    """A default as it is written in config.toml."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (tuple, list, frozenset)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def _complaint(data: dict[str, Any]) -> str | None:
    try:
        from_mapping(data)
    except ConfigError as exc:
        return exc.allowed.removeprefix("must be ")
    return None


def _allowed(wrap: Any) -> str:
    """What the loader says is allowed, for a value `wrap(value)` puts where it reads the probed key."""
    for probe in (TEXT_PROBE, PROBE):
        complaint = _complaint(wrap(probe))
        if complaint is not None and complaint != "a non-empty string":
            return complaint
    return _complaint(wrap(PROBE)) or "any"


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is dataclasses.MISSING:
        return "required"
    if f.name in ("users", "headers"):
        return "{}"
    return toml_value(f.default)


def _table_keys(section: str, cls: type, wrap: Any) -> Iterator[Key]:
    """The keys of one table; `wrap(key, value)` puts a value where the loader reads that key."""
    for f in dataclasses.fields(cls):
        name = f"{section}.{f.name}"
        if f.name in ("zones", "masks", "filters", "users"):
            yield Key(name, "array of tables" if f.name != "filters" and f.name != "users" else "tables",
                      "none", "see below", DESCRIPTIONS.get(name, ""))
            continue
        yield Key(name, TYPES.get(str(f.type), str(f.type)), _default(f), _allowed(lambda v, n=f.name: wrap(n, v)),
                  DESCRIPTIONS.get(name, ""))


def _entry_keys(section: str, cls: type, skip: tuple[str, ...] = ()) -> Iterator[Key]:
    """The keys of one entry of an array of tables ([[events.zones]], [[webhooks]] ...)."""
    head, _, field_name = section.partition(".")
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        def data(value: Any, key: str = f.name) -> dict[str, Any]:
            entry = {**REQUIRED[section], key: value}
            return {head: {field_name: [entry]}} if field_name else {head: [entry]}

        name = f"{section}[].{f.name}"
        default = "required" if f.name in REQUIRED[section] else _default(f)
        if default == "[]" and str(f.type) == "frozenset[str]":
            default = "every label"
        yield Key(name, TYPES.get(str(f.type), str(f.type)), default, _allowed(data), DESCRIPTIONS.get(name, ""))


def all_keys() -> list[Key]:
    """Every key of the configuration, table by table, in the tables' order."""
    keys: list[Key] = []
    for section, cls in (("ingest", t.IngestConfig), ("http", t.HttpConfig)):
        keys += _table_keys(section, cls, lambda k, v, s=section: {s: {k: v}})
    for user_key in ("password", "role"):
        name = f"http.users.<name>.{user_key}"
        keys.append(Key(name, "string", "required" if user_key == "password" else '"viewer"',
                        _allowed(lambda v, k=user_key: {"http": {"users": {"alice": {"password": "secret-pw", k: v}}}}),
                        DESCRIPTIONS.get(name, "")))
    keys += _table_keys("detect", t.DetectConfig, lambda k, v: {"detect": {k: v}})
    keys.append(Key("cameras.ids", "list of strings", "[]", _allowed(lambda v: {"cameras": {"ids": v}}),
                    DESCRIPTIONS.get("cameras.ids", "")))
    for sub in ("motion", "settings"):
        name = f"cameras.<id>.{sub}"
        keys.append(Key(name, "table", "none", _allowed(lambda v, s=sub: {"cameras": {"door": {s: v}}}), DESCRIPTIONS.get(name, "")))
    keys += _table_keys("events", t.EventsConfig, lambda k, v: {"events": {k: v}})
    keys += _entry_keys("events.zones", ZoneConfig)
    for f in dataclasses.fields(FilterConfig):
        name = f"events.filters.<label>.{f.name}"
        keys.append(Key(name, "number", "no limit", _allowed(lambda v, n=f.name: {"events": {"filters": {"person": {n: v}}}}),
                        DESCRIPTIONS.get(name, "")))
    keys += _entry_keys("events.masks", MaskConfig)
    keys += _table_keys("motion", t.MotionConfig, lambda k, v: {"motion": {k: v}})
    keys += _entry_keys("motion.masks", MaskConfig, skip=("labels",))
    for section, cls in (("storage", t.StorageConfig), ("record", t.RecordConfig)):
        keys += _table_keys(section, cls, lambda k, v, s=section: {s: {k: v}})
    keys.append(Key("webhooks", "array of tables", "none", "see below", DESCRIPTIONS.get("webhooks", "")))
    keys += _entry_keys("webhooks", t.WebhookConfig)
    keys.append(Key("notify", "array of tables", "none", "see below", DESCRIPTIONS.get("notify", "")))
    keys += _entry_keys("notify", t.NotifyConfig)
    for section, cls in (("mute", t.MuteConfig), ("mqtt", t.MqttConfig), ("log", t.LogConfig)):
        keys += _table_keys(section, cls, lambda k, v, s=section: {s: {k: v}})
    return keys


def _table_of(name: str) -> str:
    """The TOML table a key is written in, as its heading."""
    for prefix, heading in (("events.zones[]", "[[events.zones]]"), ("events.masks[]", "[[events.masks]]"),
                            ("motion.masks[]", "[[motion.masks]]"), ("webhooks", "[[webhooks]]"),
                            ("notify", "[[notify]]"), ("events.filters.", "[events.filters.<label>]"),
                            ("http.users.", "[http.users]"), ("cameras.", "[cameras]")):
        if name.startswith(prefix):
            return heading
    return f"[{name.split('.')[0]}]"


def config_page() -> str:
    """The configuration reference page."""
    from . import cell

    out = ["# Configuration reference", "",
           "Every key of `config.toml`, table by table. Every key is optional unless it says *required*; "
           "command-line flags override the file (see [the command line](command-line.md)). "
           "`python -m camserver --check-config` checks a file without starting anything.", ""]
    heading = None
    for key in all_keys():
        table = _table_of(key.name)
        if table != heading:
            heading = table
            out += ["", f"## `{table}`", "", "| key | type | default | allowed | description |",
                    "| --- | --- | --- | --- | --- |"]
        doc = key.doc or "**no description yet** (add one in camserver/config/descriptions.py)"
        out.append(f"| `{key.name}` | {key.type} | `{cell(key.default)}` | {cell(key.allowed)} | {cell(doc)} |")
    return "\n".join(out) + "\n"
