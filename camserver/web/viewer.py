"""Viewer side: the aiohttp app serving MJPEG streams, snapshots, JSON and a page."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import cv2
import numpy as np
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ..config import Config
from ..ingest.control import validate_control
from ..hub import BOUNDARY, Camera, CameraHub, Frame, FrameChannel
from ..ratelog import ThrottledLog
from ..events.engine import EventEngine
from ..integrations.metrics import Metrics
from .assets import StaticAssets
from .events import EventsApi
from .session import ViewerAuth
from .stream import BoundedStream, ViewerGone
from .system import SystemApi, about

log = logging.getLogger(__name__)

MAX_CONTROL_BYTES = 4096
STALE_S = 3.0  # a connected camera silent this long gets the placeholder again
PLACEHOLDER_SIZE = (640, 480)


def placeholder_jpeg(camera_id: str, message: str) -> bytes:
    """A real JPEG saying which camera this is and why there is no picture."""
    w, h = PLACEHOLDER_SIZE
    img = np.full((h, w, 3), 40, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for text, y, scale in ((camera_id, h // 2 - 20, 1.2), (message, h // 2 + 30, 0.9)):
        (tw, _), _ = cv2.getTextSize(text, font, scale, 2)
        cv2.putText(img, text, ((w - tw) // 2, y), font, scale, (220, 220, 220), 2, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


def placeholder_message(cam: Camera | None) -> str:
    """Why this camera has no picture right now."""
    if cam is None or cam.connected_at is None:
        return "waiting for camera"
    return "no frames" if cam.connected else "offline"


def live_frame(cam: Camera | None, channel: FrameChannel | None) -> Frame | None:
    """The channel's latest frame if it came from the camera's current connection."""
    if cam is None or channel is None or not cam.connected or channel.frame is None:
        return None
    frame = channel.frame
    return frame if cam.connected_at is not None and frame.received_at >= cam.connected_at else None


@web.middleware
async def json_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Answer HTTP errors (404, 405, ...) with a JSON body."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after", "www-authenticate")}
        return web.json_response({"error": exc.reason, "detail": exc.text}, status=exc.status, headers=headers)


def viewer_auth(auth: ViewerAuth) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Middleware: every route but the page's shell, the login and /healthz needs a viewer credential.

    The viewer token, a basic-auth user, or the page's session cookie (see session.py).
    """

    @web.middleware
    async def check(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if auth.is_public(request.path) or auth.identify(request) is not None:
            return await handler(request)
        raise web.HTTPUnauthorized(
            reason="authentication required",
            text="send the viewer token (Authorization: Bearer, or ?token=) or a user name and password",
            headers={"WWW-Authenticate": auth.challenge(request)},
        )

    return check


class ViewerApp:
    """Builds the aiohttp application over the camera hub."""

    def __init__(
        self,
        config: Config,
        hub: CameraHub,
        health: Callable[[], dict[str, Any]],
        send_control: Callable[[Camera, dict[str, Any]], Awaitable[bool]],
        annotated_latest: Callable[[Camera], Awaitable[Frame | None]] | None = None,
        events: EventEngine | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.hub = hub
        self.health = health
        self.send_control = send_control
        self.annotated_latest = annotated_latest  # draws the latest frame's boxes if nobody watched it
        self.events = events
        self.metrics = metrics
        self.write_timeout = config.http.viewer_write_timeout_s
        self.interval = config.http.placeholder_interval_s
        self._placeholders: dict[tuple[str, str], Frame] = {}
        self.viewers_total = 0
        self.viewers_refused = 0
        self._refusals = ThrottledLog(log)
        self.started_at = time.time()
        self.auth = ViewerAuth(config.http.token, dict(config.http.users), Path(config.storage.dir))

    def build(self) -> web.Application:
        """The aiohttp app with every route."""
        middlewares = [json_errors]
        if self.auth.required:
            middlewares.append(viewer_auth(self.auth))
        app = web.Application(middlewares=middlewares)
        StaticAssets().add_routes(app)
        self.auth.add_routes(app)
        storage_used = self.events.store.used_bytes if self.events is not None else None
        SystemApi(self.config, self.health, storage_used, self.started_at).add_routes(app)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/api/cameras", self.api_cameras)
        app.router.add_get("/api/cameras/{camera_id}/detections", self.api_detections)
        app.router.add_post("/api/cameras/{camera_id}/control", self.api_control)
        app.router.add_get("/cameras/{camera_id}/stream.mjpg", self.camera_stream)
        app.router.add_get("/cameras/{camera_id}/snapshot.jpg", self.camera_snapshot)
        app.router.add_get("/stream.mjpg", self.default_stream)
        app.router.add_get("/snapshot.jpg", self.default_snapshot)
        if self.metrics is not None:
            app.router.add_get("/metrics", self.prometheus)
        if self.events is not None:
            EventsApi(self.events, self.write_timeout, lambda: self.hub.closed).add_routes(app)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, app: web.Application) -> None:
        self.hub.close()  # ends every open MJPEG response
        if self.events is not None:
            self.events.feed.wake()  # and every event stream

    def _camera(self, request: web.Request) -> Camera:
        cam = self.hub.get(request.match_info["camera_id"])
        if cam is None:
            raise web.HTTPNotFound(reason="unknown camera", text=f"no camera {request.match_info['camera_id']!r}")
        return cam

    async def healthz(self, request: web.Request) -> web.Response:
        """200 once the model is loaded and both listeners are up, else 503."""
        state = {**self.health(), **about(self.config, self.started_at)}
        return web.json_response(state, status=200 if state.get("status") == "ok" else 503)

    async def api_cameras(self, request: web.Request) -> web.Response:
        """Every known camera with its counters and figures."""
        health = self.health()
        extra = {"detector": health["detector"], "detection": health["detection"]}
        return web.json_response([{**cam.summary(), **extra} for cam in self.hub])

    async def prometheus(self, request: web.Request) -> web.Response:
        """Prometheus text exposition (the viewer token applies: scrape configs can send a bearer token)."""
        assert self.metrics is not None
        # CONTENT_TYPE_LATEST carries a charset, which aiohttp's content_type= refuses: set the header
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def api_detections(self, request: web.Request) -> web.Response:
        """The latest detections of one camera."""
        cam = self._camera(request)
        frame = cam.detections_frame
        return web.json_response(
            {
                "camera": cam.id,
                "frame_seq": frame.seq if frame else None,
                "frame_time": frame.wall_time if frame else None,
                "detections": [d.to_json() for d in cam.detections],
            }
        )

    async def api_control(self, request: web.Request) -> web.Response:
        """Forward a control message (framesize, quality, fps) to the connected camera."""
        cam = self._camera(request)
        if (request.content_length or 0) > MAX_CONTROL_BYTES:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_CONTROL_BYTES, actual_size=request.content_length or 0)
        try:
            message = validate_control(json.loads(await request.read()))
        except ValueError as exc:  # bad JSON or a bad setting (ControlError)
            raise web.HTTPBadRequest(reason="invalid control message", text=str(exc)) from None
        if not await self.send_control(cam, message):  # False when the camera is not connected
            raise web.HTTPConflict(reason="camera offline", text=f"camera {cam.id!r} is not connected")
        return web.json_response({"camera": cam.id, "sent": message}, status=202)

    async def camera_snapshot(self, request: web.Request) -> web.Response:
        """The latest annotated (or ?raw=1) JPEG of one camera, or its placeholder."""
        return await self._snapshot(request, self._camera(request))

    async def default_snapshot(self, request: web.Request) -> web.Response:
        """Snapshot of the default camera."""
        return await self._snapshot(request, self.hub.default_camera())

    async def camera_stream(self, request: web.Request) -> web.StreamResponse:
        """MJPEG of one camera."""
        cam = self._camera(request)
        return await self._stream(request, lambda: cam)

    async def default_stream(self, request: web.Request) -> web.StreamResponse:
        """MJPEG of the default camera; waits for one to appear if none has."""
        return await self._stream(request, self.hub.default_camera)

    @staticmethod
    def _raw(request: web.Request) -> bool:
        return request.query.get("raw", "0").lower() in ("1", "true", "yes")

    async def _placeholder(self, cam: Camera | None) -> Frame:
        """The placeholder picture for this camera's state, drawn once (off the loop) and then reused."""
        key = (cam.id if cam else self.hub.default_id, placeholder_message(cam))
        frame = self._placeholders.get(key)
        if frame is None:
            jpeg = await asyncio.get_running_loop().run_in_executor(None, placeholder_jpeg, *key)
            if len(self._placeholders) >= 256:  # ids come and go; never grow without bound
                self._placeholders.clear()
            frame = self._placeholders[key] = Frame(0, jpeg, time.monotonic(), time.time())
        return frame

    async def _channel(self, cam: Camera | None, raw: bool) -> FrameChannel | None:
        """The channel a viewer of `cam` reads; the annotated one brought up to date first."""
        if cam is None:
            return None
        if raw:
            return cam.raw
        if self.annotated_latest is not None:
            await self.annotated_latest(cam)
        return cam.annotated

    async def _snapshot(self, request: web.Request, cam: Camera | None) -> web.Response:
        frame = live_frame(cam, await self._channel(cam, self._raw(request)))
        headers = {"Cache-Control": "no-cache"}
        if frame is None:
            body = (await self._placeholder(cam)).jpeg
            headers["X-Camserver-Placeholder"] = placeholder_message(cam)
        else:
            body = frame.jpeg
            headers["X-Frame-Seq"] = str(frame.seq)
        return web.Response(body=body, content_type="image/jpeg", headers=headers)

    def _check_viewer_room(self, request: web.Request, cam: Camera | None) -> None:
        http = self.config.http
        if self.viewers_total >= http.max_viewers or (cam is not None and cam.viewers >= http.max_viewers_per_camera):
            self.viewers_refused += 1
            self._refusals.warning("viewers", "viewer %s refused: viewer limit reached", request.remote)
            raise web.HTTPServiceUnavailable(
                reason="too many viewers", text="viewer limit reached; try again later", headers={"Retry-After": "10"}
            )

    async def _stream(self, request: web.Request, resolve: Callable[[], Camera | None]) -> web.StreamResponse:
        self._check_viewer_room(request, resolve())
        self.viewers_total += 1
        try:
            return await self._serve_stream(request, resolve)
        finally:
            self.viewers_total -= 1

    async def _serve_stream(self, request: web.Request, resolve: Callable[[], Camera | None]) -> web.StreamResponse:
        raw = self._raw(request)
        resp = web.StreamResponse(
            headers={
                "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                "Cache-Control": "no-cache, no-store, must-revalidate",
                "Pragma": "no-cache",
                "Connection": "close",
            }
        )
        stream = BoundedStream(request, resp, self.write_timeout)
        cam: Camera | None = None
        try:
            await stream.start()
            await stream.send(f"--{BOUNDARY}\r\n".encode())
            sent_seq, sent_at = 0, 0.0
            while not self.hub.closed:
                if stream.closing:
                    break  # the viewer left; without this we would notice only at the next write
                if cam is None:
                    cam = resolve()
                    if cam is not None:
                        cam.viewers += 1
                        cam.annotated_viewers += not raw
                channel = await self._channel(cam, raw)
                waiter = channel if channel is not None else self.hub.registry
                version = waiter.version
                frame = live_frame(cam, channel)
                now = time.monotonic()
                if frame is not None and frame.seq > sent_seq:
                    await stream.send(frame.part)
                    sent_seq, sent_at = frame.seq, now
                elif now - sent_at >= self.interval and (frame is None or now - frame.received_at > STALE_S):
                    await stream.send((await self._placeholder(cam)).part)
                    sent_at = now
                await waiter.wait_changed(version, self.interval)
        except ViewerGone:
            return resp
        finally:
            if cam is not None:
                cam.viewers -= 1
                cam.annotated_viewers -= not raw
        return resp
