"""What a PATCH of http.users and the tokens must respect: every password it sends is hashed before
config.toml is written (the page never writes a plain password), and no patch leaves the server
without an admin credential it had.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..passwords import hash_password, is_hashed
from .server import HttpConfig

HIDDEN = "(hidden)"  # writeback.HIDDEN: a redacted value sent back, restored from the file afterwards


def _hashed(password: Any) -> Any:
    if isinstance(password, str) and password and HIDDEN not in password and not is_hashed(password):
        return hash_password(password)
    return password


def _stored(before: Mapping[str, Any], name: str) -> Any:
    users = before.get("http", {}).get("users", {}) if isinstance(before.get("http"), Mapping) else {}
    entry = users.get(name) if isinstance(users, Mapping) else None
    return entry.get("password") if isinstance(entry, Mapping) else entry


def hash_passwords(patch: Mapping[str, Any], before: Mapping[str, Any]) -> Mapping[str, Any]:
    """The patch with every plain password under http.users replaced by its hash (blocking: ~30 ms each), and
    a redacted one (a role changed, the password kept) by what the file holds for that user, in either form."""
    http = patch.get("http")
    users = http.get("users") if isinstance(http, Mapping) else None
    if not isinstance(users, Mapping):
        return patch
    hashed: dict[str, Any] = {}
    for name, entry in users.items():
        if isinstance(entry, Mapping) and entry.get("password") == HIDDEN and _stored(before, name):
            entry = {**entry, "password": _stored(before, name)}
        elif isinstance(entry, Mapping) and "password" in entry:
            entry = {**entry, "password": _hashed(entry["password"])}
        elif isinstance(entry, str):
            entry = _hashed(entry)
        hashed[name] = entry
    assert isinstance(http, Mapping)
    return {**patch, "http": {**http, "users": hashed}}


def lockout(before: HttpConfig, after: HttpConfig) -> str | None:
    """Why the new [http] would leave no admin while the old one had one (None: fine)."""
    if (before.admins or before.admin_token) and not (after.admins or after.admin_token):
        last = ", ".join(sorted(before.admins)) or "http.admin_token"
        return (f"http.users: {last} is the last admin; removing or demoting it would leave nobody who may change "
                "settings: make another user an admin first")
    return None


def users_shown(http: HttpConfig) -> list[dict[str, Any]]:
    """The users as the page lists them: name, role, and whether the password is stored hashed."""
    return [{"name": u.name, "role": u.role, "hashed": is_hashed(u.password)} for u in http.users]


def tokens_shown(http: HttpConfig) -> dict[str, bool]:
    """Which tokens are set (never their values)."""
    return {"token": bool(http.token), "admin_token": bool(http.admin_token)}
