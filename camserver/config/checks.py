"""Validation building blocks: ConfigError, the models' base, typed keys, and what each key allows.

Every table is a frozen pydantic model (`Table`: unknown keys refused). A key's type, bounds and
choices are its annotation and `Field(...)`; a check pydantic cannot express (a list of camera ids, a
token) is a plain function returning its complaint, run before the value is converted (`checked`).
`allowed()` says in words what a key takes, from its field alone: the loader's error messages and the
docs' configuration reference both use it, so the two cannot drift.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal, Mapping

import annotated_types as at
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Strict, StringConstraints, WithJsonSchema
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

CAMERA_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[str, ...] = typing.get_args(LogLevel)
ZONE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
TOPIC_RE = re.compile(r"^[A-Za-z0-9_/-]{1,64}$")
Points = tuple[tuple[float, float], ...]


class ConfigError(Exception):
    """One or more configuration values are missing, unknown or out of range: one line each.

    `key`, `value` and `allowed` are the first problem's; `problems` holds every (key, value, allowed).
    """

    def __init__(self, key: str, value: Any, allowed: str,
                 more: tuple[tuple[str, Any, str], ...] = ()) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        self.problems = ((key, value, allowed), *more)
        super().__init__("\n".join(f"config error: {k} = {v!r}: {a}" for k, v, a in self.problems))

    @property
    def lines(self) -> list[str]:
        """One line per problem."""
        return str(self).splitlines()


class Table(BaseModel):
    """A TOML table: frozen, unknown keys refused. The keys' types are strict (Int, Bool ... below): a bool is
    not an integer and "1" is not a number, as the TOML file would have it."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class FrozenDict(dict):  # type: ignore[type-arg]
    """A table of tables as a model keeps it: read like a dict, never changed, hashable (so the models stay so)."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:  # copy and deepcopy build a new one rather than fill it in
        return (FrozenDict, (dict(self),))

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a configuration table cannot be changed")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse  # type: ignore[assignment]


# Annotated metadata of a dict field: kept as a FrozenDict
FROZEN = AfterValidator(FrozenDict)


@dataclass(frozen=True)
class Allowed:
    """Field metadata: what the key takes, in words, where its type does not say it (a pattern's meaning)."""

    text: str


@dataclass(frozen=True)
class Inline:
    """Field metadata: the field holds its table's own sub-tables; its name is not part of their keys."""


def problem(allowed: str, key: str = "", shown: Any = ...) -> PydanticCustomError:
    """A validation error in camserver's words; `key` is appended to the field's dotted key, `shown` replaces
    the value (a secret, a redacted URL)."""
    ctx: dict[str, Any] = {"allowed": allowed, "key": key}
    if shown is not ...:
        ctx["shown"] = shown
    return PydanticCustomError("camserver", "{allowed}", ctx)


Check = Callable[[Any], str | None]


@dataclass(frozen=True)
class _Checked(BeforeValidator):
    """A before-validator running a `Check` on the raw TOML value (and converting it, if asked)."""

    check: Check | None = None


def checked(check: Check, convert: Callable[[Any], Any] | None = None) -> Any:
    """Annotated metadata: run `check` on the raw value; its complaint is the error, and what is allowed."""

    def run(v: Any) -> Any:
        if complaint := check(v):
            raise problem(complaint)
        return convert(v) if convert is not None else v

    return _Checked(run, check=check)


def _lower(v: Any) -> Any:
    return v.lower() if isinstance(v, str) else v


# Annotated metadata of a Literal of choices: matched without regard to case, stored lowercased
LOWER = BeforeValidator(_lower)


Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]  # an int is taken and stored as a float
Bool = Annotated[bool, Strict()]
AnyText = Annotated[str, Strict()]
Text = Annotated[str, Strict(), StringConstraints(min_length=1)]


def matching(regex: re.Pattern[str]) -> StringConstraints:
    """Annotated metadata: a non-empty string matching `regex` (with an `Allowed` saying what that means)."""
    return StringConstraints(min_length=1, pattern=regex.pattern)


CameraId = Annotated[str, Strict(), matching(CAMERA_ID_RE), Allowed("letters, digits, '-' or '_', 1 to 32 characters")]
ZoneName = Annotated[str, Strict(), matching(ZONE_NAME_RE), Allowed("letters, digits, '-' or '_', 1 to 32 characters")]
Topic = Annotated[str, Strict(), matching(TOPIC_RE), Allowed("letters, digits, '_', '-' or '/'")]


def _camera_name(v: Any) -> str | None:
    if not isinstance(v, str) or not 1 <= len(v.strip()) <= 40 or len(v) > 40 or not v.isprintable():
        return "must be a name of 1 to 40 printable characters (no control characters), e.g. \"Front door\""
    return None


CameraName = Annotated[str, checked(_camera_name)]


def _group_name(v: Any) -> str | None:
    if not isinstance(v, str) or not v.strip() or len(v) > 32 or not v.isprintable() or v != v.strip():
        return 'must be a group name of 1 to 32 printable characters, not starting or ending with a space, e.g. "Outside"'
    return None


GroupName = Annotated[str, checked(_group_name)]


def _camera_ids(v: Any) -> str | None:
    if not isinstance(v, (list, tuple)) or not all(isinstance(i, str) and CAMERA_ID_RE.match(i) for i in v):
        return "must be a list of camera ids (letters, digits, '-', '_', 1 to 32 characters)"
    if len(set(v)) != len(v):
        return "must not repeat an id"
    return None


def _token(v: Any) -> str | None:
    if not isinstance(v, str) or (v and len(v) < 8) or any(c.isspace() for c in v):
        return "must be empty (no token) or at least 8 characters without spaces"
    return None


def _labels(v: Any) -> str | None:
    if not isinstance(v, (list, tuple)) or not v or not all(isinstance(x, str) and x for x in v):
        return 'must be a non-empty list of labels, e.g. ["person", "car"], or ["*"] for every label'
    return None


EVENT_TYPES = ("new", "update", "end")


def _event_types(v: Any) -> str | None:
    if not isinstance(v, (list, tuple)) or not v or not all(t in EVENT_TYPES for t in v):
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


def _zone_names(v: Any) -> str | None:
    if not isinstance(v, (list, tuple)) or not all(isinstance(z, str) and ZONE_NAME_RE.match(z) for z in v):
        return 'must be a list of zone names from [[events.zones]], e.g. ["porch"]; [] = anywhere'
    return None


def _points(v: Any) -> str | None:
    if not isinstance(v, (list, tuple)) or len(v) < 3 or not all(
        isinstance(p, (list, tuple)) and len(p) == 2
        and all(isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c <= 1 for c in p)
        for p in v
    ):
        return "must be 3 or more [x, y] pairs, each from 0 to 1 (relative to the frame)"
    return None


Token = Annotated[str, checked(_token)]
Url = Annotated[str, checked(_url)]
CameraIds = Annotated[tuple[str, ...], checked(_camera_ids)]
OptionalCameraIds = Annotated[tuple[str, ...], checked(lambda v: None if v == [] else _camera_ids(v))]
Labels = Annotated[tuple[str, ...], checked(_labels)]
OptionalLabels = Annotated[tuple[str, ...], checked(lambda v: None if v == [] else _labels(v))]
EventTypes = Annotated[tuple[str, ...], checked(_event_types)]
ZoneNames = Annotated[tuple[str, ...], checked(_zone_names)]
Headers = Annotated[tuple[tuple[str, str], ...], checked(_headers, lambda v: tuple(sorted(v.items()))),
                    WithJsonSchema({"type": "object", "additionalProperties": {"type": "string"}})]
PolygonPoints = Annotated[Points, checked(_points, lambda v: tuple((float(x), float(y)) for x, y in v))]
# a label set: ["*"] (or none given) is every label, stored as the empty set
LabelSet = Annotated[frozenset[str], checked(_labels, lambda v: frozenset() if "*" in v else frozenset(v))]


def _span(info: FieldInfo) -> str:
    lo = next((m.ge for m in info.metadata if isinstance(m, at.Ge)), None)
    hi = next((m.le for m in info.metadata if isinstance(m, at.Le)), None)
    return f" from {lo} to {hi}" if hi is not None and lo is not None else f" >= {lo}" if lo is not None else ""


def _bare(annotation: Any) -> Any:
    """The annotation without `| None` and `Annotated`."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Annotated else annotation


def allowed(info: FieldInfo) -> str:
    """What a key takes, in words ("an integer from 0 to 65535", "one of off, events"), from its field."""
    for m in info.metadata:
        if isinstance(m, Allowed):
            return m.text
        if isinstance(m, _Checked) and m.check is not None:
            return (m.check(_Probe()) or "any").removeprefix("must be ")
    annotation = _bare(info.annotation)
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(typing.get_args(annotation))
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer" + _span(info)
    if annotation is float:
        return "a number" + _span(info)
    if annotation is str:
        return "a non-empty string" if any(getattr(m, "min_length", 0) for m in info.metadata) else "a string"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a table"
    item = typing.get_args(annotation)[0] if typing.get_args(annotation) else None
    if typing.get_origin(annotation) is tuple and isinstance(item, type) and issubclass(item, BaseModel):
        return "a list of tables ([[...]] entries)"
    if typing.get_origin(annotation) is dict:
        return "a table of tables"
    return "any"


class _Probe:
    """A value no check accepts: a check's complaint about it says what the key allows."""

    def __repr__(self) -> str:
        return "<probe>"
