"""Shared-secret checks for cameras and viewers: bearer header or ?token=, compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Mapping
from urllib.parse import parse_qs, urlsplit


def presented_token(headers: Mapping[str, str], path_or_query: str) -> str | None:
    """The token a client presents: `Authorization: Bearer <t>` first, else `?token=<t>`."""
    auth = headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    query = urlsplit(path_or_query).query if "?" in path_or_query else path_or_query
    values = parse_qs(query).get("token")
    return values[0] if values else None


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison; an absent token never matches."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def basic_user(headers: Mapping[str, str], users: Mapping[str, str]) -> str | None:
    """The user name if `Authorization: Basic` holds a known user and the right password."""
    scheme, _, value = headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or not users:
        return None
    try:
        name, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return name if password_ok(users, name, password) else None


def password_ok(users: Mapping[str, str], name: str, password: str) -> bool:
    """Whether `name` is a known user with this password (constant time in the password)."""
    expected = users.get(name)
    # compare against something even for an unknown user, so timing does not reveal names
    ok = same_secret(password, expected if expected is not None else "\0" * len(password))
    return ok and expected is not None
