"""The annotated stream: each frame published once, with boxes drawn only when someone looks.

A frame with boxes to show is decoded, drawn and encoded only while its camera's annotated stream
has a viewer; otherwise it goes out as the camera sent it, and a snapshot draws the latest boxes
on request (kept until the next frame). Plain functions run in the frame pool.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from concurrent.futures import Executor
from typing import Any, Callable

from ..hub import Camera, Frame
from .base import AsyncDetector, Detection, Detector
from .frames import mark_frame, render_frame, render_jpeg

STALLED_TEXT = "detector stalled"


class AnnotatedPublisher:
    """Puts frames on each camera's annotated channel, drawn when watched, newest only.

    Args:
        frames: the frame pool (decode, draw, encode run there).
        drawer: what draws boxes now (a loaded detector, or the remote one's local draw), or None.
        watched: whether someone watches a camera's annotated stream.
        jpeg_quality: of the drawn frames.
    """

    def __init__(self, frames: Executor, drawer: Callable[[], Detector | AsyncDetector | None],
                 watched: Callable[[str], bool], jpeg_quality: int) -> None:
        self.frames = frames
        self.drawer = drawer
        self.watched = watched
        self.jpeg_quality = jpeg_quality
        self._drawn: weakref.WeakKeyDictionary[Camera, int] = weakref.WeakKeyDictionary()  # seq drawn last

    async def _in_pool(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.frames, fn, *args)

    async def publish(self, cam: Camera, frame: Frame, image: Any, boxes: list[Detection]) -> None:
        """Put a frame on the annotated stream: with `boxes` drawn if someone watches it, else as the camera sent it.

        Args:
            image: the decoded frame if the caller has it (else it is decoded here when needed).
        """
        drawer = self.drawer()
        out, drawn = frame, False
        if boxes and drawer is not None and self.watched(cam.id):
            if image is not None:
                jpeg = await self._in_pool(render_frame, drawer, image, boxes, self.jpeg_quality)
            else:
                jpeg = await self._in_pool(render_jpeg, drawer, frame.jpeg, boxes, self.jpeg_quality)
            if jpeg is not None:
                out, drawn = Frame(frame.seq, jpeg, frame.received_at, frame.wall_time, frame.steady), True
        cam.processed(time.monotonic())
        if self._newest(cam, out) and drawn:
            self._drawn[cam] = frame.seq

    async def publish_marked(self, cam: Camera, frame: Frame) -> None:
        """A frame the hung detector cannot take: published at once with a red "detector stalled" banner."""
        jpeg = await self._in_pool(mark_frame, frame.jpeg, STALLED_TEXT, self.jpeg_quality)
        cam.processed(time.monotonic())
        self._newest(cam, Frame(frame.seq, jpeg, frame.received_at, frame.wall_time, frame.steady) if jpeg else frame)

    @staticmethod
    def _newest(cam: Camera, out: Frame) -> bool:
        current = cam.annotated.frame
        if current is None or out.seq > current.seq:  # frames may finish out of order
            cam.annotated.publish(out)
            return True
        return False

    async def latest(self, cam: Camera, boxes: list[Detection]) -> Frame | None:
        """The camera's latest annotated frame, with `boxes` (the latest) drawn now if nobody watched it."""
        current = cam.annotated.frame
        drawer = self.drawer()
        if current is None or not boxes or drawer is None or self._drawn.get(cam, 0) >= current.seq:
            return current
        jpeg = await self._in_pool(render_jpeg, drawer, current.jpeg, boxes, self.jpeg_quality)
        if jpeg is not None and cam.annotated.frame is current:  # the same frame, now with its boxes
            self._drawn[cam] = current.seq
            cam.annotated.publish(Frame(current.seq, jpeg, current.received_at, current.wall_time, current.steady))
        return cam.annotated.frame
