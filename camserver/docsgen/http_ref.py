"""The HTTP API reference: the viewer app's route table, walked as the server builds it, with who may call
each route (the auth layer's classification) and the handler's own one-line docstring as what it answers."""

from __future__ import annotations

import tempfile
from typing import Iterator

PUBLIC = "anyone"
VIEWER = "viewer"
ADMIN = "admin (the write permission)"


def routes() -> Iterator[tuple[str, str, str, str]]:
    """(method, path, who may call, what it answers) for every route, HEAD folded into GET."""
    from ..app import CamServer
    from ..config import from_mapping
    from ..web.writes import ADMIN_READS, MULTIPART_ROUTES, SESSION_PATHS, WRITE_METHODS

    with tempfile.TemporaryDirectory(prefix="camserver-docsgen-") as folder:
        # every optional stage on, so every route exists; nothing is started
        config = from_mapping({"storage": {"dir": folder}, "record": {"mode": "events"}, "events": {"enabled": True}})
        server = CamServer(config, None)
        app = server.viewer_app.build()
        auth = server.viewer_app.auth
        seen = set()
        for route in app.router.routes():
            if route.method == "HEAD" or route.resource is None:
                continue
            path = route.resource.canonical
            if (route.method, path) in seen:
                continue
            seen.add((route.method, path))
            if route.method in WRITE_METHODS and path in SESSION_PATHS:
                who = f"{PUBLIC} (from this server's page)"
            elif route.method in WRITE_METHODS or (route.method, path) in ADMIN_READS:
                who = ADMIN
            elif auth.is_public(path.split("{", 1)[0] if "{" in path else path):
                who = PUBLIC
            else:
                who = VIEWER
            doc = (route.handler.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
            doc = " ".join(doc.split())
            if (route.method, path) in MULTIPART_ROUTES:
                doc += " (multipart, not JSON)"
            yield route.method, path, who, doc


def http_page() -> str:
    """The HTTP API reference page."""
    from . import cell

    out = ["# HTTP API", "",
           "Every route of the viewer port (`http.port`, 8080), in the order the server adds them. A `GET` route "
           "answers `HEAD` too. **Who may call**: *anyone* needs no credential; *viewer* needs one when "
           "`http.token` or `http.users` is set (`Authorization: Bearer`, `?token=`, basic auth or the page's "
           "session); *admin* needs the write permission (the admin token as a header, or an admin user) where an "
           "admin credential is configured, else the same as a viewer. Every write (`POST`, `PUT`, `PATCH`, "
           "`DELETE`) also passes the cross-site checks and needs a JSON body (`Content-Type: application/json`): "
           "see [Exposing it safely](../guides/security.md).", "",
           "Errors: an unknown camera is 404 with a JSON body; a wrong method 405 with an `Allow` header; 401 "
           "without a credential, 403 with a viewer's (for a write) or from another site, 415 for a body that is "
           "not JSON.", "",
           "| method | path | who may call | what it answers |", "| --- | --- | --- | --- |"]
    for method, path, who, doc in routes():
        out.append(f"| `{method}` | `{cell(path)}` | {who} | {cell(doc)} |")
    out += ["", "The camera side is a WebSocket listener on `ingest.port` (3001), not part of this app: "
            "`ws://HOST:3001/ws/<camera_id>` (binary messages are JPEG frames, text messages hello and status), "
            "and plain `ws://HOST:3001/ws` for the camera `ingest.default_camera_id`."]
    return "\n".join(out) + "\n"
