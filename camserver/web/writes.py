"""Writes: who may change things, and where a change may come from.

Every POST, PUT, PATCH and DELETE of the viewer app passes `write_guard`, in this order:

1. **Where from.** A browser tells where a request comes from: `Sec-Fetch-Site` and `Origin`. A
   write whose `Sec-Fetch-Site` is `cross-site` or `same-site` (another port or a sibling host
   counts: that is where another device's web page lives), or whose `Origin` is not this server
   (the request's `Host`, or `http.public_url`), gets 403. Without those headers (curl, Home
   Assistant, scripts) it passes: only browsers send them, and a browser always sends `Origin` on a
   cross-origin POST. This is what stops a page on another site from auto-submitting a form with
   the browser's cached basic credentials or session cookie.
2. **Who.** The write permission (session.py's `ViewerAuth.may_write`): 401 without a credential,
   403 with a viewer's. /api/login and /api/logout need none. The few reads in `ADMIN_READS`
   (GET /api/config) need it too.
3. **What.** A body must be `Content-Type: application/json` (415 otherwise; a write without a
   body, such as a DELETE, has nothing to check): a form can send
   only text/plain, urlencoded or multipart, and a cross-origin `fetch` with JSON must first pass a
   CORS preflight, which this server never grants. The firmware upload is multipart, and exempt
   from this rule only.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable, Collection
from urllib.parse import urlsplit

from aiohttp import web

from ..logsafe import ThrottledLog, printable
from .session import ViewerAuth

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# they create or end a session: no permission needed, but they must come from this server's page
SESSION_PATHS = frozenset({"/api/login", "/api/logout"})
# (method, route) pairs that read what only an admin may see: the config, with its secrets' shapes
ADMIN_READS = frozenset({("GET", "/api/config")})
# (method, route) pairs whose body is a multipart upload rather than JSON
MULTIPART_ROUTES = frozenset({("POST", "/api/firmware")})
JSON_TYPES = frozenset({"application/json", "application/merge-patch+json"})  # PATCH /api/config: RFC 7396
CROSS_SITE_FETCH = frozenset({"cross-site", "same-site"})
DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]  # scheme, host (lower case), port

_refusals = ThrottledLog(log, interval_s=60.0)


def parse_origin(value: str) -> Origin | None:
    """An Origin header or a URL as (scheme, host, port), or None ("null", or not an http(s) origin)."""
    try:
        url = urlsplit(value.strip())
        port = url.port
    except ValueError:
        return None
    if url.scheme not in DEFAULT_PORTS or not url.hostname:
        return None
    return url.scheme, url.hostname.lower(), port if port is not None else DEFAULT_PORTS[url.scheme]


def same_origin(origin: str, host: str, allowed: Collection[str] = ()) -> bool:
    """Whether an Origin header names this server: the `host` the request was sent to, or an allowed origin.

    A Host without a port has the Origin scheme's default port: behind a TLS proxy that passes the
    Host header on, `Origin: https://cams.example` and `Host: cams.example` are the same server.
    """
    parsed = parse_origin(origin)
    if parsed is None:
        return False
    if any(parse_origin(a) == parsed for a in allowed if a):
        return True
    scheme, _, _ = parsed
    try:
        target = urlsplit(f"{scheme}://{host}")
        port = target.port
    except ValueError:
        return False
    if not target.hostname:
        return False
    return (target.hostname.lower(), port if port is not None else DEFAULT_PORTS[scheme]) == parsed[1:]


def cross_site(request: web.Request, allowed: Collection[str] = ()) -> str | None:
    """Why a write looks like it came from another site's page, or None."""
    fetch_site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    if fetch_site in CROSS_SITE_FETCH:
        return f"the browser says this request comes from a {fetch_site} page (Sec-Fetch-Site)"
    origin = request.headers.get("Origin")
    if origin is not None:
        host = request.headers.get("Host") or request.host
        if not same_origin(origin, host, allowed):
            return f"its Origin {printable(origin, 100)} is not this server ({printable(host, 100)})"
    return None


def body_problem(request: web.Request, multipart: Collection[tuple[str, str]] = MULTIPART_ROUTES) -> str | None:
    """Why a write's body is refused (it is not JSON), or None."""
    resource = request.match_info.route.resource
    if (request.method, resource.canonical if resource is not None else None) in multipart:
        return None
    if not request.body_exists:  # nothing to misread (DELETE, logout); some clients label even that
        return None
    if "Content-Type" not in request.headers:
        return "send JSON with Content-Type: application/json"
    if request.content_type not in JSON_TYPES:
        return f"send JSON with Content-Type: application/json, not {printable(request.content_type, 100)}"
    return None


def refuse_write(auth: ViewerAuth, request: web.Request) -> web.HTTPException | None:
    """The 401 or 403 for a write without the write permission, or None when it has it."""
    who = auth.identify(request) if auth.sessions else None
    if auth.may_write(who):
        return None
    admin = "the admin token (Authorization: Bearer), or an admin user's password or page session"
    if who is None:
        return web.HTTPUnauthorized(
            reason="authentication required",
            text=f"changing things needs {admin}" if auth.roles
            else "send the viewer token (Authorization: Bearer, or ?token=) or a user name and password",
            headers={"WWW-Authenticate": auth.challenge(request)},
        )
    if who.via == "admin_token":  # the admin token, but in the URL: see session.py's identify()
        text = ("the admin token in a URL (?token=) counts for reading only: to change things send it as "
                "Authorization: Bearer (URLs end up in logs, history and Referer headers)")
    else:
        text = f"{who.describe()} may watch but not change things: that needs {admin}"
    return web.HTTPForbidden(reason="write permission required", text=text)


def write_guard(auth: ViewerAuth, allowed_origins: Collection[str] = (),
                multipart: Collection[tuple[str, str]] = MULTIPART_ROUTES) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Middleware: the cross-site checks, the write permission and the JSON rule for every write (see above).

    Args:
        auth: the credentials and their roles.
        allowed_origins: origins besides the request's Host that the page may be served from
            (`http.public_url`, for a proxy that rewrites Host).
        multipart: (method, route) pairs that take a multipart upload instead of JSON.
    """

    @web.middleware
    async def check(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.method not in WRITE_METHODS:
            resource = request.match_info.route.resource
            if (request.method, resource.canonical if resource is not None else None) in ADMIN_READS:
                refusal = refuse_write(auth, request)
                if refusal is not None:
                    raise refusal
            return await handler(request)
        why = cross_site(request, allowed_origins)
        if why is not None:
            _refusals.warning("cross-site", "cross-site %s %s from %s refused: %s", request.method,
                              printable(request.path, 100), request.remote, why)
            raise web.HTTPForbidden(reason="cross-site request", text=f"refused: {why}")
        if request.path not in SESSION_PATHS:
            refusal = refuse_write(auth, request)
            if refusal is not None:
                raise refusal
        problem = body_problem(request, multipart)
        if problem is not None:
            raise web.HTTPUnsupportedMediaType(reason="send JSON", text=problem)
        return await handler(request)

    return check
