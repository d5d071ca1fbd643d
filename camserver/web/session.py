"""Who a viewer request comes from, what it may do, and the page's login: a form trades a credential for a cookie.

A browser cannot put a bearer token on an <img> or an EventSource, and a token in the page's URL
ends up in proxy and access logs. So `POST /api/login` checks the viewer token or a user's
password once and sets an HttpOnly, SameSite=Strict cookie that every later request of the page
carries (streams, snapshots, the event feed); `Secure` too when the page is reached over https
(the connection is TLS, or `http.public_url` is https: camserver trusts no proxy's headers, so
behind a TLS proxy set public_url). API clients keep using `Authorization` or `?token=`.

Two roles: a viewer may watch, an admin may also change things (the write permission, see
writes.py). The admin token (`http.admin_token`) and users with `role = "admin"` are admins; the
viewer token and the other users are viewers. With no admin credential configured at all, whoever
may watch may also write, as before roles existed.

The cookie is signed, not looked up (cookies.py): sessions survive a restart (a wall display
recovers by itself) and a wall-clock step, and changing a token, a password or a role ends every
session. Logout clears the cookie and revokes its nonce, durably.

Every credential a request presents (a bearer token, `?token=`, basic auth, a login's body) is
checked under one limiter per client address (limiter.py): wrong ones count, on every route, and a
locked address gets 429 with Retry-After for every credential, the right one included.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

from aiohttp import web

from ..auth import authorization, basic_credentials, bearer_token, query_token, same_secret
from ..passwords import VerifiedCache, is_hashed, needs_work, verify
from ..config import HttpConfig
from ..logsafe import ThrottledLog, printable
from ..jsonbody import read_json
from .cookies import (ADMIN, LIFETIME_S, MAX_REVOKED, SECRET_FILE, VIEWER, Identity, RevocationFile, SessionSigner,
                      SteadyClock, load_secret)
from .limiter import GuessLimiter

__all__ = ["ADMIN", "COOKIE", "LIFETIME_S", "MAX_REVOKED", "SECRET_FILE", "VIEWER", "Identity", "SessionSigner",
           "ViewerAuth", "load_secret"]

log = logging.getLogger(__name__)

COOKIE = "camserver_session"
MAX_LOGIN_BYTES = 4096
MAX_FAILURES = 5  # wrong credentials per client address within FAILURE_WINDOW_S, then 429
FAILURE_WINDOW_S = 60.0
MAX_TRACKED = 4096  # client addresses with recent failures (see limiter.py: a lock is never forgotten)
# where a request keeps what identify() found, so that it is checked (and a wrong one counted) once
IDENTITY: web.RequestKey[Identity | None] = web.RequestKey("camserver.identity")
# the basic-auth user the gate checked off the loop (None: a wrong or unknown one)
BASIC: web.RequestKey[str | None] = web.RequestKey("camserver.basic")
HASH_CHECKS = 2  # password hashes computed at once (each ~30 ms of a core); more guesses wait their turn

# The app's shell and modules, and the login exchange: a browser needs them before it has a
# credential, and they hold no secrets. /healthz stays open for monitors.
PUBLIC_PATHS = frozenset({"/", "/healthz", "/api/session", "/api/login", "/api/logout"})
PUBLIC_PREFIX = "/static/"


class ViewerAuth:
    """The credentials (tokens, users, page sessions), their roles, the login routes, and the 401 challenge.

    Args:
        token: the viewer token ("" = none).
        users: every user's password by name.
        storage_dir: where the session secret is kept (None: a new one each start).
        admin_token: the admin token ("" = none); it counts as an admin only in the Authorization header.
        admins: the names of the users with the admin role.
        clock: the sessions' clock (default: a SteadyClock, which wall-clock steps do not move).
        public_url: `http.public_url`; https means the page is reached over TLS (the cookie gets Secure).
        limiter: the one limiter of wrong credentials (default: 5 per address within 60 s).
    """

    def __init__(self, token: str, users: Mapping[str, str], storage_dir: Path | None,
                 clock: Callable[[], float] | None = None, public_prefixes: tuple[str, ...] = (),
                 admin_token: str = "", admins: frozenset[str] = frozenset(), public_url: str = "",
                 limiter: GuessLimiter | None = None) -> None:
        self.token = token
        self.admin_token = admin_token
        self.public_prefixes = (PUBLIC_PREFIX, *public_prefixes)
        self.users = dict(users)
        self.admins = frozenset(admins) & set(self.users)
        self.storage_dir = storage_dir
        self.clock = clock or SteadyClock()
        self.https = public_url.lower().startswith("https://")
        self.signer: SessionSigner | None = None  # set at start-up, once the secret is read
        self.revocations = RevocationFile(storage_dir)
        self._revoking = asyncio.Lock()  # one logout's file write at a time
        self.limiter = limiter or GuessLimiter(MAX_FAILURES, FAILURE_WINDOW_S, MAX_TRACKED)
        self._failure_log = ThrottledLog(log, interval_s=10.0)
        self.verified = VerifiedCache()  # successful password checks, for basic auth on every request
        self._hashing = asyncio.Semaphore(HASH_CHECKS)
        self._secret: bytes | None = None
        self._revoked: dict[str, float] = {}

    @classmethod
    def from_config(cls, http: HttpConfig, storage_dir: Path | None, public_prefixes: tuple[str, ...] = ()) -> ViewerAuth:
        """The credentials of the [http] table (warns once about passwords stored in plain text)."""
        warn_plain(http.passwords)
        return cls(http.token, http.passwords, storage_dir, public_prefixes=public_prefixes,
                   admin_token=http.admin_token, admins=http.admins, public_url=http.public_url)

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
        loop = asyncio.get_running_loop()
        secret = secrets.token_bytes(32)  # without a folder to keep it in: a new one each start
        try:
            if self.storage_dir is not None:
                secret = await loop.run_in_executor(None, load_secret, self.storage_dir)
        except OSError as exc:
            log.warning("cannot keep the session secret in %s (%s): page logins end when the server restarts",
                        self.storage_dir, exc)
        try:
            revoked = await loop.run_in_executor(None, self.revocations.load, self.clock())
        except OSError as exc:
            log.warning("cannot read the logouts kept in %s (%s): they are forgotten", self.storage_dir, exc)
            revoked = {}
        self._secret = secret
        self.signer = SessionSigner(secret, self.token, self.users, self.clock, self.admin_token, self.admins,
                                    revoked)

    def update(self, http: HttpConfig, request: web.Request | None = None,
               response: web.StreamResponse | None = None) -> None:
        """Take new tokens, users and roles at once (a PATCH of http.*): every page session ends (the
        cookies' key covers them all) but that of the request which made the change, when its own
        credential is unchanged: its cookie is issued again, under the new key, in `response`."""
        writer = request.get(IDENTITY) if request is not None else None
        before = (self.users.get(writer.user or "") if writer is not None else None, self.admin_token)
        self.token, self.admin_token = http.token, http.admin_token
        self.users = dict(http.passwords)
        self.admins = frozenset(http.admins) & set(self.users)
        self.verified.clear()
        if not self.sessions:
            self.signer = None
            return
        revoked = dict(self.signer.revoked) if self.signer is not None else {}
        if self._secret is None:  # the first credential of a server that started open: a tiny file, once
            try:
                self._secret = load_secret(self.storage_dir) if self.storage_dir is not None else None
            except OSError as exc:
                log.warning("cannot keep the session secret in %s (%s)", self.storage_dir, exc)
        self._secret = self._secret or secrets.token_bytes(32)
        self.signer = SessionSigner(self._secret, self.token, self.users, self.clock, self.admin_token, self.admins,
                                    revoked)
        who = writer
        if who is None or who.via != "session" or response is None:
            return
        if who.user is not None and before[0] is not None and self.users.get(who.user) == before[0]:
            role = ADMIN if who.user in self.admins else VIEWER
        elif who.user is None and who.admin and self.admin_token and self.admin_token == before[1]:
            role = ADMIN
        else:
            return  # its own password, role or token changed: it logs in again
        response.set_cookie(COOKIE, self.signer.issue(who.user, role), path="/", httponly=True, samesite="Strict",
                            secure=self.https or (request is not None and request.secure))

    async def check_password(self, name: str, password: str) -> bool:
        """Whether `name` has this password: a hash is checked in an executor (HASH_CHECKS at a time), a
        success kept for a minute in memory so that basic auth on every request costs no hash."""
        stored = self.users.get(name)
        if not needs_work(stored):
            return verify(stored, password)
        if stored is not None and self.verified.known(name, stored, password):
            return True
        async with self._hashing:
            ok = await asyncio.get_running_loop().run_in_executor(None, verify, stored, password)
        if ok and stored is not None and self.users.get(name) == stored:
            self.verified.remember(name, stored, password)
        return ok

    def _check_now(self, name: str, password: str) -> bool:
        """check_password on the loop, for a basic credential the gate did not see (blocking when hashed)."""
        stored = self.users.get(name)
        if stored is not None and needs_work(stored) and self.verified.known(name, stored, password):
            return True
        return verify(stored, password)

    def identify(self, request: web.Request) -> Identity | None:
        """How the request proves itself, or None if it does not; of several credentials, an admin one wins.

        Checked once per request (the answer is kept in the request); a wrong token or password
        counts as a failure of the client's address (see gate()).
        """
        if IDENTITY in request:
            return request[IDENTITY]
        who, wrong = self._identify(request)
        if wrong:
            self._failed(request.remote or "?", "wrong credential on " + printable(request.path, 100))
        request[IDENTITY] = who
        return who

    def _identify(self, request: web.Request) -> tuple[Identity | None, bool]:
        """The identity, and whether some credential presented was wrong."""
        found: list[Identity] = []
        wrong = False
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
        for given in (bearer, query):  # a token that is neither of ours is a guess
            if given is not None and not any(same_secret(given, t) for t in (self.admin_token, self.token) if t):
                wrong = True
        if self._basic(request):
            if BASIC in request:
                user = request[BASIC]
            else:
                pair = basic_credentials(request.headers) if self.users else None
                user = pair[0] if pair is not None and self._check_now(*pair) else None
            if user is None:
                wrong = True
            else:
                found.append(Identity("basic", user, ADMIN if user in self.admins else VIEWER))
        cookie = request.cookies.get(COOKIE)
        if cookie and self.signer is not None:
            session = self.signer.verify(cookie)
            if session is not None:
                found.append(session)
        return next((w for w in found if w.admin), found[0] if found else None), wrong

    @staticmethod
    def _basic(request: web.Request) -> bool:
        return (authorization(request.headers) or "").partition(" ")[0].lower() == "basic"

    @staticmethod
    def presents_credential(request: web.Request) -> bool:
        """Whether the request carries a token or a password (a session cookie is no guess: it is signed)."""
        return "Authorization" in request.headers or query_token(request.query_string) is not None

    def _refuse_if_locked(self, request: web.Request) -> None:
        wait = self.limiter.locked_for(request.remote or "?")
        if wait > 0:
            self.limiter.refuse()
            raise web.HTTPTooManyRequests(reason="too many wrong credentials", text=f"try again in {wait:.0f} s",
                                          headers={"Retry-After": str(max(1, math.ceil(wait)))})

    def gate(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        """Middleware (before every other check of a credential): a locked address gets 429 for any credential it presents."""

        @web.middleware
        async def check(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
            if self.sessions and self.presents_credential(request):
                self._refuse_if_locked(request)
                given = basic_credentials(request.headers) if self.users and self._basic(request) else None
                if given is not None and IDENTITY not in request:
                    ok = await self.check_password(*given)
                    self._refuse_if_locked(request)  # other guesses of this address may have locked it meanwhile
                    request[BASIC] = given[0] if ok else None
                self.identify(request)
            return await handler(request)

        return check

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

    def _failed(self, remote: str, what: str) -> None:
        self.limiter.failed(remote)
        # an address, never what was typed; one line for every address together, or a flood floods the log
        self._failure_log.warning("failed", "%s from %s (%d failures so far, %d addresses locked)", what, remote,
                                  self.limiter.failures, self.limiter.figures()["locked"])

    async def login(self, request: web.Request) -> web.Response:
        """Check {"token"} (viewer or admin) or {"user", "password"} and set the session cookie with the role."""
        if not self.sessions:
            raise web.HTTPBadRequest(reason="no login needed", text="this server has no tokens or users")
        # a login from another site's page gets 403 from writes.py's guard, which every POST passes first
        if request.content_type != "application/json":  # a cross-site form cannot send JSON without CORS
            raise web.HTTPUnsupportedMediaType(reason="send JSON", text="Content-Type must be application/json")
        self._refuse_if_locked(request)
        body: Any = await read_json(request, MAX_LOGIN_BYTES)
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(reason="invalid login", text='send {"token": ...} or {"user": ..., "password": ...}')
        who: Identity | None = None
        token, user, password = body.get("token"), body.get("user"), body.get("password")
        if isinstance(token, str) and self.admin_token and same_secret(token, self.admin_token):
            who = Identity("session", None, ADMIN)
        elif isinstance(token, str) and self.token and same_secret(token, self.token):
            who = Identity("session")
        elif isinstance(user, str) and isinstance(password, str) and await self.check_password(user, password):
            who = Identity("session", user, ADMIN if user in self.admins else VIEWER)
        if who is None or self.signer is None:
            self._failed(request.remote or "?", "failed page login")
            raise web.HTTPUnauthorized(reason="wrong credentials", text="the token or the user name and password are wrong",
                                       headers={"WWW-Authenticate": 'Bearer realm="camserver"'})
        resp = web.json_response({"authenticated": True, "via": who.via, "user": who.user, "role": who.role,
                                  "can_write": self.may_write(who)})
        # no Max-Age: the cookie ends with the browser session; LIFETIME_S bounds it on the server
        resp.set_cookie(COOKIE, self.signer.issue(who.user, who.role), path="/", httponly=True, samesite="Strict",
                        secure=request.secure or self.https)
        return resp

    async def logout(self, request: web.Request) -> web.Response:
        """End this browser's session: revoke the cookie and clear it."""
        cookie = request.cookies.get(COOKIE)
        if cookie and self.signer is not None:
            kept = self.signer.revoke(cookie)
            if kept is not None:
                await self._keep_revocation(*kept)
        resp = web.json_response({"authenticated": False})
        resp.del_cookie(COOKIE, path="/", samesite="Strict", secure=request.secure or self.https)
        return resp

    async def _keep_revocation(self, nonce: str, expires: float) -> None:
        """Write a logout to disk before it is answered, so that a restart does not undo it."""
        assert self.signer is not None
        revoked = dict(self.signer.revoked)  # the thread reads a copy; the loop owns the signer's
        async with self._revoking:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.revocations.add, nonce, expires, revoked)
            except OSError as exc:
                log.warning("cannot keep a logout in %s (%s): it ends when the server restarts", self.storage_dir, exc)


def warn_plain(users: Mapping[str, str]) -> None:
    """One warning naming the users whose passwords config.toml holds in plain text."""
    plain = sorted(name for name, stored in users.items() if not is_hashed(stored))
    if plain:
        log.warning("http.users: the passwords of %s are stored in plain text; replace each with the line "
                    "`python -m camserver --hash-password` prints (or set them from the page)",
                    ", ".join(printable(n, 60) for n in plain))
