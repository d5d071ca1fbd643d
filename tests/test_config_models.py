"""The config models: every mistake reported at once, choices refused in code too, and a JSON schema
(`--config-schema`) that config.toml validates against, key for key."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from camserver.config import ConfigError, LogConfig, RecordConfig, from_mapping, load

ROOT = Path(__file__).resolve().parent.parent
THREE_MISTAKES = ('[ingest]\nport = 70000\n[record]\nmode = "bogus"\n'
                  '[[events.zones]]\ncamera = "door"\nname = "porch"\npoints = [[0, 0], [1, 0]]\n')


def camserver(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m camserver ARGS` in cwd."""
    return subprocess.run([sys.executable, "-m", "camserver", *args], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ, YOLO_OFFLINE="1"), timeout=60)


def test_a_config_with_three_mistakes_reports_three_lines(tmp_path):
    """Three bad values in three tables: exit 2 and three lines, each naming the dotted key, the value, what is allowed."""
    (tmp_path / "c.toml").write_text(THREE_MISTAKES)
    result = camserver("--check-config", "--config", "c.toml", cwd=tmp_path)
    assert result.returncode == 2, result
    assert result.stderr.splitlines() == [
        "camserver: config error: ingest.port = 70000: must be an integer from 0 to 65535",
        "camserver: config error: events.zones[0].points = [[0, 0], [1, 0]]: must be 3 or more [x, y] pairs, "
        "each from 0 to 1 (relative to the frame)",
        "camserver: config error: record.mode = 'bogus': must be one of off, events, motion, continuous",
    ]
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "c.toml")
    assert [key for key, _, _ in info.value.problems] == ["ingest.port", "events.zones[0].points", "record.mode"]


def test_one_bad_value_is_one_line_even_where_a_key_takes_several_types(tmp_path):
    """A board setting may be a bool, a number or a string: a list there is one line, not one per type tried;
    mistakes inside tables of tables name their own keys."""
    with pytest.raises(ConfigError) as info:
        from_mapping({"cameras": {"door": {"settings": {"brightness": [1]}, "motion": {"recheck_s": "soon"}}},
                      "events": {"filters": {"person": {"min_area": -1}}}, "webhooks": [{"types": ["new"]}]})
    assert [(k, v) for k, v, _ in info.value.problems] == [
        ("cameras.door.motion.recheck_s", "soon"), ("cameras.door.settings.brightness", [1]),
        ("events.filters.person.min_area", -1), ("webhooks[0].url", None)]
    assert "must be a number from 0.1 to 86400" in str(info.value) and "is required" in str(info.value)


def test_a_table_where_a_list_of_tables_belongs_says_so():
    """`webhooks = { ... }` instead of [[webhooks]], a zone list that is a string: what is allowed, in words."""
    with pytest.raises(ConfigError) as info:
        from_mapping({"webhooks": {"url": "http://hooks.lan/x"}, "events": {"zones": "porch", "filters": ["person"]}})
    assert [(k, a) for k, _, a in info.value.problems] == [
        ("events.zones", "must be a list of tables ([[...]] entries)"), ("events.filters", "must be a table of tables"),
        ("webhooks", "must be a list of tables ([[...]] entries)")]


def test_a_loaded_config_cannot_be_changed_and_stays_hashable():
    """Every table is frozen, its tables of tables too ([events.filters.<label>], [cameras.<id>]), and a Config
    hashes, copies and compares like a value."""
    import copy

    config = from_mapping({"events": {"filters": {"person": {"min_area": 500}}},
                           "cameras": {"door": {"settings": {"vflip": True}, "motion": {"recheck_s": 2}}}})
    with pytest.raises(TypeError):
        config.events.filters["car"] = config.events.filters["person"]  # type: ignore[index]
    with pytest.raises(TypeError):
        config.cameras.of("door").settings["vflip"] = False  # type: ignore[index]
    with pytest.raises(ValidationError):
        config.motion.threshold = 3  # type: ignore[misc]
    assert hash(config) == hash(copy.deepcopy(config)) and copy.deepcopy(config) == config
    assert config.motion_for("door").recheck_s == 2.0 and config.motion_for("yard").recheck_s == 5.0


def test_choices_are_refused_when_a_table_is_built_in_code():
    """RecordConfig(mode="bogus") is refused as the file's value would be; a choice is matched without regard to
    case and kept lowercased; a table cannot be changed once built."""
    with pytest.raises(ValidationError, match="mode"):
        RecordConfig(mode="bogus")
    assert RecordConfig(mode="Continuous").mode == "continuous" and LogConfig(level="INFO").level == "info"
    with pytest.raises(ValidationError, match="port"):
        from camserver.config import IngestConfig
        IngestConfig(port=True)  # a bool is not a port, though Python counts it an int
    record = RecordConfig()
    with pytest.raises(ValidationError):
        record.mode = "off"  # type: ignore[misc]


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _check(schema: dict[str, Any], node: dict[str, Any], value: Any, where: str) -> list[str]:
    """The ways `value` breaks `node` of the JSON schema (the subset pydantic writes), as 'where: why'."""
    node = _resolve(schema, node)
    if "anyOf" in node:
        tries = [_check(schema, option, value, where) for option in node["anyOf"]]
        return [] if any(not t for t in tries) else [f"{where}: matches none of anyOf"]
    problems = []
    kind = node.get("type")
    if kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = kind is None or isinstance(value, TYPES[kind])
    if not ok:
        return [f"{where}: not {kind}"]
    if "enum" in node and value not in node["enum"] or "const" in node and value != node["const"]:
        problems.append(f"{where}: {value!r} not allowed")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in node and value < node["minimum"] or "maximum" in node and value > node["maximum"]:
            problems.append(f"{where}: out of range")
    if isinstance(value, str):
        if len(value) < node.get("minLength", 0) or "pattern" in node and not re.search(node["pattern"], value):
            problems.append(f"{where}: bad string")
    if isinstance(value, list):
        if len(value) < node.get("minItems", 0) or len(value) > node.get("maxItems", len(value)):
            problems.append(f"{where}: wrong length")
        for i, item in enumerate(value):
            prefix = node.get("prefixItems", [])
            sub = prefix[i] if i < len(prefix) else node.get("items")
            if sub is not None:
                problems += _check(schema, sub, item, f"{where}[{i}]")
    if isinstance(value, dict):
        properties = node.get("properties", {})
        problems += [f"{where}.{k}: required" for k in node.get("required", []) if k not in value]
        for k, item in value.items():
            if "propertyNames" in node:
                problems += _check(schema, node["propertyNames"], k, f"{where}.{k} (name)")
            if k in properties:
                problems += _check(schema, properties[k], item, f"{where}.{k}")
            elif node.get("additionalProperties") is False:
                problems.append(f"{where}.{k}: unknown key")
            elif isinstance(node.get("additionalProperties"), dict):
                problems += _check(schema, node["additionalProperties"], item, f"{where}.{k}")
    return problems


def _parses(line: str) -> bool:
    try:
        tomllib.loads(line)
    except tomllib.TOMLDecodeError:
        return False
    return True


def _with_examples(text: str) -> str:
    """config.toml with its commented keys (`# url = ...` in [detect]) and example tables ([[webhooks]],
    [cameras.door.motion] ...) written out; prose that only looks like a key (`# false = no tracking`) stays."""
    shipped = tomllib.loads(text)
    out, in_example, table = [], False, {}
    for line in text.splitlines():
        header = re.match(r"^# ?(\[\[?[a-z_.-]+\]\]?)\s*$", line)
        key = re.match(r"^# ?(([a-z_]+) *= .*)$", line)
        if real := re.match(r"^\[([a-z_]+)\]\s*$", line):
            table = shipped.get(real.group(1), {})
        if header:
            out.append(header.group(1))
            in_example = True
        elif key and _parses(key.group(1)) and (in_example or key.group(2) not in table):
            out.append(key.group(1))
        else:
            in_example = False
            out.append(line)
    return "\n".join(out) + "\n"


def _tables(schema: dict[str, Any], node: dict[str, Any], value: Any, where: str) -> list[tuple[str, set, set]]:
    """(where, the keys the file gives, the keys the schema names) for every table of the file."""
    node = _resolve(schema, node)
    found: list[tuple[str, set, set]] = []
    if isinstance(value, dict) and "properties" in node:
        named = {k for k in value if k in node["properties"] or not isinstance(node.get("additionalProperties"), dict)}
        found.append((where, named, set(node["properties"])))  # [cameras.<id>] keys are the schema's other keys
        for k, item in value.items():
            sub = node["properties"].get(k) or node.get("additionalProperties")
            if isinstance(sub, dict):
                found += _tables(schema, sub, item, f"{where}.{k}")
    elif isinstance(value, dict) and isinstance(node.get("additionalProperties"), dict):
        for k, item in value.items():
            found += _tables(schema, node["additionalProperties"], item, f"{where}.{k}")
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(value):
            found += _tables(schema, node["items"], item, f"{where}[{i}]")
    return found


def test_config_schema_validates_config_toml_and_names_the_same_keys(tmp_path):
    """`--config-schema` prints a JSON schema that config.toml (with and without its commented examples) satisfies,
    that a bad value breaks, and whose tables have exactly the keys config.toml writes for them."""
    result = camserver("--config-schema", cwd=tmp_path)
    assert result.returncode == 0, result
    schema = json.loads(result.stdout)
    shipped = tomllib.loads((ROOT / "config.toml").read_text())
    full = tomllib.loads(_with_examples((ROOT / "config.toml").read_text()))
    assert {"webhooks", "notify"} <= set(full) and "door" in full["cameras"] and "zones" in full["events"]
    for data in (shipped, full):
        assert _check(schema, schema, data, "config") == []
    # the examples load too (but [[notify]]'s, whose Telegram URL is a placeholder Apprise refuses)
    assert from_mapping({k: v for k, v in full.items() if k != "notify"}).cameras.of("door").motion.recheck_s == 2.0
    assert _check(schema, schema, {"record": {"mode": "bogus"}, "ingest": {"port": 70000, "prot": 1}}, "config") == [
        "config.record.mode: 'bogus' not allowed", "config.ingest.port: out of range", "config.ingest.prot: unknown key"]
    # key for key: every table config.toml writes out has the schema's keys, no more and no fewer (the examples
    # of [events.filters.<label>] and [cameras.<id>.*] show a few keys only: no more than the schema's)
    partial = re.compile(r"^config\.(events\.filters|cameras\.door)\.")
    tables = _tables(schema, schema, full, "config")
    assert len(tables) > 15
    for where, in_file, in_schema in tables:
        if partial.match(where + "."):
            assert in_file <= in_schema, where
        else:
            assert in_file == in_schema, (where, in_file ^ in_schema)
