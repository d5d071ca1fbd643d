"""The configuration reference: every key of every table, its type, default, allowed values and what it does.

All of it comes from the pydantic models in camserver/config/: the type from each field's annotation, the
default from the field, what is allowed from `checks.allowed` (the words the loader's error messages use),
the description from `Field(description=...)`. Nothing here is typed by hand.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Iterator, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ..config import Config, UserConfig
from ..config.checks import Inline, _bare, allowed


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


def _model(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _entries(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """("[]", Model) for an array of tables, ("<label>", Model) for a table of tables, else None."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple and args and _model(args[0]):
        return "[]", args[0]
    if origin is dict and args and _model(args[-1]):
        return "<label>", args[-1]
    return None


def _type(annotation: Any) -> str:
    """The TOML type of an annotation, in words."""
    annotation = _bare(annotation)
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if annotation in simple:
        return simple[annotation]
    if typing.get_origin(annotation) is Literal:
        return "string"
    if _model(annotation) or typing.get_origin(annotation) is dict:
        return "table"
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (tuple, frozenset) and args:
        if typing.get_origin(args[0]) is tuple:
            return "list of [x, y]" if typing.get_args(args[0])[0] is float else "table of strings"
        return "list of strings"
    return str(annotation)


def _default(info: FieldInfo, kind: str) -> str:
    if info.is_required():
        return "required"
    if info.default is None:
        return "no limit"
    if info.default_factory is not None or info.default in ({}, ()) and kind in ("table", "tables"):
        return "none"
    if info.default == () and kind == "table of strings":
        return "{}"
    if info.default == frozenset():
        return "every label"
    return toml_value(info.default)


def _keys(model: type[BaseModel], prefix: str) -> Iterator[Key]:
    """The keys of one table, in the model's order, then those of the tables inside it."""
    nested: list[Iterator[Key]] = []
    for name, info in model.model_fields.items():
        if info.exclude:
            continue  # filled in from the table's own key (a user's name)
        full, annotation = f"{prefix}{name}", info.annotation
        if any(isinstance(m, Inline) for m in info.metadata):  # [cameras.<id>]: its tables, one key each
            entry = _entries(annotation)
            assert entry is not None
            for sub, sub_info in entry[1].model_fields.items():
                yield Key(f"{prefix}<id>.{sub}", "table", "none", allowed(sub_info), sub_info.description or "")
            continue
        if model is Config and _model(annotation):  # a section: its keys, under its name
            yield from _keys(_model(annotation), f"{name}.")  # type: ignore[arg-type]
            continue
        if name == "users" and model.__name__ == "HttpConfig":
            yield Key(full, "tables", "{}", "see below", info.description or "")
            nested.append(_keys(UserConfig, f"{full}.<name>."))
            continue
        if entry := _entries(annotation):
            marker, entry_model = entry
            yield Key(full, "array of tables" if marker == "[]" else "tables", "none", "see below", info.description or "")
            entry_keys = _keys(entry_model, f"{full}[]." if marker == "[]" else f"{full}.{marker}.")
            if model is Config:  # [[webhooks]], [[notify]]: a table of their own, where they are
                yield from entry_keys
            else:
                nested.append(entry_keys)
            continue
        kind = _type(annotation)
        yield Key(full, kind, _default(info, kind), allowed(info), info.description or "")
    for keys in nested:
        yield from keys


def all_keys() -> list[Key]:
    """Every key of the configuration, table by table, in the models' order."""
    return list(_keys(Config, ""))


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
           "`python -m camserver --check-config` checks a file without starting anything, and "
           "`python -m camserver --config-schema` prints the JSON schema this page is made from.", ""]
    heading = None
    for key in all_keys():
        table = _table_of(key.name)
        if table != heading:
            heading = table
            out += ["", f"## `{table}`", "", "| key | type | default | allowed | description |",
                    "| --- | --- | --- | --- | --- |"]
        doc = key.doc or "**no description yet** (add `description=` to the key's `Field` in camserver/config/)"
        out.append(f"| `{key.name}` | {key.type} | `{cell(key.default)}` | {cell(key.allowed)} | {cell(doc)} |")
    return "\n".join(out) + "\n"
