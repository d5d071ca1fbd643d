"""The live grid's one connection and the overview picture.

A browser opens at most 6 HTTP/1.1 connections to one server, so a grid of MJPEG streams cannot
show more than a few cameras live. `/api/grid.ws` carries every visible tile's frames over one
WebSocket instead: the page sends which cameras it shows (and an optional fps cap) as a JSON text
message, `{"cameras": ["door", "yard"], "fps": 10}`, and receives binary messages
`[id length: 1 byte][camera id, UTF-8][JPEG]`. Per connection each camera has a latest-frame slot:
a viewer that reads slowly gets the newest frame next, never a queue of old ones (the project's
broadcast pattern, see hub.py and stream.py).

`/api/overview.mjpg` is one MJPEG of every camera side by side (for Home Assistant or VLC), composed
in an executor only while someone watches, at most OVERVIEW_FPS times a second; `?group=NAME` shows
only the cameras of one `[groups]` group (one composition per group watched, shared by its viewers).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import time
import weakref
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, suppress
from typing import Protocol

import cv2
import numpy as np
from aiohttp import WSMsgType, web

from ..hub import Camera, CameraHub, Frame, FrameChannel
from ..logsafe import ThrottledLog, printable
from .stream import (
    MJPEG_CONTENT_TYPE,
    MJPEG_START,
    NOTSENT_LOWAT,
    BoundedStream,
    ViewerGone,
    mjpeg_part,
)



class ViewerApp(Protocol):
    """What the grid asks of the viewer app (web/viewer.py's ViewerApp): a port, so neither imports the other."""

    hub: CameraHub
    write_timeout: float
    interval: float
    stale_s: float
    groups: Callable[[], Mapping[str, tuple[str, ...]]]
    names: Callable[[], Mapping[str, str]]

    def count_viewer(self, cam: Camera, raw: bool, step: int) -> None: ...
    async def channel_of(self, cam: Camera | None, raw: bool) -> FrameChannel | None: ...
    def live_frame(self, cam: Camera | None, channel: FrameChannel | None) -> Frame | None: ...
    async def placeholder(self, cam: Camera | None) -> Frame: ...
    def viewer_slot(self, request: web.Request, cam: Camera | None = None) -> AbstractContextManager[None]: ...

log = logging.getLogger(__name__)

MAX_GRID_CAMERAS = 64  # cameras one connection may subscribe to (hub.max_cameras is far below)
MAX_SUBSCRIBE_BYTES = 8192  # a subscription message: 64 ids of up to 100 characters fit
OVERVIEW_FPS = 2.0  # compositions per second while the overview is watched
OVERVIEW_CELL = (320, 240)  # one camera's cell in the overview, at most
OVERVIEW_MAX_WIDTH = 1920
CLOSE_BAD_MESSAGE = 1003  # WebSocket close code: a message the server does not understand

# each frame's message (its camera id and the JPEG) is built once and sent to every grid viewer
_messages: weakref.WeakKeyDictionary[Frame, bytes] = weakref.WeakKeyDictionary()


def grid_message(camera_id: str, frame: Frame) -> bytes:
    """The binary message carrying `frame` of `camera_id`: [id length][id][JPEG]."""
    message = _messages.get(frame)
    if message is None:
        cid = camera_id.encode()[:255]
        message = _messages[frame] = b"".join((bytes((len(cid),)), cid, frame.jpeg))
    return message


def parse_subscription(text: str) -> tuple[list[str], float]:
    """The camera ids and fps cap (0 = none) of a subscription message.

    Raises:
        ValueError: not a valid subscription (the message says why).
    """
    if len(text) > MAX_SUBSCRIBE_BYTES:
        raise ValueError(f"subscription over {MAX_SUBSCRIBE_BYTES} bytes")
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("a subscription is a JSON object")  # noqa: TRY004 (one error type for every bad message)
    cameras = data.get("cameras", [])
    if not isinstance(cameras, list) or not all(isinstance(c, str) for c in cameras):
        raise ValueError('"cameras" must be a list of camera ids')
    if len(cameras) > MAX_GRID_CAMERAS:
        raise ValueError(f"at most {MAX_GRID_CAMERAS} cameras per connection")
    fps = data.get("fps", 0)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 <= fps <= 60:
        raise ValueError('"fps" must be a number from 0 (no cap) to 60')
    return list(dict.fromkeys(cameras)), float(fps)


class GridConnection:
    """One grid viewer: a latest-frame slot per subscribed camera and the task that sends them."""

    def __init__(self, viewer: ViewerApp, request: web.Request, ws: web.WebSocketResponse, write_timeout_s: float) -> None:
        self.viewer = viewer
        self.request = request
        self.ws = ws
        self.write_timeout_s = write_timeout_s
        self.fps = 0.0
        self.slots: dict[str, Frame] = {}  # camera id -> the newest frame not yet sent
        self.ready = asyncio.Event()
        self.watchers: dict[str, asyncio.Task[None]] = {}
        self.counted: dict[str, Camera] = {}  # cameras this connection counts as a viewer of
        self.sent = 0
        self.skipped = 0  # frames replaced in a slot before they went out (a slow viewer)

    def subscribe(self, cameras: list[str], fps: float) -> None:
        """Watch exactly `cameras`, each at most `fps` frames a second (0: the camera's rate)."""
        self.fps = fps
        for cid in [c for c in self.watchers if c not in cameras]:
            self.watchers.pop(cid).cancel()
            self.slots.pop(cid, None)
            self._uncount(cid)
        for cid in cameras:
            if cid not in self.watchers:
                self.watchers[cid] = asyncio.create_task(self._watch(cid))

    def _uncount(self, cid: str) -> None:
        cam = self.counted.pop(cid, None)
        if cam is not None:
            self.viewer.count_viewer(cam, False, -1)

    async def _watch(self, cid: str) -> None:
        """Put the camera's newest frame (or its placeholder) into the slot, as the MJPEG loop would send it."""
        viewer = self.viewer
        hub = viewer.hub
        sent_seq, sent_at = 0, 0.0
        try:
            while not hub.closed:
                cam = hub.get(cid)
                if cam is not None and self.counted.get(cid) is not cam:
                    self._uncount(cid)
                    self.counted[cid] = cam
                    viewer.count_viewer(cam, False, 1)  # boxes are drawn while the grid shows them
                channel = await viewer.channel_of(cam, False)
                waiter = channel if channel is not None else hub.registry
                version = waiter.version
                frame = viewer.live_frame(cam, channel)
                now = time.monotonic()
                if frame is not None and frame.seq > sent_seq:
                    self._put(cid, frame)
                    sent_seq, sent_at = frame.seq, now
                    if self.fps > 0:  # the cap: no newer frame of this camera before its time
                        await asyncio.sleep(max(0.0, sent_at + 1 / self.fps - time.monotonic()))
                        continue
                elif cam is not None and now - sent_at >= viewer.interval and (
                        frame is None or now - frame.received_at > viewer.stale_s):
                    self._put(cid, await viewer.placeholder(cam))  # an unknown id gets nothing
                    sent_at = now
                await waiter.wait_changed(version, viewer.interval)
        finally:
            self._uncount(cid)

    def _put(self, cid: str, frame: Frame) -> None:
        if cid in self.slots:
            self.skipped += 1
        self.slots[cid] = frame
        self.ready.set()

    async def send_loop(self) -> None:
        """Send the slots' frames as they fill; a write that stalls past the timeout drops the viewer."""
        while True:
            await self.ready.wait()
            self.ready.clear()
            while self.slots:
                cid = next(iter(self.slots))
                frame = self.slots.pop(cid)
                try:
                    async with asyncio.timeout(self.write_timeout_s):
                        await self.ws.send_bytes(grid_message(cid, frame))
                except TimeoutError:
                    log.info("grid viewer %s stopped reading for %.1f s; dropped", self.request.remote, self.write_timeout_s)
                    if self.request.transport is not None:
                        self.request.transport.abort()  # frees what is buffered for it (a close frame would wait too)
                    return
                except (ConnectionError, RuntimeError):
                    return
                self.sent += 1

    async def close(self) -> None:
        """Stop every watcher and forget the counts."""
        tasks = list(self.watchers.values())
        self.watchers.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task
        for cid in list(self.counted):
            self._uncount(cid)


def bound_transport(request: web.Request) -> None:
    """Keep little unsent for this viewer in the kernel and the transport (see stream.py)."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    lowat = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if sock is not None and lowat is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, lowat, NOTSENT_LOWAT)
    transport.set_write_buffer_limits(high=0)


def compose_overview(cells: list[tuple[str, bytes | None]]) -> bytes:
    """Every camera's picture in a grid of ceil(sqrt(n)) columns, with its id; one JPEG (runs in an executor)."""
    n = max(1, len(cells))
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    cw = min(OVERVIEW_CELL[0], OVERVIEW_MAX_WIDTH // cols)
    ch = cw * OVERVIEW_CELL[1] // OVERVIEW_CELL[0]
    canvas = np.full((rows * ch, cols * cw, 3), 24, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i, (cid, jpeg) in enumerate(cells):
        x, y = (i % cols) * cw, (i // cols) * ch
        img = None
        if jpeg is not None:
            img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_REDUCED_COLOR_2)
        if img is not None:
            scale = min(cw / img.shape[1], ch / img.shape[0])
            w, h = max(1, int(img.shape[1] * scale)), max(1, int(img.shape[0] * scale))
            ox, oy = x + (cw - w) // 2, y + (ch - h) // 2
            canvas[oy : oy + h, ox : ox + w] = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        else:
            cv2.putText(canvas, "no picture", (x + 10, y + ch // 2), font, 0.6, (160, 160, 160), 1, cv2.LINE_AA)
        label = cid[:32]
        cv2.rectangle(canvas, (x, y), (x + min(cw, 12 + 9 * len(label)), y + 20), (0, 0, 0), -1)
        cv2.putText(canvas, label, (x + 5, y + 15), font, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 75])
    assert ok
    return buf.tobytes()


def _label(camera: str, names: Mapping[str, str]) -> str:
    """A cell's label: the camera's name where OpenCV's Hershey font can draw it (printable ASCII), else its id."""
    name = names.get(camera)
    return name if name is not None and name.isascii() and name.isprintable() else camera


class Overview:
    """The overview picture: composed on demand, at most OVERVIEW_FPS times a second, shared by its viewers."""

    def __init__(self, hub: CameraHub, fps: float = OVERVIEW_FPS,
                 members: Callable[[], tuple[str, ...] | None] = lambda: None,
                 names: Callable[[], Mapping[str, str]] = dict) -> None:
        self.hub = hub
        self.names = names  # [cameras.<id>] name: a cell's label where OpenCV's font can draw it (ASCII)
        self.members = members  # the group's camera ids now (None: every camera)
        self.period = 1 / fps
        self.compositions = 0
        self.frame: Frame | None = None
        self._lock = asyncio.Lock()

    async def latest(self, live_jpeg: Callable[[Camera], bytes | None]) -> Frame:
        """The overview, composed again if the last one is older than one period."""
        async with self._lock:
            now = time.monotonic()
            if self.frame is None or now - self.frame.received_at >= self.period:
                members, names = self.members(), self.names()
                cells = [(_label(cam.id, names), live_jpeg(cam)) for cam in self.hub if members is None or cam.id in members]
                jpeg = await asyncio.get_running_loop().run_in_executor(None, compose_overview, cells)
                self.compositions += 1
                self.frame = Frame(self.compositions, jpeg, time.monotonic(), time.time())
            return self.frame


class GridRoutes:
    """/api/grid.ws (the live grid's frames) and /api/overview.mjpg (every camera in one picture)."""

    def __init__(self, viewer: ViewerApp) -> None:
        self.viewer = viewer
        self.overview = Overview(viewer.hub, names=viewer.names)
        self.group_overviews: dict[str, Overview] = {}  # one per [groups] group watched; gone with its group
        self.connections: set[GridConnection] = set()
        self.refused_messages = 0
        self._log = ThrottledLog(log)

    def add_routes(self, app: web.Application) -> None:
        """Register the routes."""
        app.router.add_get("/api/grid.ws", self.grid_ws)
        app.router.add_get("/api/overview.mjpg", self.overview_stream)
        app.on_shutdown.append(self._on_shutdown)

    async def _on_shutdown(self, app: web.Application) -> None:
        await asyncio.gather(*(self._going_away(conn) for conn in list(self.connections)))

    @staticmethod
    async def _going_away(conn: GridConnection) -> None:
        """Close with 1001; a viewer that does not answer within a second (it stopped reading) is aborted."""
        try:
            async with asyncio.timeout(1.0):
                await conn.ws.close(code=1001, message=b"server shutdown")
        except TimeoutError:
            if conn.request.transport is not None:
                conn.request.transport.abort()

    async def grid_ws(self, request: web.Request) -> web.StreamResponse:
        """The grid's WebSocket: one of http.max_viewers places per connection, whatever it shows."""
        with self.viewer.viewer_slot(request):
            # JPEGs do not deflate: permessage-deflate (which browsers offer) would only cost CPU
            ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_SUBSCRIBE_BYTES, compress=False)
            await ws.prepare(request)
            bound_transport(request)
            conn = GridConnection(self.viewer, request, ws, self.viewer.write_timeout)
            self.connections.add(conn)
            sender = asyncio.create_task(conn.send_loop())
            try:
                async for msg in ws:
                    if msg.type != WSMsgType.TEXT:
                        await self._refuse(ws, request, "not a text message")
                        break
                    try:
                        cameras, fps = parse_subscription(msg.data)
                    except ValueError as exc:  # json.JSONDecodeError too
                        await self._refuse(ws, request, str(exc))
                        break
                    conn.subscribe(cameras, fps)
            finally:
                self.connections.discard(conn)
                sender.cancel()
                with suppress(asyncio.CancelledError):
                    await sender
                await conn.close()
            return ws

    async def _refuse(self, ws: web.WebSocketResponse, request: web.Request, why: str) -> None:
        self.refused_messages += 1
        self._log.warning("grid", "grid viewer %s: %s; closed (%d refused so far)", request.remote, printable(why),
                          self.refused_messages)
        await ws.close(code=CLOSE_BAD_MESSAGE, message=why.encode()[:120])

    def _live_jpeg(self, cam: Camera) -> bytes | None:
        frame = self.viewer.live_frame(cam, cam.raw)
        return frame.jpeg if frame is not None else None

    def _overview_of(self, group: str | None) -> Overview:
        """The overview of every camera, or of one group's (404 for a group [groups] does not have)."""
        if group is None:
            return self.overview
        groups = self.viewer.groups()
        for gone in set(self.group_overviews) - set(groups):
            del self.group_overviews[gone]
        if group not in groups:
            raise web.HTTPNotFound(reason="unknown group", text=f"no group {printable(group[:64])!r} in [groups]; "
                                   f"known: {', '.join(groups) or 'none'}")
        if group not in self.group_overviews:
            self.group_overviews[group] = Overview(self.viewer.hub, members=lambda: self.viewer.groups().get(group, ()),
                                                   names=self.viewer.names)
        return self.group_overviews[group]

    async def overview_stream(self, request: web.Request) -> web.StreamResponse:
        """MJPEG of every camera side by side, at most OVERVIEW_FPS frames a second."""
        hub = self.viewer.hub
        overview = self._overview_of(request.query.get("group"))
        with self.viewer.viewer_slot(request):
            resp = web.StreamResponse(headers={"Content-Type": MJPEG_CONTENT_TYPE, "Connection": "close",
                                               "Cache-Control": "no-cache, no-store, must-revalidate"})
            stream = BoundedStream(request, resp, self.viewer.write_timeout)
            try:
                await stream.start()
                await stream.send(MJPEG_START)
                while not hub.closed and not stream.closing:
                    frame = await overview.latest(self._live_jpeg)
                    await stream.send(mjpeg_part(frame))
                    version = hub.registry.version  # touched at shutdown: the stream ends at once
                    await hub.registry.wait_changed(version, max(0.0, frame.received_at + overview.period - time.monotonic()))
            except ViewerGone:
                pass
            return resp
