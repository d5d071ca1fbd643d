"""Viewer side: the aiohttp app serving MJPEG streams, snapshots, JSON and a page."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from contextlib import contextmanager
from typing import Any, Awaitable, Callable, Iterator, Mapping, Protocol

import cv2
import numpy as np
from aiohttp import web

from ..config import HttpConfig
from ..hub import Camera, CameraHub, Frame, FrameChannel
from ..logsafe import ThrottledLog
from ..events.engine import EventEngine
from .assets import StaticAssets
from .bodies import body_deadline, unsatisfiable_ranges
from .connections import ConnectionLimit
from .events import EventsApi
from .grid import GridRoutes
from .session import ViewerAuth
from .strictjson import strict_json
from .writes import write_guard
from .stream import MJPEG_CONTENT_TYPE, MJPEG_START, BoundedStream, ViewerGone, mjpeg_part

log = logging.getLogger(__name__)


class RouteSource(Protocol):
    """A stage's routes (board control, notifications, the system view): added to the app as they are."""

    def add_routes(self, app: web.Application) -> None:
        """Register the routes."""


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
        headers = {k: v for k, v in exc.headers.items()
                   if k.lower() in ("allow", "retry-after", "www-authenticate", "content-range")}
        return web.json_response({"error": exc.reason, "detail": exc.text}, status=exc.status, headers=headers)


def viewer_auth(auth: ViewerAuth) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Middleware: every route but the page's shell, the login and /healthz needs a viewer credential.

    The viewer token, a basic-auth user, the page's session cookie, or an admin credential (see
    session.py); writes need more, checked before this by writes.py's `write_guard`.
    """

    @web.middleware
    async def check(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if not auth.required or auth.is_public(request.path) or auth.identify(request) is not None:
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
        *,
        config: HttpConfig,
        hub: CameraHub,
        health: Callable[[], dict[str, Any]],
        camera_figures: Callable[[Camera], dict[str, Any]],
        latest_detections: Callable[[str], tuple[Frame | None, list[Any]]],
        annotated_latest: Callable[[Camera], Awaitable[Frame | None]] | None = None,
        events: EventEngine | None = None,
        exposition: Callable[[], tuple[bytes, str]] | None = None,
        auth: ViewerAuth | None = None,
        routes: tuple[RouteSource, ...] = (),
        connections: ConnectionLimit | None = None,
        groups: Callable[[], Mapping[str, tuple[str, ...]]] = dict,
        names: Callable[[], Mapping[str, str]] = dict,
    ) -> None:
        self.config = config
        self.names = names  # [cameras.<id>] name: the overview's labels
        self.groups = groups  # [groups]: group name -> camera ids, as saved now (GET /api/groups, the overview)
        self.connections = connections  # the HTTP port's connection cap, told which connections proved themselves
        self.body_timeouts = [0]  # connections closed because a body did not come within http.body_timeout_s
        self.auth = auth or ViewerAuth.from_config(config, None)
        self.routes = routes
        self.hub = hub
        self.health = health
        self.camera_figures = camera_figures  # the other stages' figures for /api/cameras
        self.latest_detections = latest_detections
        self.annotated_latest = annotated_latest  # draws the latest frame's boxes if nobody watched it
        self.events = events
        self.exposition = exposition  # /metrics: the body and its content type
        self.write_timeout = config.viewer_write_timeout_s
        self.interval = config.placeholder_interval_s
        self._placeholders: dict[tuple[str, str], Frame] = {}
        self.viewers_total = 0
        self.viewers_refused = 0
        # open streams per Camera object: [all, annotated] (boxes are drawn only for annotated ones)
        self._viewers: weakref.WeakKeyDictionary[Camera, list[int]] = weakref.WeakKeyDictionary()
        self._refusals = ThrottledLog(log)
        self.grid: GridRoutes | None = None  # the live grid's WebSocket and the overview (build() makes it)

    def viewers_of(self, camera_id: str) -> int:
        """Open streams of the camera."""
        cam = self.hub.get(camera_id)
        return self._viewers.get(cam, (0, 0))[0] if cam is not None else 0

    def watched(self, camera_id: str) -> bool:
        """Whether someone watches the camera's annotated stream."""
        cam = self.hub.get(camera_id)
        return cam is not None and self._viewers.get(cam, (0, 0))[1] > 0

    def _count_viewer(self, cam: Camera, raw: bool, step: int) -> None:
        counts = self._viewers.setdefault(cam, [0, 0])
        counts[0] += step
        counts[1] += 0 if raw else step

    # what the grid's connections (grid.py) use, as the MJPEG loop does
    count_viewer = _count_viewer
    stale_s = STALE_S
    live_frame = staticmethod(live_frame)

    def build(self) -> web.Application:
        """The aiohttp app with every route."""
        # a body's deadline first (it closes the connection, whatever an inner check does); then the
        # credential limiter, so that a locked address is refused before any check counts or proves
        # anything; every write passes the cross-site checks and needs the write permission, open server or not
        middlewares = [body_deadline(self.config.body_timeout_s, self.body_timeouts), json_errors, self.auth.gate()]
        if self.connections is not None:
            auth = self.auth
            middlewares.append(self.connections.middleware(lambda r: auth.sessions and auth.identify(r) is not None))
        middlewares += [unsatisfiable_ranges, write_guard(self.auth, (self.config.public_url,))]
        middlewares.append(viewer_auth(self.auth))  # always: users and tokens may be set live (session.py's update)
        app = web.Application(middlewares=middlewares)
        app.middlewares.insert(0, strict_json)  # outermost: it sees every JSON answer, errors included
        StaticAssets().add_routes(app)
        self.auth.add_routes(app)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/api/cameras", self.api_cameras)
        app.router.add_get("/api/groups", self.api_groups)
        app.router.add_get("/api/cameras/{camera_id}/detections", self.api_detections)
        for routes in self.routes:  # the other stages' routes: board control, notifications, system
            routes.add_routes(app)
        app.router.add_get("/cameras/{camera_id}/stream.mjpg", self.camera_stream)
        app.router.add_get("/cameras/{camera_id}/snapshot.jpg", self.camera_snapshot)
        app.router.add_get("/stream.mjpg", self.default_stream)
        self.grid = GridRoutes(self)
        self.grid.add_routes(app)
        app.router.add_get("/snapshot.jpg", self.default_snapshot)
        if self.exposition is not None:
            app.router.add_get("/metrics", self.prometheus)
        if self.events is not None:
            EventsApi(self.events, self.write_timeout, lambda: self.hub.closed, self.viewer_slot,
                      self.config.event_stream_max_s).add_routes(app)
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
        state = self.health()
        return web.json_response(state, status=200 if state.get("status") == "ok" else 503)

    async def api_cameras(self, request: web.Request) -> web.Response:
        """Every known camera with its counters and figures."""
        return web.json_response([{**self.camera_figures(cam), "viewers": self.viewers_of(cam.id)} for cam in self.hub])

    async def api_groups(self, request: web.Request) -> web.Response:
        """The camera groups of [groups], in the file's order: [{"name", "cameras"}]."""
        return web.json_response({"groups": [{"name": n, "cameras": list(ids)} for n, ids in self.groups().items()]})

    async def prometheus(self, request: web.Request) -> web.Response:
        """Prometheus text exposition (the viewer token applies: scrape configs can send a bearer token)."""
        assert self.exposition is not None
        body, content_type = self.exposition()
        # the content type carries a charset, which aiohttp's content_type= refuses: set the header
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def api_detections(self, request: web.Request) -> web.Response:
        """The latest detections of one camera."""
        cam = self._camera(request)
        frame, detections = self.latest_detections(cam.id)
        return web.json_response(
            {
                "camera": cam.id,
                "frame_seq": frame.seq if frame else None,
                "frame_time": frame.wall_time if frame else None,
                "detections": [d.to_json() for d in detections],
            }
        )

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

    async def placeholder(self, cam: Camera | None) -> Frame:
        """The placeholder picture for this camera's state, drawn once (off the loop) and then reused."""
        key = (cam.id if cam else self.hub.default_id, placeholder_message(cam))
        frame = self._placeholders.get(key)
        if frame is None:
            jpeg = await asyncio.get_running_loop().run_in_executor(None, placeholder_jpeg, *key)
            if len(self._placeholders) >= 256:  # ids come and go; never grow without bound
                self._placeholders.clear()
            frame = self._placeholders[key] = Frame(0, jpeg, time.monotonic(), time.time())
        return frame

    async def channel_of(self, cam: Camera | None, raw: bool) -> FrameChannel | None:
        """The channel a viewer of `cam` reads; the annotated one brought up to date first."""
        if cam is None:
            return None
        if raw:
            return cam.raw
        if self.annotated_latest is not None:
            await self.annotated_latest(cam)
        return cam.annotated

    async def _snapshot(self, request: web.Request, cam: Camera | None) -> web.Response:
        frame = live_frame(cam, await self.channel_of(cam, self._raw(request)))
        headers = {"Cache-Control": "no-cache"}
        if frame is None:
            body = (await self.placeholder(cam)).jpeg
            headers["X-Camserver-Placeholder"] = placeholder_message(cam)
        else:
            body = frame.jpeg
            headers["X-Frame-Seq"] = str(frame.seq)
        return web.Response(body=body, content_type="image/jpeg", headers=headers)

    @contextmanager
    def viewer_slot(self, request: web.Request, cam: Camera | None = None) -> Iterator[None]:
        """Hold one of the http.max_viewers places (and of the camera's) while a long-lived response runs.

        Raises:
            HTTPServiceUnavailable: no place left (503 with Retry-After).
        """
        http = self.config
        if self.viewers_total >= http.max_viewers or (cam is not None and self.viewers_of(cam.id) >= http.max_viewers_per_camera):
            self.viewers_refused += 1
            self._refusals.warning("viewers", "viewer %s refused: viewer limit reached", request.remote)
            raise web.HTTPServiceUnavailable(
                reason="too many viewers", text="viewer limit reached; try again later", headers={"Retry-After": "10"}
            )
        self.viewers_total += 1
        try:
            yield
        finally:
            self.viewers_total -= 1

    async def _stream(self, request: web.Request, resolve: Callable[[], Camera | None]) -> web.StreamResponse:
        with self.viewer_slot(request, resolve()):
            return await self._serve_stream(request, resolve)

    async def _serve_stream(self, request: web.Request, resolve: Callable[[], Camera | None]) -> web.StreamResponse:
        raw = self._raw(request)
        resp = web.StreamResponse(
            headers={
                "Content-Type": MJPEG_CONTENT_TYPE,
                "Cache-Control": "no-cache, no-store, must-revalidate",
                "Pragma": "no-cache",
                "Connection": "close",
            }
        )
        stream = BoundedStream(request, resp, self.write_timeout)
        cam: Camera | None = None
        try:
            await stream.start()
            await stream.send(MJPEG_START)
            sent_seq, sent_at = 0, 0.0
            while not self.hub.closed:
                if stream.closing:
                    break  # the viewer left; without this we would notice only at the next write
                if cam is None:
                    cam = resolve()
                    if cam is not None:
                        self._count_viewer(cam, raw, 1)
                channel = await self.channel_of(cam, raw)
                waiter = channel if channel is not None else self.hub.registry
                version = waiter.version
                frame = live_frame(cam, channel)
                now = time.monotonic()
                if frame is not None and frame.seq > sent_seq:
                    await stream.send(mjpeg_part(frame))
                    sent_seq, sent_at = frame.seq, now
                elif now - sent_at >= self.interval and (frame is None or now - frame.received_at > STALE_S):
                    await stream.send(mjpeg_part(await self.placeholder(cam)))
                    sent_at = now
                await waiter.wait_changed(version, self.interval)
        except ViewerGone:
            return resp
        finally:
            if cam is not None:
                self._count_viewer(cam, raw, -1)
        return resp
