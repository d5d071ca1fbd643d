"""The page's session cookie: its secret, its signature, its lifetime, and logouts that outlast a restart.

A cookie is `<issued>.<nonce>.<user>.<role>.<mac>`, HMAC-SHA256 under a key derived from a random
secret kept in storage.dir and from the configured credentials (session.py explains why signed).

Its age is measured on a `SteadyClock`: wall-clock seconds read once at start-up, advanced by a
monotonic clock that counts suspend (CLOCK_BOOTTIME). Within a process a wall-clock step (a laptop
after suspend, a Raspberry Pi without an RTC when NTP syncs) moves nothing, so a session neither
dies when the clock steps back nor ages a day when it steps forward. Across a restart the new
process starts from the wall clock of its start; a cookie that looks issued "in the future" then
(the clock was stepped back since) is taken as new rather than refused, so its life can at most
double (two lifetimes), never end early. A forged time cannot get in: the time is under the MAC.

Logout revokes the cookie's nonce. Revocations are appended to a file in storage.dir before the
logout answers, loaded at start-up, and forgotten when the cookie they revoke would have expired
anyway, so a logged-out cookie stays logged out across restarts and the file stays small.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

log = logging.getLogger(__name__)

LIFETIME_S = 30 * 86400  # a cookie older than this is refused even if the browser kept it
SECRET_FILE = "session.key"
REVOKED_FILE = "sessions.revoked"
MAX_REVOKED = 10000  # revocations kept (a logout each); past it, those nearest their expiry go first
VIEWER, ADMIN = "viewer", "admin"


@dataclass(frozen=True)
class Identity:
    """How a request proved itself: via "token", "admin_token", "basic" or "session"; the user name if any; its role."""

    via: str
    user: str | None = None
    role: str = VIEWER

    @property
    def admin(self) -> bool:
        """Whether this credential carries the write permission."""
        return self.role == ADMIN

    def describe(self) -> str:
        """Who this is, for a refusal's detail."""
        if self.user:
            return f"user {self.user!r}"
        return "the viewer token" if self.via == "token" else "this session (viewer token)"


def _boottime() -> float:
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)  # counts suspend, unlike CLOCK_MONOTONIC
    except (AttributeError, OSError):
        return time.monotonic()


class SteadyClock:
    """Wall-clock seconds as of start-up, advanced by a monotonic clock: a wall-clock step does not move it."""

    def __init__(self, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = _boottime) -> None:
        self.monotonic = monotonic
        self._origin = wall() - monotonic()

    def __call__(self) -> float:
        return self._origin + self.monotonic()


def load_secret(directory: Path) -> bytes:
    """The installation's session secret from `directory`, created (mode 0600) on first use."""
    path = directory / SECRET_FILE
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    directory.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    os.replace(tmp, path)
    return secret


def _newest(revoked: dict[str, float], now: float) -> dict[str, float]:
    """The unexpired revocations, at most MAX_REVOKED of them (those that expire last)."""
    alive = sorted(((t, n) for n, t in revoked.items() if t > now), reverse=True)[:MAX_REVOKED]
    return {n: t for t, n in reversed(alive)}


class RevocationFile:
    """The revoked nonces in `directory` (None: kept in memory only), each with when its cookie expires anyway.

    Blocking file work: call load() and add() from an executor.
    """

    def __init__(self, directory: Path | None) -> None:
        self.path = directory / REVOKED_FILE if directory is not None else None
        self._appended = 0

    def load(self, now: float) -> dict[str, float]:
        """The unexpired revocations on disk, the file rewritten without the expired ones."""
        revoked: dict[str, float] = {}
        if self.path is None:
            return revoked
        try:
            text = self.path.read_text("ascii", errors="replace")
        except FileNotFoundError:
            return revoked
        for line in text.splitlines():
            expires, _, nonce = line.partition(" ")
            try:
                revoked[nonce] = float(expires)
            except ValueError:
                continue  # a line cut by a crash
        revoked = _newest(revoked, now)
        self.rewrite(revoked)
        return revoked

    def rewrite(self, revoked: dict[str, float]) -> None:
        """Replace the file with exactly `revoked`."""
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.writelines(f"{t:.0f} {n}\n" for n, t in revoked.items())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._appended = 0

    def add(self, nonce: str, expires: float, revoked: dict[str, float]) -> None:
        """Append one revocation (synced); compact the file once it holds as many lines again as `revoked`."""
        if self.path is None:
            return
        if self._appended >= max(len(revoked), 1000):
            self.rewrite(revoked)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="ascii") as f:
            f.write(f"{expires:.0f} {nonce}\n")
            f.flush()
            os.fsync(f.fileno())
        self._appended += 1


class SessionSigner:
    """Issues and checks session cookie values.

    Args:
        clock: seconds on a clock that wall-clock steps do not move (a SteadyClock); tests pass their own.
        revoked: revocations loaded from disk (nonce -> when its cookie expires anyway).
    """

    def __init__(self, secret: bytes, token: str, users: Mapping[str, str], clock: Callable[[], float] = time.time,
                 admin_token: str = "", admins: frozenset[str] = frozenset(),
                 revoked: dict[str, float] | None = None) -> None:
        parts = [b"camserver-session-v1", token.encode()]
        # admins' entries and the admin token are added only where configured: a server without
        # roles derives the same key as before them, so its sessions outlive the upgrade
        parts += [(f"{name}:{password}" + (":admin" if name in admins else "")).encode()
                  for name, password in sorted(users.items())]
        if admin_token:
            parts.append(b"admin-token:" + admin_token.encode())
        self.key = hmac.new(secret, b"\0".join(parts), hashlib.sha256).digest()
        self.clock = clock
        self.revoked: dict[str, float] = dict(revoked or {})  # nonce -> when its cookie expires anyway

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self.key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, user: str | None, role: str = VIEWER) -> str:
        """A new cookie value for `user` (None: a token) with its role."""
        name = base64.urlsafe_b64encode((user or "").encode()).decode().rstrip("=")
        payload = f"{int(self.clock())}.{secrets.token_urlsafe(12)}.{name}.{role}"
        return f"{payload}.{self._mac(payload)}"

    def _parse(self, value: str) -> tuple[float, str, str | None, str] | None:
        if not value.isascii():  # a header's bytes that were not UTF-8 arrive as surrogates: not ours
            return None
        payload, _, mac = value.rpartition(".")
        if not payload or not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            return None
        fields = payload.split(".")
        if len(fields) == 3:  # issued before roles existed: a viewer (valid only where no admin is configured)
            fields.append(VIEWER)
        if len(fields) != 4 or fields[3] not in (VIEWER, ADMIN):
            return None
        issued, nonce, name, role = fields
        try:
            user = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
            born = float(issued)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return born, nonce, user or None, role

    def verify(self, value: str) -> Identity | None:
        """The identity a cookie value stands for, or None (forged, expired, revoked)."""
        parsed = self._parse(value)
        if parsed is None:
            return None
        born, nonce, user, role = parsed
        # "issued in the future" means the clock was stepped back before a restart: see the module's docstring
        if not -LIFETIME_S <= self.clock() - born <= LIFETIME_S or nonce in self.revoked:
            return None
        return Identity("session", user, role)

    def revoke(self, value: str) -> tuple[str, float] | None:
        """Refuse this cookie value from now on (logout); returns (nonce, expiry) to keep, or None (not a cookie of ours)."""
        parsed = self._parse(value)
        if parsed is None:
            return None
        now = self.clock()
        if len(self.revoked) >= MAX_REVOKED:
            self.revoked = _newest(self.revoked, now)
            while len(self.revoked) >= MAX_REVOKED:
                self.revoked.pop(next(iter(self.revoked)))
        # a cookie is valid until born + LIFETIME_S at the latest (born may lie ahead of now, see verify)
        expires = parsed[0] + LIFETIME_S
        self.revoked[parsed[1]] = expires
        return parsed[1], expires
