"""Shared-secret checks for cameras and viewers: bearer header or ?token=, compared in constant time.

Headers come from clients: they may be repeated, or carry bytes that are not UTF-8 (aiohttp and
websockets keep them as surrogate escapes). Neither may raise: an ambiguous or undecodable
credential is simply no credential.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any, Mapping
from urllib.parse import parse_qs, urlsplit

from .passwords import verify


def authorization(headers: Any) -> str | None:
    """The one Authorization header, or None when there is none or more than one."""
    getall = getattr(headers, "get_all", None) or getattr(headers, "getall", None)
    if getall is not None:
        try:
            values = list(getall("Authorization"))
        except KeyError:  # multidict's getall without a default
            values = []
    else:
        value = headers.get("Authorization")
        values = [] if value is None else [value]
    return values[0] if len(values) == 1 else None


def bearer_token(headers: Any) -> str | None:
    """The token in `Authorization: Bearer <t>`, or None."""
    scheme, _, value = (authorization(headers) or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def query_token(path_or_query: str) -> str | None:
    """The token in `?token=<t>`, or None."""
    query = urlsplit(path_or_query).query if "?" in path_or_query else path_or_query
    values = parse_qs(query).get("token")
    return values[0] if values else None


def presented_token(headers: Any, path_or_query: str) -> str | None:
    """The token a client presents: `Authorization: Bearer <t>` first, else `?token=<t>`."""
    token = bearer_token(headers)
    return token if token is not None else query_token(path_or_query)


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")  # a header's raw bytes, whatever they were


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison; an absent token never matches."""
    if given is None:
        return False
    return hmac.compare_digest(_bytes(given), _bytes(expected))


def basic_credentials(headers: Any) -> tuple[str, str] | None:
    """The (user, password) of `Authorization: Basic`, or None."""
    scheme, _, value = (authorization(headers) or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, _, password = base64.b64decode(_bytes(value.strip()), validate=True).decode().partition(":")
    except (binascii.Error, ValueError):  # not base64, or not UTF-8 inside
        return None
    return name, password


def basic_user(headers: Any, users: Mapping[str, str]) -> str | None:
    """The user name if `Authorization: Basic` holds a known user and the right password (blocking when hashed)."""
    given = basic_credentials(headers)
    if given is None or not users:
        return None
    return given[0] if password_ok(users, *given) else None


def password_ok(users: Mapping[str, str], name: str, password: str) -> bool:
    """Whether `name` is a known user with this password (a hash or plain text; constant time in the password).

    Blocking for ~30 ms when the password is stored hashed: the viewer side runs it in an executor.
    """
    # an unknown user is checked against a dummy hash, so that timing does not reveal names
    return verify(users.get(name), password)
