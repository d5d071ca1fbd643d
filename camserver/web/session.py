"""Who a viewer request comes from, and the page's login: a form trades a credential for a cookie.

A browser cannot put a bearer token on an <img> or an EventSource, and a token in the page's URL
ends up in proxy and access logs. So `POST /api/login` checks the viewer token or a user's
password once and sets an HttpOnly, SameSite=Strict cookie that every later request of the page
carries (streams, snapshots, the event feed). API clients keep using `Authorization` or `?token=`.

The cookie is signed, not looked up: `<issued>.<nonce>.<user>.<mac>`, HMAC-SHA256 under a key
derived from a random secret kept in storage.dir and from the configured credentials. So sessions
survive a restart (a wall display recovers by itself), and changing the token or any password
ends every session. Logout clears the cookie and revokes its nonce for the life of the process.
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
from urllib.parse import urlsplit

from aiohttp import web

from ..auth import basic_user, password_ok, presented_token, same_secret
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

# The app's shell and modules, and the login exchange: a browser needs them before it has a
# credential, and they hold no secrets. /healthz stays open for monitors.
PUBLIC_PATHS = frozenset({"/", "/healthz", "/api/session", "/api/login", "/api/logout"})
PUBLIC_PREFIX = "/static/"


@dataclass(frozen=True)
class Identity:
    """How a request proved itself: via "token", "basic" or "session", and the user name if any."""

    via: str
    user: str | None = None


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

    def __init__(self, secret: bytes, token: str, users: Mapping[str, str], clock: Callable[[], float] = time.time) -> None:
        parts = [b"camserver-session-v1", token.encode()]
        parts += [f"{name}:{password}".encode() for name, password in sorted(users.items())]
        self.key = hmac.new(secret, b"\0".join(parts), hashlib.sha256).digest()
        self.clock = clock
        self.revoked: dict[str, float] = {}  # nonce -> when its cookie expires anyway

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self.key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, user: str | None) -> str:
        """A new cookie value for `user` (None: the viewer token)."""
        name = base64.urlsafe_b64encode((user or "").encode()).decode().rstrip("=")
        payload = f"{int(self.clock())}.{secrets.token_urlsafe(12)}.{name}"
        return f"{payload}.{self._mac(payload)}"

    def _parse(self, value: str) -> tuple[float, str, str | None] | None:
        payload, _, mac = value.rpartition(".")
        if not payload or not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            return None
        issued, nonce, name = payload.split(".", 2)
        try:
            user = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
            born = float(issued)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return born, nonce, user or None

    def verify(self, value: str) -> Identity | None:
        """The identity a cookie value stands for, or None (forged, expired, revoked)."""
        parsed = self._parse(value)
        if parsed is None:
            return None
        born, nonce, user = parsed
        if not 0 <= self.clock() - born <= LIFETIME_S or nonce in self.revoked:
            return None
        return Identity("session", user)

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
    """The viewer credentials (token, users, page sessions), the login routes, and the 401 challenge."""

    def __init__(self, token: str, users: Mapping[str, str], storage_dir: Path | None,
                 clock: Callable[[], float] = time.time, public_prefixes: tuple[str, ...] = ()) -> None:
        self.token = token
        self.public_prefixes = (PUBLIC_PREFIX, *public_prefixes)
        self.users = dict(users)
        self.storage_dir = storage_dir
        self.clock = clock
        self.signer: SessionSigner | None = None  # set at start-up, once the secret is read
        self._failures: dict[str, deque[float]] = {}
        self._failure_log = ThrottledLog(log, interval_s=60.0)

    @property
    def required(self) -> bool:
        """Whether viewers need a credential at all."""
        return bool(self.token or self.users)

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
        if not self.required:
            return
        try:
            secret = await asyncio.get_running_loop().run_in_executor(None, load_secret, self.storage_dir)
        except OSError as exc:
            log.warning("cannot keep the session secret in %s (%s): page logins end when the server restarts",
                        self.storage_dir, exc)
            secret = secrets.token_bytes(32)
        self.signer = SessionSigner(secret, self.token, self.users, self.clock)

    def identify(self, request: web.Request) -> Identity | None:
        """How the request proves itself, or None if it does not."""
        if self.token and same_secret(presented_token(request.headers, request.query_string), self.token):
            return Identity("token")
        user = basic_user(request.headers, self.users)
        if user is not None:
            return Identity("basic", user)
        cookie = request.cookies.get(COOKIE)
        if cookie and self.signer is not None:
            return self.signer.verify(cookie)
        return None

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
        return (["token"] if self.token else []) + (["password"] if self.users else [])

    async def session(self, request: web.Request) -> web.Response:
        """Whether a login is needed, how, and who this browser is."""
        who = self.identify(request) if self.required else None
        return web.json_response({
            "auth_required": self.required,
            "methods": self._methods(),
            "authenticated": who is not None or not self.required,
            "via": who.via if who else None,
            "user": who.user if who else None,
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
        """Check {"token"} or {"user", "password"} and set the session cookie."""
        if not self.required:
            raise web.HTTPBadRequest(reason="no login needed", text="this server has no viewer token or users")
        if request.content_type != "application/json":  # a cross-site form cannot send JSON without CORS
            raise web.HTTPUnsupportedMediaType(reason="send JSON", text="Content-Type must be application/json")
        origin = request.headers.get("Origin")
        if origin and urlsplit(origin).netloc != request.host:
            raise web.HTTPForbidden(reason="cross-site login", text="the login form must be on this server's page")
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
        if isinstance(token, str) and self.token and same_secret(token, self.token):
            who = Identity("session")
        elif isinstance(user, str) and isinstance(password, str) and password_ok(self.users, user, password):
            who = Identity("session", user)
        if who is None or self.signer is None:
            self._failed(remote)
            raise web.HTTPUnauthorized(reason="wrong credentials", text="the token or the user name and password are wrong",
                                       headers={"WWW-Authenticate": 'Bearer realm="camserver"'})
        resp = web.json_response({"authenticated": True, "via": who.via, "user": who.user})
        # no Max-Age: the cookie ends with the browser session; LIFETIME_S bounds it on the server
        resp.set_cookie(COOKIE, self.signer.issue(who.user), path="/", httponly=True, samesite="Strict",
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
