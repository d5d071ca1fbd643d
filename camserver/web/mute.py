"""Mute routes: hold a camera's (or every camera's) notifications for a while, or until turned back on.

    GET    /api/mute                     the mute of all and each camera's
    POST   /api/mute                     mute every camera; body {"for_s": 1800 | 3600 | ... | null}
    DELETE /api/mute                     every mute off (the mute of all and each camera's)
    POST   /api/cameras/{camera_id}/mute mute one camera; the same body
    DELETE /api/cameras/{camera_id}/mute unmute it

The writes pass writes.py's guard (the write permission, JSON only); `for_s` null (or no body) mutes
until turned back on. /api/cameras shows each camera's `muted`, `muted_until`, `muted_by`.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from aiohttp import web

from ..integrations.mute import ALL, MAX_FOR_S, MuteBoard

MAX_BODY = 1024


def duration(raw: bytes) -> float | None:
    """The `for_s` of a body (None: until turned back on). Raises HTTPBadRequest."""
    body: Any = {}
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
    if not isinstance(body, dict) or set(body) - {"for_s"}:
        raise web.HTTPBadRequest(reason="invalid body", text='send {"for_s": 3600} or {"for_s": null}')
    for_s = body.get("for_s")
    if for_s is None:
        return None
    if isinstance(for_s, bool) or not isinstance(for_s, (int, float)) or not math.isfinite(for_s) \
            or not 0 < for_s <= MAX_FOR_S:
        raise web.HTTPBadRequest(reason="invalid for_s",
                                 text=f"for_s must be seconds, more than 0 and at most {MAX_FOR_S:g}, or null")
    return float(for_s)


class MuteApi:
    """The mute routes over a MuteBoard; `known(camera_id)` is the camera, or None for an unknown one."""

    def __init__(self, board: MuteBoard, known: Callable[[str], object]) -> None:
        self.board = board
        self.known = known

    def add_routes(self, app: web.Application) -> None:
        """Register the routes."""
        app.router.add_get("/api/mute", self.overview)
        app.router.add_post("/api/mute", self.mute_all)
        app.router.add_delete("/api/mute", self.unmute_all)
        app.router.add_post("/api/cameras/{camera_id}/mute", self.mute_camera)
        app.router.add_delete("/api/cameras/{camera_id}/mute", self.unmute_camera)

    async def _for_s(self, request: web.Request) -> float | None:
        if (request.content_length or 0) > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length or 0)
        return duration(await request.content.read(MAX_BODY + 1))

    def _camera(self, request: web.Request) -> str:
        camera = request.match_info["camera_id"]
        if self.known(camera) is None:
            raise web.HTTPNotFound(reason="unknown camera", text=f"no camera {camera!r}")
        return camera

    async def overview(self, request: web.Request) -> web.Response:
        """The mute of all and every camera's own."""
        return web.json_response(self.board.overview())

    async def mute_all(self, request: web.Request) -> web.Response:
        """Mute every camera (those that connect later too)."""
        await self._set(ALL, await self._for_s(request))
        return web.json_response(self.board.state(None))

    async def unmute_all(self, request: web.Request) -> web.Response:
        """Every mute off."""
        await self.board.clear_everything()
        return web.json_response(self.board.state(None))

    async def mute_camera(self, request: web.Request) -> web.Response:
        """Mute one camera."""
        camera = self._camera(request)
        await self._set(camera, await self._for_s(request))
        return web.json_response({"camera": camera, **self.board.state(camera)})

    async def unmute_camera(self, request: web.Request) -> web.Response:
        """Unmute one camera (the mute of all, if on, still holds it)."""
        camera = self._camera(request)
        await self.board.clear(camera)
        return web.json_response({"camera": camera, **self.board.state(camera)})

    async def _set(self, target: str, for_s: float | None) -> None:
        try:
            await self.board.set(target, for_s)
        except ValueError as exc:  # too many mutes kept
            raise web.HTTPConflict(reason="cannot mute", text=str(exc)) from None
