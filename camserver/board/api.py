"""HTTP routes of board control: settings, control messages, firmware images, updates, downloads.

Writes (control, upload, delete, update) are guarded by the viewer app's middleware
(web/writes.py): the write permission, the cross-site checks, and JSON bodies (the upload, multipart,
is registered there as the exception). There is no second check here, so that one rule covers
every write the app has. The download route, /ota/<token>, must be left open by the auth middleware
(boards send no token): the random token in the path is its secret, good for one download within
10 minutes.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from aiohttp import BodyPartReader, web

from ..ingest.control import ControlError, validate_control
from ..jsonbody import read_json
from .firmware import OTA_SLOT_BYTES, BadImage
from .service import BoardService, UnknownImage

log = logging.getLogger(__name__)

PUBLIC_PREFIX = "/ota/"  # the viewer auth middleware lets these through
MAX_JSON_BYTES = 4096
CHUNK = 64 * 1024
# An upload needs two parts, the file and an optional name: reading 100,000 empty parts held the
# event loop for 2-3 s, so a third part ends the upload with 400
MAX_PARTS = 2
MAX_NAME_BYTES = 256
UPLOAD_OVERHEAD = MAX_NAME_BYTES + 4096  # multipart framing and the name part around the image's bytes


def _json_error(status: int, error: str, detail: str, **extra: Any) -> web.Response:
    return web.json_response({"error": error, "detail": detail, **extra}, status=status)


def _escape(text: str) -> str:
    return text.encode("unicode_escape").decode()


class BoardApi:
    """Routes of board control over a BoardService.

    Args:
        camera_known: whether the server knows a camera id (connected now or before, or declared).
        send_control: sends a message to a connected camera; False when it is not connected.
        base_url: the http://host:port a camera reaches this server's HTTP port at (from the address
            its WebSocket connection came in on), or None when it is not connected.
        camera_status: the camera's latest status, if any (to tell a new update failure from an old one).
        after_pending: pings the camera and calls the function given once every message it sent before
            its pong was handled (CameraIngest.after_pending); False when it could not.
        max_bytes: storage.max_mb in bytes: a bigger image is refused (413).
        room: bytes that may still be written above storage.min_free_mb's floor (the storage budget's
            `room`): a bigger image is refused (507), both before it is written.
    """

    def __init__(
        self,
        service: BoardService,
        camera_known: Callable[[str], bool],
        send_control: Callable[[str, dict[str, Any]], Awaitable[bool]],
        base_url: Callable[[str], str | None],
        camera_status: Callable[[str], dict[str, Any] | None] = lambda camera_id: None,
        after_pending: Callable[[str, Callable[[], None]], Awaitable[bool]] | None = None,
        max_bytes: int | None = None,
        room: Callable[[], int] = lambda: 2**62,
    ) -> None:
        self.service = service
        self.camera_known = camera_known
        self.send_control = send_control
        self.base_url = base_url
        self.camera_status = camera_status
        self.after_pending = after_pending
        self.max_bytes = max_bytes
        self.room = room

    def add_routes(self, app: web.Application) -> None:
        """Register every route (POST /api/cameras/<id>/control included)."""
        app.router.add_get("/api/cameras/{camera_id}/settings", self.get_settings)
        app.router.add_post("/api/cameras/{camera_id}/control", self.control)
        app.router.add_get("/api/cameras/{camera_id}/firmware", self.get_camera_firmware)
        app.router.add_post("/api/cameras/{camera_id}/firmware", self.start_update)
        app.router.add_get("/api/firmware", self.list_images)
        app.router.add_post("/api/firmware", self.upload_image)
        app.router.add_delete("/api/firmware/{name}", self.delete_image)
        # no HEAD: it would spend the one download
        app.router.add_get(PUBLIC_PREFIX + "{token}", self.download, allow_head=False)

    def _camera_id(self, request: web.Request) -> str:
        camera_id = request.match_info["camera_id"]
        if not (self.camera_known(camera_id) or self.service.knows(camera_id)):
            raise web.HTTPNotFound(reason="unknown camera", text=f"no camera {camera_id!r}")
        return camera_id

    @staticmethod
    async def _json_body(request: web.Request) -> Any:
        # read up to the cap whatever is declared; nesting too deep for the parser is bad JSON too (400)
        return await read_json(request, MAX_JSON_BYTES, "the body must be a JSON object")

    async def get_settings(self, request: web.Request) -> web.Response:
        """{"desired": what the server sends on every hello, "reported": what the camera said it applied}."""
        return web.json_response(self.service.settings(self._camera_id(request)))

    async def control(self, request: web.Request) -> web.StreamResponse:
        """Validate a settings message, keep its values as desired, send it to the camera.

        400 names the key and its range (nothing is kept or sent); 409 when the camera is offline (the
        values are kept and sent when it next says hello).
        """
        camera_id = self._camera_id(request)
        body = await self._json_body(request)
        try:
            message = validate_control(body)
        except ControlError as exc:
            return _json_error(400, "invalid control message", str(exc), key=exc.key, allowed=exc.allowed)
        await self.service.set_desired(camera_id, message)
        if not await self.send_control(camera_id, message):
            raise web.HTTPConflict(
                reason="camera offline",
                text=f"camera {camera_id!r} is not connected; the settings are kept and sent when it says hello",
            )
        return web.json_response({"camera": camera_id, "sent": message}, status=202)

    async def list_images(self, request: web.Request) -> web.Response:
        """Stored images: name, size, md5, version, project, chip, idf."""
        return web.json_response({"images": [i.to_json() for i in await self.service.images()],
                                  "max_size": OTA_SLOT_BYTES})

    async def upload_image(self, request: web.Request) -> web.StreamResponse:
        """Multipart upload of a .bin (field `file`; an optional field `name` renames it). 201 with its record."""
        too_big = self._no_room(request.content_length, UPLOAD_OVERHEAD)  # refused before reading the body
        if too_big is not None:
            return too_big
        try:
            reader = await request.multipart()
        except (AssertionError, ValueError, KeyError):
            raise web.HTTPBadRequest(reason="not a multipart upload",
                                     text="send the image as multipart/form-data: curl -F file=@firmware.bin") from None
        data: bytes | None = None
        name: str | None = None
        parts = 0
        while (part := await reader.next()) is not None:
            parts += 1
            if parts > MAX_PARTS:
                return _json_error(400, "too many parts", f"an upload has at most {MAX_PARTS} parts: the file and "
                                   "an optional name (curl -F file=@firmware.bin -F name=cam.bin)", max_parts=MAX_PARTS)
            if not isinstance(part, BodyPartReader):
                continue
            if part.filename is not None and data is None:
                name = name or part.filename
                read = await self._read_capped(part, OTA_SLOT_BYTES, self._no_room)
                if isinstance(read, web.Response):
                    return read
                data = read
            elif part.name == "name":
                raw = await self._read_capped(part, MAX_NAME_BYTES)
                if isinstance(raw, web.Response):
                    return raw
                name = raw.decode("utf-8", "replace").strip()
        if data is None or not name:
            raise web.HTTPBadRequest(reason="no file", text="no file part in the upload (curl -F file=@firmware.bin)")
        try:
            info = await self.service.upload(name, data)
        except BadImage as exc:
            status = 413 if exc.too_large else 400
            return _json_error(status, "image refused", str(exc), max_size=OTA_SLOT_BYTES)
        except FileExistsError:
            raise web.HTTPConflict(reason="image exists",
                                   text=f"an image named {name!r} exists; delete it first or upload under another name") from None
        except ValueError as exc:
            raise web.HTTPBadRequest(reason="bad image name", text=str(exc)) from None
        return web.json_response(info.to_json(), status=201)

    def _no_room(self, size: int | None, slack: int = 0) -> web.Response | None:
        """The answer to an image of `size` bytes (plus `slack` of multipart framing) storage cannot take, else None:
        413 past storage.max_mb, 507 past the free space above storage.min_free_mb."""
        if size is None:
            return None
        if self.max_bytes is not None and size > self.max_bytes + slack:
            return _json_error(413, "image refused", f"larger than storage.max_mb ({self.max_bytes} bytes)",
                               max_size=self.max_bytes)
        room = max(0, self.room())
        if size > room + slack:
            return _json_error(507, "disk full", "no room for this image above the free space storage.min_free_mb "
                               "keeps", room=room)
        return None

    @staticmethod
    async def _read_capped(part: BodyPartReader, cap: int,
                           check: Callable[[int], web.Response | None] | None = None) -> bytes | web.Response:
        """The part's bytes; 413 as soon as they pass `cap` (nothing more is buffered), or `check`'s answer
        to their size so far."""
        data = bytearray()
        while chunk := await part.read_chunk(min(CHUNK, cap + 1)):
            data += chunk
            refused = check(len(data)) if check is not None else None
            if refused is not None:
                return refused
            if len(data) > cap:
                what = (f"an OTA app slot holds {OTA_SLOT_BYTES} bytes (0x{OTA_SLOT_BYTES:X})" if cap == OTA_SLOT_BYTES
                        else f"the part {part.name!r} holds at most {cap} bytes")
                raise web.HTTPRequestEntityTooLarge(max_size=cap, actual_size=len(data), text=what)
        return bytes(data)

    async def delete_image(self, request: web.Request) -> web.Response:
        """Remove a stored image."""
        name = request.match_info["name"]
        if not await self.service.delete_image(name):
            raise web.HTTPNotFound(reason="unknown image", text=f"no image {name!r}")
        return web.json_response({"deleted": name})

    async def get_camera_firmware(self, request: web.Request) -> web.Response:
        """The version the camera said hello with, and its last update (sent, downloading, done, failed, expired,
        rolled_back)."""
        return web.json_response(self.service.firmware_state(self._camera_id(request)))

    async def start_update(self, request: web.Request) -> web.Response:
        """{"image": name}: send the camera a one-time link to the image, with its MD5 and size."""
        camera_id = self._camera_id(request)
        body = await self._json_body(request)
        image = body.get("image") if isinstance(body, dict) else None
        if not isinstance(image, str) or set(body) != {"image"}:
            raise web.HTTPBadRequest(reason="invalid update request", text='send {"image": "<name of a stored image>"}')
        base = self.base_url(camera_id)
        if base is None:
            raise web.HTTPConflict(reason="camera offline", text=f"camera {camera_id!r} is not connected")
        try:
            message, link, info = await self.service.prepare_update(camera_id, image, base)
        except UnknownImage:
            raise web.HTTPNotFound(reason="unknown image", text=f"no image {image!r}; see GET /api/firmware") from None
        version = info.version
        status = self.camera_status(camera_id)
        if not await self.send_control(camera_id, message):
            raise web.HTTPConflict(reason="camera offline", text=f"camera {camera_id!r} is not connected")
        received = self.service.update_sent(camera_id, link, version, status)
        # the image, its size and MD5, never the link: its token is all that guards the image
        log.info("camera %s: update to %s (version %s, %d bytes, md5 %s) sent", camera_id, link.image, version,
                 link.size, link.md5)
        if self.after_pending is not None and not await self.after_pending(camera_id, received):
            log.info("camera %s: no pong after the update message; only a new error will count as its failure",
                     camera_id)
        return web.json_response({"camera": camera_id, "image": link.image, "version": version, "md5": link.md5,
                                  "size": link.size, "expires_at": link.expires_at}, status=202)

    async def download(self, request: web.Request) -> web.Response:
        """The image behind a one-time link, with the Content-Length and x-MD5 HTTPUpdate needs; else 404."""
        found = await self.service.download(request.match_info["token"])
        if found is None:
            raise web.HTTPNotFound(reason="unknown link", text="this update link is unknown, spent or expired")
        link, data = found
        log.info("camera %s downloads %s (%d bytes) from %s", link.camera, link.image, len(data),
                 _escape(request.remote or "?"))
        # the MD5 announced with the link: a file changed on disk since then fails the board's check
        return web.Response(body=data, content_type="application/octet-stream",
                            headers={"x-MD5": link.md5, "Cache-Control": "no-store"})
