"""Per-camera state: latest-frame slots, broadcast channels, counters, figures."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .clock import Timeline, timeline_of


class Frame:
    """One JPEG as published to viewers (and, raw, as the camera sent it)."""

    __slots__ = ("seq", "jpeg", "received_at", "wall_time", "steady", "__weakref__")

    def __init__(self, seq: int, jpeg: bytes, received_at: float, wall_time: float, steady: float | None = None) -> None:
        self.seq = seq
        self.jpeg = jpeg
        self.received_at = received_at  # time.monotonic() when the camera's frame arrived
        self.wall_time = wall_time  # wall-clock time of the same moment: a label, for the API and records
        # the server's steady time of the same moment (clock.Timeline.now): what durations are measured on
        self.steady = wall_time if steady is None else steady


class Signal:
    """A wake-up with a version: waiters sleep until the next touch (no value is carried)."""

    def __init__(self) -> None:
        self.version = 0
        self._changed = asyncio.Event()

    def touch(self) -> None:
        """Wake every waiter."""
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_changed(self, seen_version: int, timeout: float) -> bool:
        """Wait until the version differs from `seen_version`; False on timeout."""
        if self.version != seen_version:
            return True
        changed = self._changed
        try:
            async with asyncio.timeout(timeout):
                await changed.wait()
        except TimeoutError:
            return False
        return True


class FrameChannel(Signal):
    """Latest-value broadcast: a publisher replaces the frame, viewers wait for a newer one.

    Nothing queues: a viewer that falls behind simply sees the newest frame next time. A touch
    without a new frame wakes viewers too (camera went on/offline, shutdown).
    """

    def __init__(self) -> None:
        super().__init__()
        self.frame: Frame | None = None

    def publish(self, frame: Frame) -> None:
        """Make `frame` the latest and wake every waiting viewer."""
        self.frame = frame
        self.touch()


class FrameSlot:
    """Camera -> detector handoff of size one: the newest frame wins."""

    def __init__(self) -> None:
        self._frame: Frame | None = None

    def put(self, frame: Frame) -> bool:
        """Store `frame`; True when it replaced one the detector never took (a drop)."""
        replaced = self._frame is not None
        self._frame = frame
        return replaced

    def take(self) -> Frame | None:
        """Remove and return the waiting frame, if any."""
        frame, self._frame = self._frame, None
        return frame

    @property
    def full(self) -> bool:
        """Whether a frame is waiting."""
        return self._frame is not None

    @property
    def waiting(self) -> Frame | None:
        """The waiting frame, left in the slot."""
        return self._frame


class RateMeter:
    """Events per second over the last few seconds, in bounded memory."""

    def __init__(self, window_s: float = 5.0, maxlen: int = 256) -> None:
        self.window_s = window_s
        self._stamps: deque[float] = deque(maxlen=maxlen)

    def mark(self, now: float | None = None) -> None:
        """Record one event."""
        self._stamps.append(time.monotonic() if now is None else now)

    def rate(self, now: float | None = None) -> float:
        """Recent events per second (0 when idle)."""
        now = time.monotonic() if now is None else now
        recent = [t for t in self._stamps if now - t <= self.window_s]
        if len(recent) < 2:
            return 0.0
        span = max(now - recent[0], recent[-1] - recent[0])
        return (len(recent) - 1) / span if span > 0 else 0.0


class Camera:
    """What every stage reads of one camera id: its connection, channels, slot and frame counters.

    Each stage keeps its own per-camera state beside this (the scheduler its dispatch state, the
    listener its close reasons, the viewer its viewer counts), keyed by camera id.
    """

    def __init__(self, camera_id: str, declared: bool = False) -> None:
        self.id = camera_id
        self.declared = declared
        self.connection: Any = None  # the live WebSocket connection, if any
        self.connected_at: float | None = None
        self.raw = FrameChannel()
        self.annotated = FrameChannel()
        self.slot = FrameSlot()
        self.frames_received = 0
        self.frames_processed = 0  # detected, or passed on without detection
        self.frames_dropped = 0  # replaced in the slot by a newer frame before detection took them
        self.frames_rejected = 0  # not a JPEG, too large, or did not decode
        self.rejected: Counter[str] = Counter()  # the same, by reason
        self.texts_paced = 0  # text messages held back: the camera sent them faster than the ingest reads them
        self.fps_in = RateMeter()
        self.fps_out = RateMeter()
        self.hello: str | dict[str, Any] | None = None
        self.status: dict[str, Any] | None = None
        self.size: tuple[int, int] | None = None
        self.last_frame_at: float | None = None
        self.waiting_since: float | None = None  # arrival of the oldest frame since the last one processed
        self._next_seq = 0

    @property
    def connected(self) -> bool:
        """Whether a camera connection is open for this id."""
        return self.connection is not None

    def next_seq(self) -> int:
        """Sequence number for the next frame received from this camera."""
        self._next_seq += 1
        return self._next_seq

    def reject(self, reason: str) -> None:
        """Count one frame rejected, under its reason."""
        self.frames_rejected += 1
        if len(self.rejected) < 32 or reason in self.rejected:  # reasons are a fixed set; stay bounded anyway
            self.rejected[reason] += 1

    def processed(self, now: float) -> None:
        """Count one frame through the pipeline (detected or passed on)."""
        self.frames_processed += 1
        self.fps_out.mark(now)
        self.waiting_since = None

    def summary(self) -> dict[str, Any]:
        """The hub's part of what /api/cameras shows for this camera."""
        now = time.monotonic()
        return {
            "id": self.id,
            "connected": self.connected,
            "frames_received": self.frames_received,
            "frames_processed": self.frames_processed,
            "frames_dropped": self.frames_dropped,
            "frames_rejected": self.frames_rejected,
            "rejected": dict(self.rejected),
            "texts_paced": self.texts_paced,
            "fps_in": round(self.fps_in.rate(now), 2),
            "fps_out": round(self.fps_out.rate(now), 2),
            "last_frame_age_s": None if self.last_frame_at is None else round(now - self.last_frame_at, 3),
            "width": self.size[0] if self.size else None,
            "height": self.size[1] if self.size else None,
            "status": self.status,
        }


def _unwatched(camera_id: str) -> bool:
    return False


@dataclass(frozen=True)
class HubPorts:
    """What the hub tells the other stages (callbacks, called in order) and what it asks them."""

    online: tuple[Callable[[Camera], None], ...] = ()  # a camera connected
    offline: tuple[Callable[[Camera], None], ...] = ()  # a camera went away
    forget: tuple[Callable[[str], None], ...] = ()  # a camera id was forgotten
    frame: tuple[Callable[[Camera, Frame], None], ...] = ()  # every accepted frame (recording)
    in_use: Callable[[str], bool] = _unwatched  # someone watches it: keep it when room is needed


class HubFull(Exception):
    """No room for another camera id."""


class CameraHub:
    """The registry of cameras and the signal that wakes the detection scheduler."""

    def __init__(
        self,
        max_cameras: int,
        *,
        declared_ids: tuple[str, ...] = (),
        default_id: str = "default",
        clock: Timeline | Callable[[], float] | None = None,
        ports: HubPorts | None = None,
    ) -> None:
        self.max_cameras = max(max_cameras, len(declared_ids))
        self.default_id = default_id
        self.cameras: dict[str, Camera] = {cid: Camera(cid, declared=True) for cid in declared_ids}
        self.frame_waiting = asyncio.Event()
        self.registry = Signal()  # touched when a camera id appears, and at shutdown
        self.closed = False
        self.timeline = timeline_of(clock)  # steady time and wall-clock labels of frames (tests inject a clock)
        self.clock = self.timeline.now  # steady time: what the stages measure durations on
        self.ports = ports or HubPorts()  # the other stages: told of cameras and frames, asked who watches

    def get(self, camera_id: str) -> Camera | None:
        """The camera with this id, if the server knows it."""
        return self.cameras.get(camera_id)

    def __iter__(self) -> Iterator[Camera]:
        return iter(list(self.cameras.values()))

    def default_camera(self) -> Camera | None:
        """The camera behind /stream.mjpg: `default_id` if known, else the first one registered."""
        return self.cameras.get(self.default_id) or next(iter(self.cameras.values()), None)

    def has_room_for(self, camera_id: str) -> bool:
        """Whether `camera_id` can attach now (known, or room for one more)."""
        return camera_id in self.cameras or len(self.cameras) < self.max_cameras or self._evictable() is not None

    def _evictable(self) -> Camera | None:
        # An undeclared camera that is offline and watched by nobody can be forgotten.
        for cam in self.cameras.values():
            if not cam.declared and not cam.connected and not self.ports.in_use(cam.id):
                return cam
        return None

    def attach(self, camera_id: str, connection: Any) -> tuple[Camera, Any]:
        """Register `connection` as the live feed of `camera_id`.

        Returns:
            The camera and the connection it replaced (newest wins), or None.

        Raises:
            HubFull: max_cameras ids are known and none can be forgotten.
        """
        cam = self.cameras.get(camera_id)
        if cam is None:
            if len(self.cameras) >= self.max_cameras:
                victim = self._evictable()
                if victim is None:
                    raise HubFull(camera_id)
                del self.cameras[victim.id]
                for forget in self.ports.forget:
                    forget(victim.id)
            cam = self.cameras[camera_id] = Camera(camera_id)
            self.registry.touch()
        replaced, cam.connection = cam.connection, connection
        cam.connected_at = time.monotonic()
        cam.waiting_since = None
        cam.raw.touch()
        cam.annotated.touch()
        for online in self.ports.online:
            online(cam)
        return cam, replaced

    def detach(self, cam: Camera, connection: Any) -> None:
        """Mark the camera offline, unless a newer connection already took over."""
        if cam.connection is connection:
            cam.connection = None
            cam.slot.take()
            cam.raw.touch()
            cam.annotated.touch()
            for offline in self.ports.offline:
                offline(cam)

    def receive(self, cam: Camera, jpeg: bytes, size: tuple[int, int]) -> Frame:
        """Accept a validated camera frame: publish it raw and leave it for the detector."""
        now = time.monotonic()
        steady, wall = self.timeline.stamp()
        frame = Frame(cam.next_seq(), jpeg, now, wall, steady)
        cam.size = size
        cam.last_frame_at = now
        if cam.waiting_since is None:
            cam.waiting_since = now
        cam.fps_in.mark(now)
        cam.raw.publish(frame)
        if cam.slot.put(frame):
            cam.frames_dropped += 1
        for listener in self.ports.frame:
            listener(cam, frame)
        self.frame_waiting.set()
        return frame

    def close(self) -> None:
        """Shutdown: wake every viewer so open streams end."""
        self.closed = True
        self.registry.touch()
        for cam in self.cameras.values():
            cam.raw.touch()
            cam.annotated.touch()
