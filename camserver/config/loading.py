"""Loading: a TOML file plus command-line overrides into one validated Config, every mistake reported at once.

pydantic finds every bad value in one pass; each of its errors becomes one line naming the dotted key
(`events.zones[0].points`), the value, and what the key allows in camserver's words (checks.allowed),
never pydantic's own ("Input should be ...").
"""

from __future__ import annotations

import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from .checks import ConfigError, Inline, allowed
from .tables import Config


def _item(annotation: Any) -> Any:
    """What a list, tuple, set or dict annotation holds (None when it is no container)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None) and a is not Ellipsis]
    origin = typing.get_origin(annotation)
    if origin in (tuple, list, frozenset, set) and args:
        return args[0]
    if origin is dict and args:
        return args[-1]
    if origin in (typing.Union, types.UnionType) and len(args) == 1:  # X | None
        return _item(args[0])
    return None


def _walk(loc: tuple[int | str, ...]) -> tuple[str, FieldInfo | None, type[BaseModel] | None]:
    """The dotted key of a pydantic location, the field it ends at, and the model that holds that field."""
    key, info, owner = "", None, None
    annotation: Any = Config
    before = key
    for part in loc:
        if part == "[key]":  # a table's key itself is wrong (a group name): the error names the table
            key = before
            break
        before = key
        bare = typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Annotated else annotation
        model = bare if isinstance(bare, type) and issubclass(bare, BaseModel) else None
        if model is not None and isinstance(part, str):
            owner, info = model, model.model_fields.get(part)
            if info is None or not any(isinstance(m, Inline) for m in info.metadata):
                key += f".{part}"
            annotation = info.annotation if info is not None else None
        elif typing.get_origin(bare) in (typing.Union, types.UnionType) and _item(bare) is None:
            continue  # the member of a union pydantic tried (int, str, ...): not part of the key
        else:  # an index into a list, or a key of a table of tables (a camera id, a label)
            key += f"[{part}]" if isinstance(part, int) else f".{part}"
            annotation = _item(bare)
    return key.lstrip("."), info, owner


def _problem(error: Mapping[str, Any]) -> tuple[str, Any, str]:
    """One pydantic error as (dotted key, value, what is allowed)."""
    key, info, owner = _walk(tuple(error["loc"]))
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    if kind == "camserver":
        return f"{key}{ctx['key']}".lstrip("."), ctx.get("shown", value), ctx["allowed"]
    if kind == "extra_forbidden":
        if owner is None or owner is Config:
            return key, f"[{key}]", f"unknown table; allowed: {', '.join(Config.model_fields)}"
        return key, value, f"unknown key; allowed: {', '.join(owner.model_fields)}"
    if kind == "missing":
        return key, None, "is required" + (f"; must be {allowed(info)}" if info is not None else "")
    if kind in ("model_type", "model_attributes_type"):
        return key, value, "must be a table"
    return key, value, "must be " + allowed(info) if info is not None else error["msg"]


def from_mapping(data: Mapping[str, Any]) -> Config:
    """Build a Config from nested dicts (a parsed TOML file plus overrides). Raises ConfigError with every mistake."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems: dict[str, tuple[str, Any, str]] = {}
        for error in exc.errors(include_url=False):
            problem = _problem(error)
            problems.setdefault(problem[0], problem)  # a union's members each complain: one line per key
        first, *more = problems.values()
        raise ConfigError(*first, more=tuple(more)) from None


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


def schema() -> dict[str, Any]:
    """The JSON schema of config.toml, from the models (what `--config-schema` prints)."""
    return Config.model_json_schema(mode="validation")
