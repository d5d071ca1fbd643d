"""POST /api/notify/test: a test message with a camera's latest picture to every [[notify]] target."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from aiohttp import web

from ..integrations.notify import Notifier
from ..jsonbody import parse_json, read_body

MAX_BODY = 1024
# camera id or None (the default camera) -> (camera id, its latest JPEG or None), or None if unknown
LatestSnapshot = Callable[[str | None], Awaitable[tuple[str, bytes | None] | None]]


class NotifyApi:
    """Routes under /api/notify (the app's middleware asks for the write permission)."""

    def __init__(self, notifier: Notifier, latest_snapshot: LatestSnapshot) -> None:
        self.notifier = notifier
        self.latest_snapshot = latest_snapshot

    def add_routes(self, app: web.Application) -> None:
        """Register the routes."""
        app.router.add_post("/api/notify/test", self.test)

    async def test(self, request: web.Request) -> web.Response:
        """Send a test message; body (optional) {"camera": id}. Answers per target: url, ok, error."""
        if not self.notifier.targets:
            raise web.HTTPNotFound(reason="no notification targets", text="the configuration has no [[notify]] table")
        raw = await read_body(request, MAX_BODY)
        camera: Any = None
        if raw.strip():
            try:
                camera = parse_json(raw).get("camera")
            except (ValueError, AttributeError):
                raise web.HTTPBadRequest(reason="invalid body", text='send {"camera": "<id>"} or nothing') from None
            if camera is not None and not isinstance(camera, str):
                raise web.HTTPBadRequest(reason="invalid body", text="camera must be a camera id")
        found = await self.latest_snapshot(camera)
        if found is None:
            raise web.HTTPNotFound(reason="unknown camera", text=f"no camera {camera!r}" if camera else "no camera yet")
        camera_id, jpeg = found
        results = await self.notifier.send_test(camera_id, jpeg)
        return web.json_response({"camera": camera_id, "picture": jpeg is not None, "results": results})
