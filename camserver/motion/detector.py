"""Per-camera motion detection on a small grayscale copy of each JPEG (after Frigate's improved motion).

Each frame is decoded straight to grayscale at 1/2, 1/4 or 1/8 of its size (libjpeg scales in its
inverse DCT, so the full picture is never built), resized to FRAME_HEIGHT rows, contrast-stretched,
blurred and compared with a running-average background. Pixels that differ by more than
`threshold`, dilated, form contours; those over `contour_area` are motion. When most of the frame
changes at once (auto-exposure, the flash LED, lightning) the background is reset to the new
frame instead of reporting motion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import cv2
import numpy as np

from ..config import MotionConfig
from ..ingest.jpeg import BadFrame, inspect_jpeg

FRAME_HEIGHT = 100  # rows the detector works on, whatever the camera sends (Frigate's frame_height)
FRAME_ALPHA = 0.01  # weight of each new frame in the background (Frigate's frame_alpha)
PERSIST_FRAMES = 10  # motion this many frames in a row is blended into the background (a parked car)
CONTRAST_HISTORY = 50  # frames over which the contrast stretch's black and white points are averaged
CONTRAST_LOW, CONTRAST_HIGH = 0.04, 0.96  # percentiles taken as black and white
_REDUCED = ((8, cv2.IMREAD_REDUCED_GRAYSCALE_8), (4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
            (2, cv2.IMREAD_REDUCED_GRAYSCALE_2), (1, cv2.IMREAD_GRAYSCALE))
_MAX_SIZE = 1 << 16


Polygon = Sequence[Sequence[float]]  # [[x, y], ...] relative to the frame (0..1)


@dataclass(frozen=True, slots=True)
class MotionResult:
    """What one frame showed: whether something moves, how much of the frame, and where."""

    motion: bool
    share: float  # moving share of the frame's unmasked area, 0..1
    boxes: tuple[tuple[float, float, float, float], ...]  # x1 y1 x2 y2 relative (0..1)
    reset: bool = False  # the background was reset (most of the frame changed at once)


NO_MOTION = MotionResult(False, 0.0, ())


def reduced_decode_flag(width: int, height: int) -> tuple[int, int]:
    """(scale, cv2 flag): the strongest JPEG reduction that still leaves FRAME_HEIGHT rows or more."""
    for scale, flag in _REDUCED:
        if height // scale >= FRAME_HEIGHT:
            return scale, flag
    return 1, cv2.IMREAD_GRAYSCALE


def mask_image(polygons: Iterable[Polygon], size: tuple[int, int]) -> np.ndarray | None:
    """A size (w, h) uint8 image: 0 inside any polygon (ignored), 255 elsewhere; None without polygons."""
    w, h = size
    pts = [np.round(np.array(p, np.float64) * (w, h)).astype(np.int32) for p in polygons]
    if not pts:
        return None
    img = np.full((h, w), 255, np.uint8)
    cv2.fillPoly(img, pts, 0)
    return img


class MotionDetector:
    """Motion of one camera's frames; call detect() once per received frame, in order, one call at a time.

    `config` is read on every call, so a camera's override is just another MotionConfig object.
    """

    def __init__(self, config: MotionConfig, masks: Iterable[Polygon] = ()) -> None:
        self.config = config
        self.masks = [tuple(tuple(float(c) for c in p) for p in poly) for poly in masks]
        self._shape: tuple[int, int] | None = None  # the camera's frame size (w, h) the state is for
        self._decode_flag = cv2.IMREAD_GRAYSCALE
        self._size = (0, 0)  # (w, h) of the motion image
        self._mask: np.ndarray | None = None  # bool, True where masked
        self._keep: np.ndarray | None = None
        self._unmasked = 1
        self._avg: np.ndarray | None = None
        self._motion_frames = 0
        self._contrast = np.zeros((CONTRAST_HISTORY, 2), np.float32)
        self._contrast_n = 0
        self._kernel = np.ones((3, 3), np.uint8)

    def detect(self, jpeg: bytes, size: tuple[int, int] | None = None) -> MotionResult:
        """Motion in one camera JPEG; `size` (w, h) saves reading it from the headers.

        Raises:
            BadFrame: the JPEG's headers are unreadable or it does not decode.
        """
        if not self.config.enabled:
            return NO_MOTION
        if size is None:
            info = inspect_jpeg(jpeg, _MAX_SIZE, _MAX_SIZE)
            size = (info.width, info.height)
        if size != self._shape:
            self._resize_state(size)
        small = cv2.imdecode(np.frombuffer(jpeg, np.uint8), self._decode_flag)
        if small is None:
            raise BadFrame("undecodable", "JPEG does not decode")
        return self.detect_gray(small)

    def detect_gray(self, small: np.ndarray) -> MotionResult:
        """Motion in a grayscale frame (any size of the camera's aspect; resized to the working size)."""
        if not self.config.enabled:
            return NO_MOTION
        if self._shape is None:
            self._resize_state((small.shape[1], small.shape[0]))
        w, h = self._size
        if small.shape[0] != h or small.shape[1] != w:
            # linear: the step from the reduced decode is at most 2x, and INTER_AREA costs 4x more here
            small = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        frame = self._prepare(small)
        if self._avg is None:
            self._avg = frame.astype(np.float32)  # the first frame is the background: no start-up motion
            return NO_MOTION

        delta = cv2.absdiff(frame, cv2.convertScaleAbs(self._avg))
        _, thresh = cv2.threshold(delta, self.config.threshold, 255, cv2.THRESH_BINARY)
        thresh = cv2.dilate(thresh, self._kernel, iterations=1)
        contours, _ = cv2.findContours(thresh, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        total = 0.0
        boxes = []
        for c in contours:
            area = cv2.contourArea(c)
            total += area
            if area > self.config.contour_area:
                x, y, bw, bh = cv2.boundingRect(c)
                boxes.append((x / w, y / h, (x + bw) / w, (y + bh) / h))
        share = min(1.0, total / self._unmasked)

        if share > self.config.lightning_threshold:
            # the whole picture changed at once: a new exposure, not an object; start again from it,
            # contrast stretch included (its averaged black and white points would drift for 50 frames)
            self._contrast_n = 0
            self._avg = self._prepare(small).astype(np.float32)
            self._motion_frames = 0
            return MotionResult(False, share, (), reset=True)
        if boxes:
            self._motion_frames += 1
            # a change that stays (a car that parked) joins the background slowly; a passer-by does not
            if self._motion_frames >= PERSIST_FRAMES:
                cv2.accumulateWeighted(frame, self._avg, FRAME_ALPHA)
        else:
            self._motion_frames = 0
            cv2.accumulateWeighted(frame, self._avg, FRAME_ALPHA)
        return MotionResult(bool(boxes), share, tuple(boxes))

    def _prepare(self, small: np.ndarray) -> np.ndarray:
        """Contrast-stretched, masked and blurred copy of a working-size frame."""
        out = self._stretch(small) if self.config.improve_contrast else small.copy()
        if self._mask is not None:
            out[self._mask] = 0  # as in the background: masked pixels never differ
        return cv2.GaussianBlur(out, (3, 3), 1.0)

    def _resize_state(self, shape: tuple[int, int]) -> None:
        """A new frame size: pick the JPEG reduction, rasterise the masks, forget the background."""
        fw, fh = shape
        scale, self._decode_flag = reduced_decode_flag(fw, fh)
        h = min(FRAME_HEIGHT, max(1, fh // scale))
        w = max(1, round(fw * h / fh))
        self._shape, self._size = shape, (w, h)
        mask = mask_image(self.masks, (w, h))
        self._mask = None if mask is None else mask == 0
        self._keep = mask  # 255 where pixels count (cv2's mask convention), None for all
        self._unmasked = max(1, w * h - (0 if self._mask is None else int(self._mask.sum())))
        self._avg = None
        self._motion_frames = 0
        self._contrast_n = 0

    def _stretch(self, small: np.ndarray) -> np.ndarray:
        """Stretch the 4th..96th percentile to 0..255, with black and white points averaged over recent frames.

        Averaging keeps one bright frame from changing every pixel at once; a histogram and a lookup
        table make it cheap (np.percentile sorts the frame).
        """
        # masked pixels do not count: a busy road under a mask must not move the black and white points
        hist = cv2.calcHist([small], [0], self._keep, [256], (0, 256)).ravel().cumsum()
        n = hist[-1]
        if n == 0:
            return small.copy()  # all masked
        lo = int(np.searchsorted(hist, n * CONTRAST_LOW))
        hi = int(np.searchsorted(hist, n * CONTRAST_HIGH))
        if lo >= hi:
            return small.copy()  # a flat picture: nothing to stretch
        if self._contrast_n == 0:
            self._contrast[:] = (lo, hi)  # start from the first frame, not from 0..255
        self._contrast[self._contrast_n % CONTRAST_HISTORY] = (lo, hi)
        self._contrast_n += 1
        avg_lo, avg_hi = self._contrast.mean(axis=0)
        if avg_hi - avg_lo < 1:
            return small.copy()
        lut = np.clip((np.arange(256, dtype=np.float32) - avg_lo) * (255.0 / (avg_hi - avg_lo)), 0, 255)
        return cv2.LUT(small, lut.astype(np.uint8))

    def state(self) -> dict[str, Any]:
        """Working size and decode scale (for the API and the benchmark)."""
        scale = next((s for s, f in _REDUCED if f == self._decode_flag), 1)
        return {"frame": self._shape, "motion_size": self._size, "decode_scale": scale}
