"""Who a viewer request comes from, what it may do, and the page's login: a form trades a credential for a cookie.

A browser cannot put a bearer token on an <img> or an EventSource, and a token in the page's URL
ends up in proxy and access logs. So `POST /api/login` checks the viewer token or a user's
password once and sets an HttpOnly, SameSite=Strict cookie that every later request of the page
carries (streams, snapshots, the event feed). API clients keep using `Authorization` or `?token=`.

Two roles: a viewer may watch, an admin may also change things (the write permission, see
writes.py). The admin token (`http.admin_token`) and users with `role = "admin"` are admins; the
viewer token and the other users are viewers. With no admin credential configured at all, whoever
may watch may also write, as before roles existed.

The cookie is signed, not looked up: `<issued>.<nonce>.<user>.<role>.<mac>`, HMAC-SHA256 under a
key derived from a random secret kept in storage.dir and from the configured credentials. So
sessions survive a restart (a wall display recovers by itself), and changing a token, a password
or a role ends every session. Logout clears the cookie and revokes its nonce for the life of the
process.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from aiohttp import web

from ..auth import basic_user, bearer_token, password_ok, query_token, same_secret
from ..config import HttpConfig
from ..logsafe import ThrottledLog

log = logging.getLogger(__name__)

COOKIE = "camserver_session"
LIFETIME_S = 30 * 86400  # a cookie older than this is refused even if the browser kept it
SECRET_FILE = "session.key"
MAX_LOGIN_BYTES = 4096
MAX_FAILURES = 5  # failed logins per client address within FAILURE_WINDOW_S, then 429
FAILURE_WINDOW_S = 60.0
MAX_TRACKED = 4096  # client addresses with recent failures; forget them all rather than grow
MAX_REVOKED = 10000
VIEWER, ADMIN = "viewer", "admin"

# The app's shell and modules, and the login exchange: a browser needs them before it has a
# credential, and they hold no secrets. /healthz stays open for monitors.
PUBLIC_PATHS = frozenset({"/", "/healthz", "/api/session", "/api/login", "/api/logout"})
PUBLIC_PREFIX = "/static/"


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


class SessionSigner:
    """Issues and checks session cookie values."""

    def __init__(self, secret: bytes, token: str, users: Mapping[str, str], clock: Callable[[], float] = time.time,
                 admin_token: str = "", admins: frozenset[str] = frozenset()) -> None:
        parts = [b"camserver-session-v1", token.encode()]
        # admins' entries and the admin token are added only where configured: a server without
        # roles derives the same key as before them, so its sessions outlive the upgrade
        parts += [(f"{name}:{password}" + (":admin" if name in admins else "")).encode()
                  for name, password in sorted(users.items())]
        if admin_token:
            parts.append(b"admin-token:" + admin_token.encode())
        self.key = hmac.new(secret, b"\0".join(parts), hashlib.sha256).digest()
        self.clock = clock
        self.revoked: dict[str, float] = {}  # nonce -> when its cookie expires anyway

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self.key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, user: str | None, role: str = VIEWER) -> str:
        """A new cookie value for `user` (None: a token) with its role."""
        name = base64.urlsafe_b64encode((user or "").encode()).decode().rstrip("=")
        payload = f"{int(self.clock())}.{secrets.token_urlsafe(12)}.{name}.{role}"
        return f"{payload}.{self._mac(payload)}"

    def _parse(self, value: str) -> tuple[float, str, str | None, str] | None:
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
        if not 0 <= self.clock() - born <= LIFETIME_S or nonce in self.revoked:
            return None
        return Identity("session", user, role)

    def revoke(self, value: str) -> None:
        """Refuse this cookie value from now on (logout)."""
        parsed = self._parse(value)
        if parsed is None:
            return
        now = self.clock()
        if len(self.revoked) >= MAX_REVOKED:
            self.revoked = {n: t for n, t in self.revoked.items() if t > now}
            while len(self.revoked) >= MAX_REVOKED:
                self.revoked.pop(next(iter(self.revoked)))
        self.revoked[parsed[1]] = parsed[0] + LIFETIME_S


class ViewerAuth:
    """The credentials (tokens, users, page sessions), their roles, the login routes, and the 401 challenge.

    Args:
        token: the viewer token ("" = none).
        users: every user's password by name.
        storage_dir: where the session secret is kept (None: a new one each start).
        admin_token: the admin token ("" = none); it counts as an admin only in the Authorization header.
        admins: the names of the users with the admin role.
    """

    def __init__(self, token: str, users: Mapping[str, str], storage_dir: Path | None,
                 clock: Callable[[], float] = time.time, public_prefixes: tuple[str, ...] = (),
                 admin_token: str = "", admins: frozenset[str] = frozenset()) -> None:
        self.token = token
        self.admin_token = admin_token
        self.public_prefixes = (PUBLIC_PREFIX, *public_prefixes)
        self.users = dict(users)
        self.admins = frozenset(admins) & set(self.users)
        self.storage_dir = storage_dir
        self.clock = clock
        self.signer: SessionSigner | None = None  # set at start-up, once the secret is read
        self._failures: dict[str, deque[float]] = {}
        self._failure_log = ThrottledLog(log, interval_s=60.0)

    @classmethod
    def from_config(cls, http: HttpConfig, storage_dir: Path | None, public_prefixes: tuple[str, ...] = ()) -> ViewerAuth:
        """The credentials of the [http] table."""
        return cls(http.token, http.passwords, storage_dir, public_prefixes=public_prefixes,
                   admin_token=http.admin_token, admins=http.admins)

    @property
    def required(self) -> bool:
        """Whether viewers need a credential at all."""
        return bool(self.token or self.users)

    @property
    def roles(self) -> bool:
        """Whether an admin credential is configured, so that writes need one (else: whoever may read may write)."""
        return bool(self.admin_token or self.admins)

    @property
    def sessions(self) -> bool:
        """Whether the page can log in at all (some credential is configured)."""
        return self.required or self.roles

    def may_write(self, who: Identity | None) -> bool:
        """Whether a request that proved itself as `who` (None: not at all) may change things."""
        if not self.roles:
            return who is not None or not self.required
        return who is not None and who.admin

    def admin_methods(self) -> list[str]:
        """How one becomes an admin here: "token" (the admin token), "password" (an admin user)."""
        return (["token"] if self.admin_token else []) + (["password"] if self.admins else [])

    def is_public(self, path: str) -> bool:
        """Whether `path` is served without a credential."""
        return path in PUBLIC_PATHS or path.startswith(self.public_prefixes)

    def add_routes(self, app: web.Application) -> None:
        """Register /api/session, /api/login, /api/logout and the start-up hook that reads the secret."""
        app.router.add_get("/api/session", self.session)
        app.router.add_post("/api/login", self.login)
        app.router.add_post("/api/logout", self.logout)
        app.on_startup.append(self._load_secret)

    async def _load_secret(self, app: web.Application) -> None:
        if not self.sessions:
            return
        try:
            secret = await asyncio.get_running_loop().run_in_executor(None, load_secret, self.storage_dir)
        except OSError as exc:
            log.warning("cannot keep the session secret in %s (%s): page logins end when the server restarts",
                        self.storage_dir, exc)
            secret = secrets.token_bytes(32)
        self.signer = SessionSigner(secret, self.token, self.users, self.clock, self.admin_token, self.admins)

    def identify(self, request: web.Request) -> Identity | None:
        """How the request proves itself, or None if it does not; of several credentials, an admin one wins."""
        found: list[Identity] = []
        bearer, query = bearer_token(request.headers), query_token(request.query_string)
        if self.admin_token:
            if same_secret(bearer, self.admin_token):
                found.append(Identity("admin_token", None, ADMIN))
            elif same_secret(query, self.admin_token):
                # a URL ends up in logs, history and Referer headers, and a link or a form's action on
                # another site can carry it: there the admin token is worth no more than the viewer's
                found.append(Identity("admin_token", None, VIEWER))
        if self.token and same_secret(bearer if bearer is not None else query, self.token):
            found.append(Identity("token"))
        user = basic_user(request.headers, self.users)
        if user is not None:
            found.append(Identity("basic", user, ADMIN if user in self.admins else VIEWER))
        cookie = request.cookies.get(COOKIE)
        if cookie and self.signer is not None:
            session = self.signer.verify(cookie)
            if session is not None:
                found.append(session)
        return next((w for w in found if w.admin), found[0] if found else None)

    def challenge(self, request: web.Request) -> str:
        """The WWW-Authenticate value for a 401.

        Basic makes a browser show its own password prompt: right for a person opening a stream
        URL directly, wrong over the page's login form, so the page's own requests (a Sec-Fetch-Dest
        other than "document") get the Bearer challenge, which prompts nothing.
        """
        dest = request.headers.get("Sec-Fetch-Dest")
        if self.users and dest in (None, "document"):
            return 'Basic realm="camserver"'
        return 'Bearer realm="camserver"'

    def _methods(self) -> list[str]:
        return (["token"] if self.token or self.admin_token else []) + (["password"] if self.users else [])

    async def session(self, request: web.Request) -> web.Response:
        """Whether a login is needed, how, who this browser is, and whether it may change things."""
        who = self.identify(request) if self.sessions else None
        return web.json_response({
            "auth_required": self.required,
            "methods": self._methods(),
            "authenticated": who is not None or not self.required,
            "via": who.via if who else None,
            "user": who.user if who else None,
            "role": who.role if who else None,
            "can_write": self.may_write(who),
            "admin_methods": self.admin_methods(),
        })

    def _throttled(self, remote: str) -> float:
        """Seconds this address must wait before its next login attempt (0: go ahead)."""
        now = time.monotonic()
        failures = self._failures.get(remote)
        if failures is None:
            return 0.0
        while failures and now - failures[0] > FAILURE_WINDOW_S:
            failures.popleft()
        if len(failures) < MAX_FAILURES:
            return 0.0
        return FAILURE_WINDOW_S - (now - failures[0])

    def _failed(self, remote: str) -> None:
        self._failure_log.warning(remote, "failed page login from %s", remote)  # an address, never what was typed
        if remote not in self._failures and len(self._failures) >= MAX_TRACKED:
            self._failures.clear()
        self._failures.setdefault(remote, deque(maxlen=MAX_FAILURES)).append(time.monotonic())

    async def login(self, request: web.Request) -> web.Response:
        """Check {"token"} (viewer or admin) or {"user", "password"} and set the session cookie with the role."""
        if not self.sessions:
            raise web.HTTPBadRequest(reason="no login needed", text="this server has no tokens or users")
        # a login from another site's page gets 403 from writes.py's guard, which every POST passes first
        if request.content_type != "application/json":  # a cross-site form cannot send JSON without CORS
            raise web.HTTPUnsupportedMediaType(reason="send JSON", text="Content-Type must be application/json")
        remote = request.remote or "?"
        wait = self._throttled(remote)
        if wait > 0:
            raise web.HTTPTooManyRequests(reason="too many failed logins", text=f"try again in {wait:.0f} s",
                                          headers={"Retry-After": str(max(1, round(wait)))})
        if (request.content_length or 0) > MAX_LOGIN_BYTES:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_LOGIN_BYTES, actual_size=request.content_length or 0)
        try:
            body: Any = json.loads(await request.read())
        except ValueError:
            raise web.HTTPBadRequest(reason="invalid login", text="the body must be JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(reason="invalid login", text='send {"token": ...} or {"user": ..., "password": ...}')
        who: Identity | None = None
        token, user, password = body.get("token"), body.get("user"), body.get("password")
        if isinstance(token, str) and self.admin_token and same_secret(token, self.admin_token):
            who = Identity("session", None, ADMIN)
        elif isinstance(token, str) and self.token and same_secret(token, self.token):
            who = Identity("session")
        elif isinstance(user, str) and isinstance(password, str) and password_ok(self.users, user, password):
            who = Identity("session", user, ADMIN if user in self.admins else VIEWER)
        if who is None or self.signer is None:
            self._failed(remote)
            raise web.HTTPUnauthorized(reason="wrong credentials", text="the token or the user name and password are wrong",
                                       headers={"WWW-Authenticate": 'Bearer realm="camserver"'})
        resp = web.json_response({"authenticated": True, "via": who.via, "user": who.user, "role": who.role,
                                  "can_write": self.may_write(who)})
        # no Max-Age: the cookie ends with the browser session; LIFETIME_S bounds it on the server
        resp.set_cookie(COOKIE, self.signer.issue(who.user, who.role), path="/", httponly=True, samesite="Strict",
                        secure=request.secure)
        return resp

    async def logout(self, request: web.Request) -> web.Response:
        """End this browser's session: revoke the cookie and clear it."""
        cookie = request.cookies.get(COOKIE)
        if cookie and self.signer is not None:
            self.signer.revoke(cookie)
        resp = web.json_response({"authenticated": False})
        resp.del_cookie(COOKIE, path="/", samesite="Strict")
        return resp
