"""Camera side: the websockets listener, one connection per camera, frame validation."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import weakref
from collections import Counter
from http import HTTPStatus
from typing import Any, Callable, Coroutine
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.frames import Close, CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import Protocol

from ..auth import presented_token, same_secret
from ..config import IngestConfig
from ..hub import Camera, CameraHub, HubFull
from .connection import MAX_MARKS, TEXTS_PER_S, CameraConnection, TextPacer
from .control import for_log
from .jpeg import BadFrame, inspect_jpeg
from .keepalive import keep_alive
from ..logsafe import ThrottledLog, printable
from ..supervise import cancel_and_wait

log = logging.getLogger(__name__)

# /ws is the path of the original ESP32 sketch; /ws/<camera_id> names the camera.
PATH_RE = re.compile(r"^/ws(?:/(?P<id>[A-Za-z0-9_-]{1,32}))?/?$")
MAX_STATUS_CHARS = 4096  # a longer text message is logged, not kept
# A status nests at most 2 deep (settings inside it); anything much deeper is not from a camera,
# and would only cost recursion in every JSON encoder that shows it (/api/cameras, the page).
MAX_JSON_DEPTH = 8


class CameraIngest:
    """Accepts camera connections and feeds their frames into the hub."""

    def __init__(self, config: IngestConfig, hub: CameraHub, *,
                 on_hello: Callable[[str, dict[str, Any] | None], dict[str, Any] | None] | None = None,
                 on_status: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.config = config
        self.hub = hub
        self.server: Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._bad_frames = ThrottledLog(log)
        self._refusals = ThrottledLog(log)
        self._closing: weakref.WeakKeyDictionary[ServerConnection, str] = weakref.WeakKeyDictionary()
        # connections ended, by reason (keepalive, too_big, ...), per camera while its id is known
        self.closes: weakref.WeakKeyDictionary[Camera, Counter[str]] = weakref.WeakKeyDictionary()
        self.auth_failures = 0
        # board control: a hello returns the control message to send back (the kept settings);
        # every later JSON status is passed on
        self.on_hello = on_hello
        self.on_status = on_status
        self._marks = 0

    async def start(self) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        self.server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._check_request,
            create_connection=CameraConnection,
            max_size=self.config.max_frame_bytes,
            open_timeout=self.config.handshake_timeout_s,
            # the library's keepalive pings random bytes, which the ESP32 library cannot always
            # echo; keepalive.py pings with payloads it can (see there)
            ping_interval=None,
            # a dead peer never completes the closing handshake: do not wait the library's 10 s for it
            close_timeout=min(5.0, self.config.ping_timeout_s),
            max_queue=4,  # frames buffered per camera before TCP pushes back
            compression=None,  # JPEG does not compress; deflate only costs CPU
        )
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop accepting and close every camera with 1001 (going away)."""
        if self.server is not None:
            self.server.close(close_connections=True)
            await self.server.wait_closed()
        await cancel_and_wait(*self._tasks)

    def closes_of(self, camera_id: str) -> dict[str, int]:
        """How the camera's connections ended, by reason."""
        cam = self.hub.get(camera_id)
        return dict(self.closes.get(cam, ())) if cam is not None else {}

    async def send_control(self, cam: Camera, message: dict[str, Any]) -> bool:
        """Send a control message to the camera's open connection; False if it is not connected."""
        ws = cam.connection
        if ws is None:
            return False
        try:
            async with asyncio.timeout(5):
                await ws.send(json.dumps({"type": "control", **message}))
        except (ConnectionClosed, TimeoutError):
            return False
        log.info("camera %s: sent control %s", cam.id, for_log(message))
        return True

    async def after_pending(self, cam: Camera, callback: Callable[[], None], timeout_s: float = 5.0) -> bool:
        """Ping the camera; once every message it sent before its pong is handled, call `callback`.

        The camera answers a ping after reading everything sent before it, so a message handled after
        `callback` ran was sent once the camera had read them (an update message, say). `callback` runs
        on the loop before the next message is handled. False (and no call) when the camera is not
        connected or sends no pong within `timeout_s`.
        """
        ws = cam.connection
        if not isinstance(ws, CameraConnection) or len(ws.pong_marks) >= MAX_MARKS:
            return False
        self._marks += 1
        payload = b"mk%d" % self._marks  # ASCII, no NUL: the ESP32 library echoes it intact (keepalive.py)
        ws.pong_marks[payload] = -1
        try:
            pong = await ws.ping(payload)
            async with asyncio.timeout(timeout_s):
                await pong
        except (ConnectionClosed, TimeoutError):
            return False
        finally:
            mark = ws.pong_marks.pop(payload, -1)
        if mark < 0:  # acknowledged by a later ping's pong: what has come in by now came before that
            mark = ws.received
        if ws.handled >= mark:
            callback()
        else:
            ws.at_handled.setdefault(mark, []).append(callback)
        return True

    def camera_id_for(self, path: str) -> str | None:
        """The camera id a request path names, or None when the path is not a camera path."""
        match = PATH_RE.match(urlsplit(path).path)
        if match is None:
            return None
        return match["id"] or self.config.default_camera_id

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        camera_id = self.camera_id_for(request.path)
        if camera_id is None:
            return connection.respond(
                HTTPStatus.NOT_FOUND,
                "Unknown path. Cameras connect to /ws or /ws/<camera_id> "
                "(letters, digits, '-', '_', up to 32 characters).\n",
            )
        if self.config.token and not same_secret(presented_token(request.headers, request.path), self.config.token):
            self.auth_failures += 1
            self._refusals.warning(
                "auth", "camera %s refused from %s: missing or wrong token", camera_id, _peer(connection)
            )
            response = connection.respond(HTTPStatus.UNAUTHORIZED, "Missing or wrong camera token.\n")
            response.headers["WWW-Authenticate"] = 'Bearer realm="camserver cameras"'
            return response
        if not self.hub.has_room_for(camera_id):
            self._refusals.warning("full", "camera %s refused: %d cameras already known", camera_id, self.hub.max_cameras)
            response = connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "Too many cameras on this server.\n")
            response.headers["Retry-After"] = "30"
            return response
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        camera_id = self.camera_id_for(ws.request.path) if ws.request else None
        assert camera_id is not None  # _check_request refused anything else
        try:
            cam, replaced = self.hub.attach(camera_id, ws)
        except HubFull:
            await ws.close(CloseCode.TRY_AGAIN_LATER, "too many cameras")
            return
        if replaced is not None:
            log.warning("camera %s: a new connection replaces the open one (newest wins)", camera_id)
            self._closing[replaced] = "replaced"
            self._spawn(replaced.close(CloseCode.POLICY_VIOLATION, "replaced by a newer connection for this camera id"))
        log.info("camera %s connected from %s", camera_id, _peer(ws))
        keepalive = asyncio.create_task(self._keep_alive(cam, ws), name=f"keepalive-{camera_id}")
        texts = bad_in_row = 0  # rejected frames since the last good one, on this connection
        pacer = TextPacer()
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    bad_in_row = 0 if self._on_frame(cam, message) else bad_in_row + 1
                    if bad_in_row >= self.config.max_bad_frames:
                        log.warning("camera %s: %d bad frames in a row; closing with 1008", camera_id, bad_in_row)
                        self._closing[ws] = "bad_frames"
                        await ws.close(CloseCode.POLICY_VIOLATION, "too many bad frames")
                        break
                else:
                    if (wait := pacer.delay()) > 0:
                        cam.texts_paced += 1
                        self._bad_frames.warning(f"texts-{cam.id}", "camera %s: over %g text messages a second; "
                                                 "reading it more slowly", cam.id, TEXTS_PER_S)
                        await asyncio.sleep(wait)
                    self._on_text(cam, message, first=texts == 0)
                    texts += 1
                if isinstance(ws, CameraConnection):
                    ws.message_handled()
        except ConnectionClosedError as exc:
            if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
                cam.reject("too_big")
                log.warning(
                    "camera %s: frame over ingest.max_frame_bytes (%d bytes); closing with 1009",
                    camera_id,
                    self.config.max_frame_bytes,
                )
        except ConnectionClosed:
            pass
        finally:
            self.hub.detach(cam, ws)
            self._log_close(cam, ws)
            await cancel_and_wait(keepalive)

    async def _keep_alive(self, cam: Camera, ws: ServerConnection) -> None:
        if await keep_alive(ws, self.config.ping_interval_s, self.config.ping_timeout_s):
            return
        log.warning(
            "camera %s: no pong within %.1f s; closing with 1011 (keepalive ping timeout)",
            cam.id,
            self.config.ping_timeout_s,
        )
        self._closing[ws] = "keepalive"
        # close(), not an abrupt fail: a camera that is alive but slow still reads the code
        await ws.close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

    def _log_close(self, cam: Camera, ws: ServerConnection) -> None:
        """Log the close code sent and received, and count the close under its reason."""
        sent, rcvd = ws.protocol.close_sent, ws.protocol.close_rcvd
        reason = self._closing.pop(ws, None) or close_reason(ws.protocol)
        self.closes.setdefault(cam, Counter())[reason] += 1
        log.info(
            "camera %s disconnected (%s): sent %s, received %s",
            cam.id,
            reason,
            _describe(sent),
            _describe(rcvd) if rcvd is not None else "no close frame (1006)",
        )

    def _on_frame(self, cam: Camera, data: bytes) -> bool:
        """Validate and hand over one frame; False when it was rejected."""
        cam.frames_received += 1
        try:
            info = inspect_jpeg(data, self.config.max_width, self.config.max_height)
        except BadFrame as exc:
            cam.reject(exc.reason)
            self._bad_frames.warning(cam.id, "camera %s: frame rejected (%d bytes): %s", cam.id, len(data), exc)
            return False
        self.hub.receive(cam, data, (info.width, info.height))
        return True

    def _on_text(self, cam: Camera, text: str, first: bool) -> None:
        parsed = camera_json(text)
        if first:
            cam.hello = parsed if isinstance(parsed, dict) else printable(text, MAX_STATUS_CHARS)
            log.info("camera %s says hello: %s", cam.id, printable(text))
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("camera %s: %s", cam.id, printable(text))
        if isinstance(parsed, dict):
            cam.status = parsed
        if first and self.on_hello is not None:
            message = self.on_hello(cam.id, parsed if isinstance(parsed, dict) else None)
            if message:
                self._spawn(self.send_control(cam, message))
        elif not first and isinstance(parsed, dict) and self.on_status is not None:
            self.on_status(cam.id, parsed)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


# Why a camera connection ended, by the close frames seen; our own closes name their reason.
_SENT_REASONS: dict[int, str] = {CloseCode.GOING_AWAY: "shutdown", CloseCode.MESSAGE_TOO_BIG: "too_big"}


def close_reason(protocol: Protocol) -> str:
    """A short name for why a connection ended, as counted in /api/cameras `closes`."""
    sent, rcvd = protocol.close_sent, protocol.close_rcvd
    if rcvd is not None and (sent is None or protocol.close_rcvd_then_sent):
        return "camera"  # the camera closed first
    if sent is None:
        return "lost"  # no close frame either way: the TCP connection just ended
    if sent.code in _SENT_REASONS:
        return _SENT_REASONS[sent.code]
    return "server_error" if sent.code == CloseCode.INTERNAL_ERROR else "server_close"


def camera_json(text: str) -> Any:
    """A camera's text message as JSON, or None: too long, not JSON, or nested over MAX_JSON_DEPTH."""
    if len(text) > MAX_STATUS_CHARS:
        return None
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return parsed if json_depth(parsed) <= MAX_JSON_DEPTH else None


def json_depth(value: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _describe(close: Close | None) -> str:
    if close is None:
        return "nothing"
    return f"{close.code} {close.reason!r}" if close.reason else str(close.code)


def _peer(ws: ServerConnection) -> str:
    addr = ws.remote_address
    return f"{addr[0]}:{addr[1]}" if addr else "?"
