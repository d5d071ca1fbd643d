"""The page's files (camserver/web/static: index.html, ES modules, CSS), served from memory.

No build step, so no hashed file names: every file is served with `Cache-Control: no-cache` and a
strong ETag (a hash of its bytes), and a browser revalidates with If-None-Match and gets a 304.
A new version of camserver is seen on the next load; an unchanged one costs one small request
per file. The files are read once, at start-up, off the event loop; only those files are served,
so no path from a URL ever reaches the file system.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from aiohttp import web

PACKAGE = "camserver.web"
FOLDER = "static"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}

# Only this server's own scripts, styles and media: a script injected through data (a camera id,
# a label) could not run, and no other site may frame the page.
CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; script-src 'self'; "
       "style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")


@dataclass(frozen=True)
class Asset:
    """One file: its bytes, content type and ETag."""

    body: bytes
    content_type: str
    etag: str


def read_assets(root: Traversable | None = None) -> dict[str, Asset]:
    """Every file under the static folder, by its path relative to it ("index.html", "app.js")."""
    root = root if root is not None else resources.files(PACKAGE).joinpath(FOLDER)
    assets: dict[str, Asset] = {}
    pending: list[tuple[str, Traversable]] = [("", root)]
    while pending:
        prefix, folder = pending.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                pending.append((f"{prefix}{entry.name}/", entry))
                continue
            suffix = "." + entry.name.rpartition(".")[2] if "." in entry.name else ""
            if suffix not in CONTENT_TYPES:
                continue  # editor backups and the like are never served
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            assets[prefix + entry.name] = Asset(body, CONTENT_TYPES[suffix], etag)
    return assets


class StaticAssets:
    """Routes `/` (the app's index.html) and `/static/<file>`."""

    def __init__(self) -> None:
        self.assets: dict[str, Asset] = {}

    def add_routes(self, app: web.Application) -> None:
        """Register the routes and the start-up hook that reads the files."""
        app.router.add_get("/", self.index)
        app.router.add_get("/static/{name:.+}", self.static)
        app.on_startup.append(self._load)

    async def _load(self, app: web.Application) -> None:
        self.assets = await asyncio.get_running_loop().run_in_executor(None, read_assets)

    async def index(self, request: web.Request) -> web.Response:
        """The app's shell: every view is a hash route of this one page."""
        return self._serve(request, "index.html", {"Content-Security-Policy": CSP})

    async def static(self, request: web.Request) -> web.Response:
        """One of the app's files."""
        return self._serve(request, request.match_info["name"], {})

    def _serve(self, request: web.Request, name: str, extra: dict[str, str]) -> web.Response:
        asset = self.assets.get(name)
        if asset is None:
            raise web.HTTPNotFound(reason="no such file", text=f"no file {name!r} in the page")
        headers = {"ETag": asset.etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", **extra}
        if asset.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=asset.body, headers={**headers, "Content-Type": asset.content_type})
