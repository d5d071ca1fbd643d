"""Camera simulator: talks to camserver exactly as the ESP32 firmware does, no hardware needed.

    python -m camserver.sim                         # one camera "sim", moving scene, 10 fps
    python -m camserver.sim --scene person          # a person walks across every 25 s (the test model's figure)
    python -m camserver.sim --cameras 4 --fps 5     # sim-1 .. sim-4
    python -m camserver.sim --source clip.mp4       # a video file (loops), a folder of images,
    python -m camserver.sim --source webcam:0       # or a local webcam

Control messages work as on the board: frame size, quality and fps; the sensor settings, of which
brightness, contrast, hmirror, vflip and the lamp change the picture (sharpness is refused, as an
OV2640 refuses it); and firmware updates, downloaded from the one-time link and checked like
HTTPUpdate does, after which the camera "reboots" with the image's version and its defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import re
import time
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from ..board.firmware import OTA_SLOT_BYTES, BadImage, inspect_image
from ..ingest.control import FRAME_SIZES, SENSOR_SETTINGS, is_ota, validate_control, validate_ota
from .board import OV2640_UNSUPPORTED, SENSOR_DEFAULTS, UpdateFailed, apply_picture_settings, download_update
from .scenes import SCENES, PersonScene, SceneSource, make_scene  # noqa: F401  (make_scene: bench/ and tests import it here)

log = logging.getLogger(__name__)

FIRMWARE = "simcam-1.0"
STATUS_INTERVAL_S = 5.0
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
class Backoff:
    """The firmware's reconnect schedule: ceiling base * 2^attempt capped, delay in [ceiling/2, ceiling]."""

    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0) -> None:
        self.base_s, self.cap_s, self.attempt = base_s, cap_s, 0

    def next_delay(self) -> float:
        """Seconds to wait before the next try."""
        ceiling = min(self.cap_s, self.base_s * 2 ** min(self.attempt, 16))
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """After a successful connection."""
        self.attempt = 0


class FrameSource(Protocol):
    """Where pictures come from; read() returns a BGR image of any size, or None to stop."""

    def read(self) -> np.ndarray | None: ...


class FolderSource:
    """The images of a folder, in name order, looping."""

    def __init__(self, folder: Path) -> None:
        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise ValueError(f"no images in {folder}")
        self.i = 0

    def read(self) -> np.ndarray | None:
        for _ in range(len(self.paths)):
            path = self.paths[self.i % len(self.paths)]
            self.i += 1
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is not None:
                return img
        return None


class CaptureSource:
    """A video file (looping) or a webcam, through OpenCV."""

    def __init__(self, target: str | int) -> None:
        self.target = target
        self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            raise ValueError(f"cannot open {target!r}")

    def read(self) -> np.ndarray | None:
        ok, img = self.cap.read()
        if not ok and isinstance(self.target, str):  # end of the file: loop
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, img = self.cap.read()
        return img if ok else None


def open_source(spec: str, scene: str = "plain") -> FrameSource:
    """`scene` (the generated `plain` or `person` scene), a folder, a video file, or `webcam:N`."""
    if scene not in SCENES:
        raise ValueError(f"--scene {scene!r}: one of {', '.join(SCENES)}")
    if spec == "scene":
        return PersonScene() if scene == "person" else SceneSource()
    if scene != "plain":
        raise ValueError(f"--scene {scene} draws the generated scene; it cannot go with --source {spec}")
    if m := re.fullmatch(r"webcam:(\d+)", spec):
        return CaptureSource(int(m[1]))
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path)
    if path.is_file():
        return CaptureSource(str(path))
    raise ValueError(f"--source {spec!r}: not 'scene', 'webcam:N', a folder or a video file")


def parse_size(text: str) -> tuple[int, int]:
    """`640x480` or a frame size name such as `VGA`."""
    if text.upper() in FRAME_SIZES:
        return FRAME_SIZES[text.upper()]
    if m := re.fullmatch(r"(\d{2,4})x(\d{2,4})", text):
        return int(m[1]), int(m[2])
    raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT or one of {', '.join(FRAME_SIZES)}")


def cv_quality(esp_quality: int) -> int:
    """esp_camera quality (4..63, lower is better) to OpenCV's (0..100, higher is better)."""
    return int(max(10, min(95, 100 - esp_quality * 1.6)))


class SimCamera:
    """One simulated camera: connects, says hello, streams paced JPEGs, reports, obeys control."""

    def __init__(
        self,
        server: str,
        camera_id: str,
        source: FrameSource,
        fps: float = 10.0,
        size: tuple[int, int] = (640, 480),
        quality: int = 12,
        token: str | None = None,
        max_frames: int | None = None,
        max_seconds: float | None = None,
        lamp_pin: bool = True,
        unsupported: tuple[str, ...] = OV2640_UNSUPPORTED,
        firmware: str = FIRMWARE,
    ) -> None:
        self.url = f"{server.rstrip('/')}/ws/{camera_id}" if not re.search(r"/ws(/|$)", server) else server
        self.camera_id = camera_id
        self.source = source
        self.fps, self.size, self.quality = fps, size, quality
        self._boot_config = (fps, size, quality)  # config.h's values, back after a reboot
        self.lamp_pin = lamp_pin
        self.sensor_unsupported = frozenset(unsupported)  # what this "sensor" refuses when asked
        self.firmware = firmware
        self.settings = dict(SENSOR_DEFAULTS)
        self.unsupported: set[str] = set() if lamp_pin else {"lamp"}
        self.ota_error = ""
        self.updates = 0  # images installed ("reboots" into a new firmware)
        self._ota: dict[str, Any] | None = None
        self.token = token
        self.max_frames, self.max_seconds = max_frames, max_seconds
        self.backoff = Backoff()
        self.frames_sent = 0
        self.connections = 0
        self.controls_applied = 0
        self._sent_at_status = 0
        self._started = 0.0

    def _done(self) -> bool:
        if self.max_frames is not None and self.frames_sent >= self.max_frames:
            return True
        return self.max_seconds is not None and time.monotonic() - self._started >= self.max_seconds

    async def run(self) -> None:
        """Stream until the frame or time limit (forever without one), reconnecting as the firmware does."""
        self._started = time.monotonic()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        while not self._done():
            try:
                async with websockets.connect(
                    self.url, additional_headers=headers, compression=None, open_timeout=10, max_size=2**16
                ) as ws:
                    self.connections += 1
                    self.backoff.reset()
                    log.info("%s: connected to %s", self.camera_id, self.url)
                    await self._session(ws)
                    if self._done():
                        await ws.close()
                        return
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as exc:
                log.info("%s: connection lost or refused (%s)", self.camera_id, exc or type(exc).__name__)
            if self._done():
                return
            if self._ota is not None:  # the connection was closed to update; then reconnect at once
                request, self._ota = self._ota, None
                await self._update(request)
                continue
            delay = self.backoff.next_delay()
            log.info("%s: reconnecting in %.1f s", self.camera_id, delay)
            await asyncio.sleep(delay)

    async def _session(self, ws: websockets.ClientConnection) -> None:
        await ws.send(json.dumps(self._hello()))
        receiver = asyncio.create_task(self._receive(ws))
        try:
            next_frame = next_status = time.monotonic()
            self._sent_at_status = self.frames_sent
            while not self._done() and not receiver.done() and self._ota is None:
                now = time.monotonic()
                if now >= next_status:
                    await ws.send(json.dumps(self._status(STATUS_INTERVAL_S if self.frames_sent else 0)))
                    next_status = now + STATUS_INTERVAL_S
                jpeg = await asyncio.to_thread(self._capture)
                if jpeg is None:
                    log.warning("%s: the source has no more frames", self.camera_id)
                    self.max_frames = self.frames_sent
                    break
                await ws.send(jpeg)
                self.frames_sent += 1
                next_frame += 1 / self.fps
                next_frame = max(next_frame, time.monotonic())  # after a stall: no catch-up burst
                await asyncio.sleep(max(0.0, next_frame - time.monotonic()))
        finally:
            receiver.cancel()
            try:
                await receiver
            except (asyncio.CancelledError, ConnectionClosed):
                pass

    def _capture(self) -> bytes | None:
        img = self.source.read()
        if img is None:
            return None
        if (img.shape[1], img.shape[0]) != self.size:
            img = cv2.resize(img, self.size, interpolation=cv2.INTER_AREA)
        img = apply_picture_settings(img, self.applied())
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, cv_quality(self.quality)])
        return buf.tobytes() if ok else None

    async def _receive(self, ws: websockets.ClientConnection) -> None:
        async for message in ws:
            if isinstance(message, bytes):
                continue
            try:
                body = json.loads(message)
                if is_ota(body):
                    request = validate_ota(body)
                else:
                    control = validate_control(body)
            except ValueError as exc:  # bad JSON or a ControlError
                log.info("%s: ignored server message (%s): %s", self.camera_id, exc, message[:200])
                continue
            if is_ota(body):
                if request["ota_size"] > OTA_SLOT_BYTES:  # the firmware's update decision
                    self.ota_error = f"image of {request['ota_size']} bytes does not fit the {OTA_SLOT_BYTES}-byte app slot"
                    await ws.send(json.dumps(self._status(0)))
                    continue
                self._ota = request  # stop streaming: the session ends, run() closes and updates
                await ws.close()
                return
            self.apply(control)
            await ws.send(json.dumps(self._status(0)))

    def apply(self, control: dict[str, Any]) -> None:
        """Apply a validated control message, as the firmware does."""
        if "framesize" in control:
            self.size = FRAME_SIZES[control["framesize"]]
        if "quality" in control:
            self.quality = control["quality"]
        if "fps" in control:
            self.fps = float(control["fps"])
        for key, value in control.items():
            if key not in SENSOR_SETTINGS:
                continue
            if key in self.sensor_unsupported or (key == "lamp" and not self.lamp_pin):
                self.unsupported.add(key)
            else:
                self.settings[key] = value
                self.unsupported.discard(key)
        self.controls_applied += 1
        log.info("%s: now %dx%d, quality %d, %.1f fps", self.camera_id, *self.size, self.quality, self.fps)

    def applied(self) -> dict[str, Any]:
        """The settings as the status reports them: in the firmware's order, without the unsupported."""
        return {k: self.settings[k] for k in SENSOR_SETTINGS if k not in self.unsupported}

    async def _update(self, request: dict[str, Any]) -> None:
        """The board's side of an update: download, check as HTTPUpdate and the firmware do, "reboot"."""
        self.ota_error = ""
        log.info("%s: updating to an image of %d bytes, md5 %s", self.camera_id, request["ota_size"],
                 request["ota_md5"])  # not the one-time link: its token is the image's only secret
        try:
            data = await download_update(request, self.firmware)
            version = inspect_image("update.bin", data).version or "unknown"
        except UpdateFailed as exc:
            self.ota_error = str(exc)
            log.warning("%s: update failed: %s; still running firmware %s", self.camera_id, exc, self.firmware)
            return
        except BadImage:
            self.ota_error = "Verify Bin Header Failed (-106)"
            return
        log.info("%s: image verified; rebooting into firmware %s", self.camera_id, version)
        self.firmware = version
        self.updates += 1
        self.fps, self.size, self.quality = self._boot_config
        self.settings = dict(SENSOR_DEFAULTS)
        self.unsupported = set() if self.lamp_pin else {"lamp"}
        self.connections = 0  # counters restart with the board

    def _frame_size_name(self) -> str:
        return next((n for n, s in FRAME_SIZES.items() if s == self.size), f"{self.size[0]}x{self.size[1]}")

    def _hello(self) -> dict[str, Any]:
        return {
            "type": "hello", "camera_id": self.camera_id, "firmware": self.firmware,
            "frame_size": self._frame_size_name(), "quality": self.quality, "free_heap": 0, "rssi": 0,
        }

    def _status(self, interval_s: float) -> dict[str, Any]:
        fps_sent = (self.frames_sent - self._sent_at_status) / interval_s if interval_s else 0.0
        self._sent_at_status = self.frames_sent
        status = {
            "type": "status", "fps_sent": round(fps_sent, 1), "free_heap": 0, "rssi": 0,
            "reconnects": max(0, self.connections - 1), "frames_sent": self.frames_sent, "capture_failures": 0,
            "frame_size": self._frame_size_name(), "quality": self.quality, "max_fps": self.fps,
            "firmware": self.firmware, "settings": self.applied(),
            "unsupported": [k for k in SENSOR_SETTINGS if k in self.unsupported],
        }
        if self.ota_error:
            status["ota_error"] = self.ota_error
        return status


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the simulator."""
    p = argparse.ArgumentParser(prog="python -m camserver.sim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="ws://127.0.0.1:3001", help="server, e.g. ws://HOST:3001 (default local)")
    p.add_argument("--camera-id", default="sim", help="camera id (with --cameras N: ID-1 .. ID-N)")
    p.add_argument("--cameras", type=int, default=1, help="how many cameras to simulate")
    p.add_argument("--source", default="scene", help="scene (default), a folder of images, a video file, webcam:N")
    p.add_argument("--scene", choices=SCENES, default="plain",
                   help="the generated scene: plain (moving shapes) or person (a person walks across every 25 s)")
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--size", type=parse_size, default=(640, 480), help="WIDTHxHEIGHT or VGA, SVGA, ...")
    p.add_argument("--quality", type=int, default=12, help="4..63, lower is better (as on the ESP32)")
    p.add_argument("--token", help="camera token, sent as Authorization: Bearer")
    p.add_argument("--frames", type=int, help="stop after this many frames per camera")
    p.add_argument("--seconds", type=float, help="stop after this many seconds")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


async def run_cameras(args: argparse.Namespace) -> list[SimCamera]:
    """Run every simulated camera until they finish."""
    ids = [args.camera_id] if args.cameras == 1 else [f"{args.camera_id}-{i}" for i in range(1, args.cameras + 1)]
    cams = [
        SimCamera(args.url, cid, open_source(args.source, args.scene), args.fps, args.size, args.quality, args.token,
                  args.frames, args.seconds)
        for cid in ids
    ]
    await asyncio.gather(*(c.run() for c in cams))
    return cams


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m camserver.sim`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)-7s %(message)s")
    try:
        cams = asyncio.run(run_cameras(args))
    except ValueError as exc:
        print(f"simcam: {exc}")
        return 2
    except KeyboardInterrupt:
        return 0
    log.info("sent %s frames", ", ".join(f"{c.camera_id}: {c.frames_sent}" for c in cams))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
