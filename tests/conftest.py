"""Shared test helpers: frames, a deterministic fake detector, a real server, real clients."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import threading
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

import aiohttp
from aiohttp import web
import cv2
import numpy as np
import pytest
import websockets

from camserver.app import CamServer
from camserver.config import Config, from_mapping
from camserver.detect import BackendInfo, Detection
from hostile import scan_bomb  # noqa: F401  (tests import it from here)

os.environ.setdefault("YOLO_OFFLINE", "1")

FAKE_BOX = (20, 20, 100, 80)  # x1, y1, x2, y2 the fake detector paints green
WAIT_S = 10.0  # upper bound of every wait in the tests


def make_jpeg(seq: int = 1, width: int = 320, height: int = 240, noise: bool = False) -> bytes:
    """A real JPEG whose flat grey level encodes `seq`; `noise` makes it big and incompressible."""
    if noise:
        rng = np.random.default_rng(seq)
        img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    else:
        img = np.full((height, width, 3), (seq * 8) % 200 + 30, np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


TAG_Y, TAG_BLOCK = 200, 32  # tag digits: blocks of 32x32 pixels along y 200..232, clear of FAKE_BOX


def tagged_jpeg(camera: int, seq: int, width: int = 320, height: int = 240) -> bytes:
    """A JPEG carrying (camera 0-9, seq 0-999) in flat blocks that survive JPEG, read by read_tag."""
    img = np.full((height, width, 3), 128, np.uint8)
    for i, digit in enumerate((camera, seq // 100, seq // 10 % 10, seq % 10)):
        img[TAG_Y : TAG_Y + TAG_BLOCK, i * TAG_BLOCK : (i + 1) * TAG_BLOCK] = 20 * digit + 20
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def read_tag(img: np.ndarray) -> tuple[int, int]:
    """(camera, seq) from a decoded tagged_jpeg."""
    d = [
        round((float(img[TAG_Y + 8 : TAG_Y + 24, i * TAG_BLOCK + 8 : (i + 1) * TAG_BLOCK - 8].mean()) - 20) / 20)
        for i in range(4)
    ]
    return d[0], d[1] * 100 + d[2] * 10 + d[3]


def decode(jpeg: bytes) -> np.ndarray:
    """Decode a JPEG, failing the test if it does not decode."""
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a decodable JPEG"
    return img


def is_green(img: np.ndarray) -> bool:
    """Whether the centre of FAKE_BOX is the fake detector's green: the frame was annotated."""
    x1, y1, x2, y2 = FAKE_BOX
    b, g, r = img[(y1 + y2) // 2, (x1 + x2) // 2].tolist()
    return g > 200 and r < 60 and b < 60


class FakeDetector:
    """Deterministic batched detector: one 'fake' object per frame, drawn as a filled green FAKE_BOX.

    Records every call: `calls` counts frames inferred, `batches` the (camera, seq) tag of each
    frame per call (see tagged_jpeg; meaningless for other frames), `draws` the frames drawn.
    """

    def __init__(self, delay_s: float = 0.0, max_batch: int = 1) -> None:
        self.delay_s = delay_s
        self.info = BackendInfo("fake", "cpu", "fp32", max_batch)
        self.calls = 0
        self.batches: list[list[tuple[int, int]]] = []
        self.draws = 0
        self._lock = threading.Lock()

    def detect(self, images) -> list[list[Detection]]:
        with self._lock:
            self.calls += len(images)
            self.batches.append([read_tag(img) for img in images if img.shape[0] > TAG_Y + TAG_BLOCK])
        if self.delay_s:
            time.sleep(self.delay_s)  # stands in for inference time on the worker thread
        return [[Detection(0, "fake", 0.9, tuple(map(float, FAKE_BOX)))] for _ in images]

    def draw(self, image: np.ndarray, detections: list[Detection]) -> np.ndarray:
        with self._lock:
            self.draws += 1
        for d in detections:
            x1, y1, x2, y2 = (int(v) for v in d.box)
            cv2.rectangle(image, (x1, y1), (x2, y2), (0, 255, 0), thickness=-1)
        return image


Script = Callable[[int, int], list[tuple[str, float, tuple[float, float, float, float]]]]


class ScriptedDetector:
    """Boxes as a function of (camera index, frame sequence), read from the tagged frame itself."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.info = BackendInfo("scripted", "cpu", "fp32", 4)

    def detect(self, images):
        out = []
        for img in images:
            cam, seq = read_tag(img)
            out.append([Detection(0 if label == "person" else 2, label, score, box)
                        for label, score, box in self.script(cam, seq)])
        return out

    def draw(self, image, detections):
        return image


def make_config(**tables: dict) -> Config:
    """A config on 127.0.0.1 with free ports and motion gating off, updated table by table."""
    data = {
        "ingest": {"host": "127.0.0.1", "port": 0},
        "http": {"host": "127.0.0.1", "port": 0, "mdns": False},  # tests that advertise turn it on
        "storage": {"dir": tempfile.mkdtemp(prefix="camserver-test-")},
        # every frame to the detector, as the tests of the pipeline expect; motion tests turn it on
        "motion": {"enabled": False},
    }
    for name, values in tables.items():
        if isinstance(values, dict):
            data.setdefault(name, {}).update(values)
        else:  # an array of tables, e.g. webhooks
            data[name] = values
    return from_mapping(data)


@dataclasses.dataclass
class Running:
    """A started server plus URLs for the tests."""

    server: CamServer
    detector: FakeDetector | None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}"

    def ws(self, camera_id: str | None = None) -> str:
        return f"ws://127.0.0.1:{self.server.ws_port}/ws" + (f"/{camera_id}" if camera_id else "")


@asynccontextmanager
async def running_server(detector: FakeDetector | None = None, **tables: dict) -> AsyncIterator[Running]:
    """Start a CamServer with the fake detector (or pass-through if None) and stop it after."""
    config = make_config(**tables)
    server = CamServer(config, detector_factory=(lambda: detector) if detector else None)
    async with server:
        yield Running(server, detector)


@pytest.fixture
async def srv() -> AsyncIterator[Running]:
    """A running server with a fresh fake detector."""
    async with running_server(FakeDetector()) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp client session."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=WAIT_S)) as session:
        yield session


@dataclasses.dataclass
class Part:
    """One part of a multipart MJPEG response."""

    headers: dict[str, str]
    jpeg: bytes

    @property
    def seq(self) -> int:
        return int(self.headers.get("x-frame-seq", "-1"))

    @property
    def placeholder(self) -> bool:
        return self.seq == 0


class MjpegReader:
    """Reads an MJPEG response part by part, checking the framing as strictly as a browser."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        ctype = resp.headers["Content-Type"]
        assert ctype.startswith("multipart/x-mixed-replace"), ctype
        self.boundary = ctype.split("boundary=", 1)[1].strip().encode()
        self.resp = resp
        self.started = False

    async def next(self, timeout: float = WAIT_S) -> Part:
        """The next part; raises EOFError when the stream ended."""
        async with asyncio.timeout(timeout):
            content = self.resp.content
            if not self.started:
                assert await content.readline() == b"--" + self.boundary + b"\r\n"
                self.started = True
            headers = {}
            while True:
                line = await content.readline()
                if not line:
                    raise EOFError("stream ended")
                if line == b"\r\n":
                    break
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            assert headers["content-type"] == "image/jpeg"
            jpeg = await content.readexactly(int(headers["content-length"]))
            assert await content.readline() == b"\r\n"
            assert await content.readline() == b"--" + self.boundary + b"\r\n"
            return Part(headers, jpeg)

    async def next_live(self, timeout: float = WAIT_S) -> Part:
        """The next part that is a camera frame, skipping placeholders."""
        async with asyncio.timeout(timeout):
            while (part := await self.next()).placeholder:
                pass
            return part


@asynccontextmanager
async def mjpeg(session: aiohttp.ClientSession, url: str, **kwargs) -> AsyncIterator[MjpegReader]:
    """Open an MJPEG URL (kwargs go to session.get, e.g. headers) and yield a reader."""
    async with session.get(url, **kwargs) as resp:
        assert resp.status == 200, await resp.text()
        yield MjpegReader(resp)


def settled(server: CamServer) -> bool:
    """Whether every camera's frames went through: none waiting in a slot, none in the detector."""
    return all(not c.slot.full and not server.scheduler.busy(c.id) for c in server.hub)


def person_between(first: int, last: int):
    """A script: a person walking while first <= seq <= last."""

    def script(cam: int, seq: int):
        if first <= seq <= last:
            return [("person", 0.9, (10.0 + 4 * seq, 60.0, 50.0 + 4 * seq, 200.0))]
        return []

    return script


@asynccontextmanager
async def served_app(app: web.Application) -> AsyncIterator[str]:
    """Serve an aiohttp app on a free loopback port; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def wait_for(predicate: Callable[[], bool], timeout: float = WAIT_S, what: str = "condition") -> None:
    """Poll a cheap in-process predicate until true, failing after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@dataclasses.dataclass
class Feed:
    """What a background camera feed has sent: how many frames, and when each went out."""

    sent: int = 0
    sent_at: dict[int, float] = dataclasses.field(default_factory=dict)  # n-th frame -> monotonic time
    processed: list[tuple[float, int]] = dataclasses.field(default_factory=list)  # (monotonic time, count) per send


@asynccontextmanager
async def feeding(
    cam: websockets.ClientConnection, fps: float = 20, width: int = 320, height: int = 240, noise: bool = False,
    processed: Callable[[], int] | None = None, paced: bool = False,
) -> AsyncIterator[Feed]:
    """Send numbered frames from `cam` at about `fps` in the background while the block runs.

    Args:
        processed: a count read after every send (e.g. the camera's frames_processed), kept in Feed.processed.
        paced: frame n goes out at start + n / fps (a rate that does not drift under load), instead of a
            1 / fps sleep after each send.
    """
    stop = asyncio.Event()
    feed = Feed()

    async def run() -> None:
        started = time.monotonic()
        while not stop.is_set():
            frame = make_jpeg(feed.sent + 1, width, height, noise)
            feed.sent_at[feed.sent + 1] = time.monotonic()
            await cam.send(frame)
            feed.sent += 1
            if processed is not None:
                feed.processed.append((time.monotonic(), processed()))
            # the camera's frame pacing
            await asyncio.sleep(max(0.0, started + feed.sent / fps - time.monotonic()) if paced else 1 / fps)

    task = asyncio.create_task(run())
    try:
        yield feed
    finally:
        stop.set()
        await task


async def connect_camera(url: str, **kwargs) -> websockets.ClientConnection:
    """A real websockets client, as the firmware connects."""
    return await websockets.connect(url, compression=None, open_timeout=WAIT_S, **kwargs)


