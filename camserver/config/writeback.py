"""Write-back: a JSON merge patch (RFC 7396) applied to config.toml's own TOML document, so that every
comment and the layout stay; validated by the config models before anything is written; the previous
file kept as a backup; written atomically (a temporary file, fsync, rename).

A version is a hash of the file's bytes: a writer sends the version it read (`If-Match`), and a file
changed since is refused (`VersionMismatch`), so two writers never lose each other's change.

Secrets (tokens, passwords, Apprise URLs, a webhook's credentials) are shown redacted; a redacted
value sent back unchanged means "keep what the file has", and the redaction marker itself is never
written into the file.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, MutableMapping
from urllib.parse import urlsplit, urlunsplit

import tomlkit
from tomlkit.items import InlineTable

from .checks import ConfigError
from .loading import from_mapping
from .server import HttpConfig
from .tables import Config
from .userpatch import hash_passwords, lockout

HIDDEN = "(hidden)"  # what a secret is shown as; sent back unchanged, the file's value stays
SECRET_KEYS = frozenset({"token", "admin_token", "triton_token", "password"})
# the keys a running server takes without a restart: [events]' shapes (events/engine.py's apply_shapes),
# the [[notify]] rules (integrations/notify.py's set_rules), recording and the storage budget (web/liveapply.py)
SHAPE_KEYS = frozenset({"events.zones", "events.masks", "events.filters"})
LIVE_KEYS = SHAPE_KEYS | {"notify", "record.mode", "record.retain_days", "record.pre_capture_s",
                          "record.post_capture_s", "storage.max_mb", "storage.min_free_mb",
                          "http.users", "http.token", "http.admin_token"}  # the last three: web/session.py's update
LIVE_CAMERA_KEYS = frozenset({"name", "record"})  # cameras.<id>.name and .record: web/liveapply.py


def camera_key(key: str) -> str | None:
    """The key of a camera's table a changed key names (cameras.<id>.<key>, as changed_keys names it), else None."""
    parts = key.split(".")
    return parts[2] if len(parts) == 3 and parts[0] == "cameras" else None


def is_live(key: str) -> bool:
    """Whether a changed key (as changed_keys names it) is taken by a running server without a restart."""
    return key in LIVE_KEYS or key.split(".")[0] == "groups" or camera_key(key) in LIVE_CAMERA_KEYS


def live_keys_shown() -> list[str]:
    """The live keys as GET /api/config lists them (a camera's as cameras.<id>.name)."""
    return sorted(LIVE_KEYS | {f"cameras.<id>.{k}" for k in LIVE_CAMERA_KEYS} | {"groups"})
BACKUPS = 5  # config.toml.1.bak (newest) .. config.toml.5.bak
MAX_DEPTH = 16

Path_ = tuple[str | int, ...]


class VersionMismatch(Exception):
    """The file changed since the writer read it."""


class PatchRefused(ValueError):
    """A patch that is no JSON merge patch of config.toml's tables."""


def version_of(raw: bytes) -> str:
    """The version of a file: a hash of its bytes."""
    return hashlib.sha256(raw).hexdigest()[:16]


def _redact_url(url: str) -> str:
    """A webhook URL without its user:password (and without its query, which may carry a token)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return HIDDEN
    if parts.username is None and not parts.query:
        return url
    netloc = (f"{HIDDEN}@" if parts.username is not None else "") + host + port
    return urlunsplit((parts.scheme, netloc, parts.path, HIDDEN if parts.query else "", ""))


def secret_shown(path: Path_, value: str) -> str | None:
    """How a secret at `path` is shown, or None when the value there is no secret."""
    if not value:
        return None  # "" (none set) says nothing
    last = path[-1]
    if last in SECRET_KEYS or (len(path) == 3 and path[:2] == ("http", "users")):
        return HIDDEN
    if len(path) == 4 and path[0] == "notify" and path[2] == "urls":
        from .apprise_urls import redact as redact_apprise  # imports Apprise: only when there are URLs
        return redact_apprise(value)
    if len(path) >= 3 and path[0] == "webhooks" and path[2] == "headers":
        return HIDDEN
    if len(path) == 3 and path[0] == "webhooks" and path[2] == "url":
        return _redact_url(value)
    return None


def redact(data: Any, path: Path_ = ()) -> Any:
    """A copy of plain config data (the file's or the effective config's) with every secret redacted."""
    if isinstance(data, Mapping):
        return {k: redact(v, (*path, k)) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [redact(v, (*path, i)) for i, v in enumerate(data)]
    if isinstance(data, str):
        shown = secret_shown(path, data)
        return data if shown is None else shown
    return data


def _at(data: Any, path: Path_) -> Any:
    for part in path:
        if isinstance(part, int) and isinstance(data, list) and part < len(data):
            data = data[part]
        elif isinstance(part, str) and isinstance(data, Mapping) and part in data:
            data = data[part]
        else:
            return None
    return data


def _kind(path: Path_) -> Path_:
    """Where a secret sits, whatever its index or user name: ("notify", "*", "urls", "*")."""
    kind = tuple("*" if isinstance(p, int) else p for p in path)
    return ("http", "users", "*", *kind[3:]) if kind[:2] == ("http", "users") and len(kind) > 2 else kind


def _secrets(data: Any, path: Path_ = (), found: dict[tuple[Path_, str], set[str]] | None = None
             ) -> dict[tuple[Path_, str], set[str]]:
    """Every secret of the file by (kind, how it is shown): the values it may stand for."""
    found = {} if found is None else found
    if isinstance(data, Mapping):
        for k, v in data.items():
            _secrets(v, (*path, k), found)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            _secrets(v, (*path, i), found)
    elif isinstance(data, str):
        shown = secret_shown(path, data)
        if shown is not None and shown != data:
            found.setdefault((_kind(path), shown), set()).add(data)
    return found


def restore_secrets(patch: Any, current: Any) -> Any:
    """The patch with every redacted value the file's secrets are shown as replaced by that secret.

    The secret at the same place wins; else the one secret of that kind shown so (a [[notify]] table
    that moved up when the one before it was removed).

    Raises:
        PatchRefused: the redaction marker, or a redacted value several secrets are shown as.
    """
    return _restore(patch, current, _secrets(current), ())


def _restore(patch: Any, current: Any, secrets: dict[tuple[Path_, str], set[str]], path: Path_) -> Any:
    if isinstance(patch, Mapping):
        return {k: _restore(v, current, secrets, (*path, k)) for k, v in patch.items()}
    if isinstance(patch, list):
        return [_restore(v, current, secrets, (*path, i)) for i, v in enumerate(patch)]
    if not isinstance(patch, str) or secret_shown(path, "x") is None:
        return patch
    kept = _at(current, path)
    if isinstance(kept, str) and secret_shown(path, kept) == patch:
        return kept
    dotted = ".".join(str(p) for p in path)
    stands_for = secrets.get((_kind(path), patch), set())
    if len(stands_for) == 1:
        return next(iter(stands_for))
    if stands_for:
        raise PatchRefused(f"{dotted}: {patch!r} is how several secrets are shown; send the secret itself")
    if HIDDEN in patch:
        raise PatchRefused(f"{dotted}: {HIDDEN} is the redaction marker; send the secret, or leave the key out")
    return patch


def _plain(value: Any) -> Any:
    """tomlkit items as plain Python values (what the models validate)."""
    return value.unwrap() if hasattr(value, "unwrap") else value


def _check_patch(patch: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise PatchRefused("the patch nests too deep")
    if isinstance(patch, Mapping):
        for k, v in patch.items():
            if not isinstance(k, str):
                raise PatchRefused("keys must be strings")
            _check_patch(v, depth + 1)
    elif isinstance(patch, list):
        for v in patch:
            if v is None:
                raise PatchRefused("null inside an array: TOML has no null")
            _check_patch(v, depth + 1)
    elif isinstance(patch, float) and patch != patch:
        raise PatchRefused("NaN is no config value")


def merge(target: MutableMapping[str, Any], patch: Mapping[str, Any]) -> None:
    """RFC 7396 merge of `patch` into a tomlkit table (or document), in place; the untouched keys keep their
    comments and layout. null removes a key; an object merges into a table; anything else replaces."""
    for key, value in patch.items():
        if value is None:
            if key in target:
                del target[key]
        elif isinstance(value, Mapping):
            existing = target.get(key)
            if not isinstance(existing, MutableMapping):
                # inside an inline table ({ ... }) a new table must be inline too
                target[key] = tomlkit.inline_table() if isinstance(target, InlineTable) else tomlkit.table()
                existing = target[key]
            merge(existing, value)
        else:
            target[key] = value


def changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The dotted keys (table.key, or a top-level array such as notify) whose value differs; a camera's table
    one level deeper (cameras.door.name, cameras.door.motion). Takes the file's tables or a dumped Config."""
    keys: list[str] = []
    for table in sorted(set(before) | set(after)):
        old, new = before.get(table), after.get(table)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            if table == "cameras":
                old, new = _cameras_flat(old), _cameras_flat(new)
            for k in sorted(set(old) | set(new)):
                o, n = old.get(k), new.get(k)
                if o == n:
                    continue
                if table == "cameras" and k != "ids" and isinstance(o or {}, Mapping) and isinstance(n or {}, Mapping):
                    o, n = o or {}, n or {}
                    keys += [f"cameras.{k}.{sub}" for sub in sorted(set(o) | set(n)) if o.get(sub) != n.get(sub)]
                else:
                    keys.append(f"{table}.{k}")
        elif old != new:
            keys.append(table)
    return keys


def _cameras_flat(cameras: Mapping[str, Any]) -> dict[str, Any]:
    """[cameras] as the file has it: a dumped Config keeps the cameras' tables under per_camera, with every key
    (None where not given)."""
    tables = {**{k: v for k, v in cameras.items() if k not in ("ids", "per_camera")}, **cameras.get("per_camera", {})}
    return {"ids": cameras.get("ids"), **{k: _given(v) for k, v in tables.items()}}


def _given(value: Any) -> Any:
    """A table without the keys not given (None) and the tables left empty."""
    if not isinstance(value, Mapping):
        return value
    kept = {k: _given(v) for k, v in value.items()}
    return {k: v for k, v in kept.items() if v is not None and v != {}}


@dataclass(frozen=True)
class Patched:
    """What a patch did: the file's new version, its config, and which keys changed."""

    version: str
    config: Config
    changed: list[str]

    @property
    def live(self) -> list[str]:
        """The changed keys the running server takes at once."""
        return [k for k in self.changed if is_live(k)]

    @property
    def restart(self) -> list[str]:
        """The changed keys that take effect after a restart."""
        return [k for k in self.changed if not is_live(k)]


@dataclass(frozen=True)
class ConfigFile:
    """config.toml as the server was started from it, and the command-line overrides laid over it."""

    path: Path
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    backups: int = BACKUPS

    def read(self) -> tuple[bytes, str]:
        """The file's bytes and version (b"" when it does not exist yet)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raw = b""
        return raw, version_of(raw)

    def effective(self, data: Mapping[str, Any]) -> Config:
        """The file's tables with the overrides over them, validated. Raises ConfigError."""
        merged = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
        for table, values in self.overrides.items():
            merged[table] = {**merged.get(table, {}), **{k: v for k, v in values.items() if v is not None}}
        return from_mapping(merged)

    def apply(self, patch: Mapping[str, Any], if_match: str | None) -> Patched:
        """Merge `patch` into the file, validate, keep a backup, write atomically. Blocking: run off the loop.

        Raises:
            VersionMismatch: the file is not at `if_match` any more.
            PatchRefused: not a merge patch of tables.
            ConfigError: the result is not a valid configuration (every mistake).
        """
        if not isinstance(patch, Mapping):
            raise PatchRefused("a merge patch of config.toml is a JSON object of tables")
        _check_patch(patch)
        raw, version = self.read()
        if if_match is not None and if_match.strip().removeprefix("W/").strip('"') not in (version, "*"):
            raise VersionMismatch(version)
        try:
            document = tomlkit.parse(raw.decode("utf-8"))
            before = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError, tomlkit.exceptions.TOMLKitError) as exc:
            raise ConfigError("--config", str(self.path), f"not valid TOML now: {exc}") from None
        try:
            merge(document, restore_secrets(hash_passwords(patch, before), before))
            text = tomlkit.dumps(document)
        except (ValueError, TypeError) as exc:  # PatchRefused is one; tomlkit's own: a value TOML cannot hold
            raise PatchRefused(str(exc)) from None
        after = tomllib.loads(text)
        config = self.effective(after)  # ConfigError: nothing written
        if (lost := lockout(self._http(before), config.http)) is not None:
            raise PatchRefused(lost)
        new = text.encode("utf-8")
        if new != raw:
            self._backup(raw)
            self._write(new)
        return Patched(version_of(new), config, changed_keys(before, after))

    def _http(self, before: Mapping[str, Any]) -> HttpConfig:
        try:
            return self.effective(before).http
        except ConfigError:  # the file was invalid already: nothing to lock out of
            return HttpConfig()

    def _backup(self, raw: bytes) -> None:
        """config.toml.1.bak is the file before this write; older ones shift up, the oldest past `backups` goes."""
        if not raw:
            return
        names = [self.path.with_name(f"{self.path.name}.{n}.bak") for n in range(1, self.backups + 1)]
        for older, newer in zip(reversed(names[1:]), reversed(names[:-1])):
            if newer.exists():
                os.replace(newer, older)
        self._atomic(names[0], raw)

    def _write(self, data: bytes) -> None:
        self._atomic(self.path, data)

    @staticmethod
    def _atomic(path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)  # config.toml holds secrets: keep its mode
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
