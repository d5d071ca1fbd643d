"""Generated pictures for the simulator: the plain moving scene, and a person walking across it.

The person is the pictogram figure that the test model ../shared/testdata/shapes-yolo11n.pt was
trained to call `person` (its README and draw_shapes.py describe it): a green figure about 1 wide
to 2.5 tall, two legs, a rounded torso over them and a round head, each part filled in one green
with a dark outline (the head a little lighter). The drawing below follows those rules so that the
model recognises it; a real YOLO model trained on photos will mostly not.
"""

from __future__ import annotations

import cv2
import numpy as np

Box = tuple[float, float, float, float]
BGR = tuple[int, int, int]

PERSON_GREEN: BGR = (60, 170, 40)
PERSON_ASPECT = 0.4  # width / height
SUBPIXEL = 4  # OpenCV fixed point: coordinates in 1/16 pixel
SCENES = ("plain", "person")


def make_scene(i: int, width: int = 640, height: int = 480) -> np.ndarray:
    """A smooth moving scene with two shapes; compresses like a real camera picture."""
    x = np.linspace(0, 1, width, dtype=np.float32)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    base = (np.sin(6 * x + i * 0.2) * 60 + np.cos(4 * y + i * 0.1) * 60 + 128).clip(0, 255)
    img = np.dstack([base, base * 0.8, base * 0.6]).astype(np.uint8)
    r = max(4, height // 10)
    cx = int((i * 13) % max(1, width - 4 * r)) + 2 * r
    cv2.circle(img, (cx, height * 2 // 5), r, (30, 30, 200), -1)
    cv2.rectangle(img, (width - cx - r, height // 2), (width - cx + r, height * 4 // 5), (200, 160, 40), -1)
    return img


def person_box(cx: float, bottom: float, height: float) -> Box:
    """The box (x1, y1, x2, y2) of a person standing on `bottom`, centred on `cx`, `height` pixels tall."""
    half = height * PERSON_ASPECT / 2
    return (cx - half, bottom - height, cx + half, bottom)


def _shade(color: BGR, factor: float) -> BGR:
    return tuple(int(max(0, min(255, c * factor))) for c in color)  # type: ignore[return-value]


def _fixed(points: list[tuple[float, float]]) -> np.ndarray:
    return np.round(np.asarray(points) * (1 << SUBPIXEL)).astype(np.int32)


def _capsule(box: Box, radius: float) -> np.ndarray:
    """The outline of a rectangle whose corners are quarter circles of `radius` (clamped to fit)."""
    x1, y1, x2, y2 = box
    r = max(0.0, min(radius, (x2 - x1) / 2, (y2 - y1) / 2))
    corners = ((x2 - r, y1 + r, -90), (x2 - r, y2 - r, 0), (x1 + r, y2 - r, 90), (x1 + r, y1 + r, 180))
    points = []
    for cx, cy, start in corners:  # clockwise in image coordinates, 15 degrees a step
        for a in np.radians(np.arange(start, start + 91, 15)):
            points.append((cx + r * np.cos(a), cy + r * np.sin(a)))
    return _fixed(points)


def _filled(img: np.ndarray, outline: np.ndarray, fill: BGR, edge: BGR, thickness: int) -> None:
    cv2.fillPoly(img, [outline], fill, cv2.LINE_AA, shift=SUBPIXEL)
    cv2.polylines(img, [outline], True, edge, thickness, cv2.LINE_AA, shift=SUBPIXEL)


def draw_person(img: np.ndarray, box: Box, color: BGR = PERSON_GREEN) -> Box | None:
    """Draw the person figure filling `box` on a BGR image, in place; returns the box clipped to the image.

    The box may reach outside the image: the visible part is drawn. None when nothing is visible.
    """
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    edge = _shade(color, 0.45)
    thickness = max(1, round(h / 70))
    mid = x1 + w / 2
    leg_w, gap = 0.38 * w, 0.08 * w
    for left in (mid - gap / 2 - leg_w, mid + gap / 2):  # legs under the torso, the torso under the head
        _filled(img, _capsule((left, y1 + 0.58 * h, left + leg_w, y2), 0.45 * leg_w), color, edge, thickness)
    _filled(img, _capsule((x1, y1 + 0.25 * h, x2, y1 + 0.68 * h), 0.32 * w), color, edge, thickness)
    r = min(0.11 * h, 0.32 * w)
    centre = (round(mid * (1 << SUBPIXEL)), round((y1 + r) * (1 << SUBPIXEL)))
    radius = max(1 << SUBPIXEL, round(r * (1 << SUBPIXEL)))
    cv2.circle(img, centre, radius, _shade(color, 1.18), -1, cv2.LINE_AA, shift=SUBPIXEL)
    cv2.circle(img, centre, radius, edge, thickness, cv2.LINE_AA, shift=SUBPIXEL)
    height, width = img.shape[:2]
    clipped = (max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
    return clipped if clipped[2] - clipped[0] >= 1 and clipped[3] - clipped[1] >= 1 else None


class SceneSource:
    """Generated moving scene (the default; needs no files)."""

    def __init__(self) -> None:
        self.i = 0

    def read(self) -> np.ndarray:
        """The next picture."""
        self.i += 1
        return make_scene(self.i)


class PersonScene:
    """The moving scene with a person walking across it every so often, one way and then back.

    At 10 fps the defaults give a 15 s walk then a 10 s empty scene: a new event every 25 s (an
    event ends `events.max_disappeared_s`, 5 s, after the person leaves). The walk is slow on purpose:
    the tracker follows it from one processed frame to the next down to about 1.5 processed frames a
    second (a slow CPU), where a faster walk would leave too little overlap and give no event at all.

    Args:
        walk_frames: frames a crossing takes, from outside one edge to outside the other.
        pause_frames: frames of empty scene after each crossing.
        height_share: the person's height as a share of the picture's (the model knows 15% to 60%).
    """

    def __init__(self, walk_frames: int = 150, pause_frames: int = 100, height_share: float = 0.45,
                 width: int = 640, height: int = 480) -> None:
        self.walk_frames, self.pause_frames = walk_frames, pause_frames
        self.width, self.height = width, height
        self.person_height = height_share * height
        self.i = 0
        self.truth: Box | None = None  # where the person is in the last picture (None: not in it)

    def person_at(self, i: int) -> Box | None:
        """The person's full box in picture `i` (it may reach past the edges), or None during a pause."""
        period = self.walk_frames + self.pause_frames
        crossing, step = divmod(i, period)
        if step >= self.walk_frames:
            return None
        margin = self.person_height * PERSON_ASPECT / 2  # starts and ends just outside the picture
        share = step / max(1, self.walk_frames - 1)
        cx = -margin + share * (self.width + 2 * margin)
        if crossing % 2:
            cx = self.width - cx  # back the other way
        return person_box(cx, 0.92 * self.height, self.person_height)

    def read(self) -> np.ndarray:
        """The next picture."""
        img = make_scene(self.i + 1, self.width, self.height)
        box = self.person_at(self.i)
        self.truth = draw_person(img, box) if box is not None else None
        self.i += 1
        return img
