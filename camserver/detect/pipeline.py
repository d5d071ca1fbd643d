"""One camera's way through detection: its own state in the scheduler, and the per-frame preparation.

Every frame a camera sends is prepared on its own, in the frame pool, one frame per camera at a
time: motion is checked on a reduced grayscale decode, the gate decides whether the frame goes to
the detector, and the frame is decoded in full only when something needs the picture (a local
model, or boxes to draw for a viewer). A camera whose frames are slow to prepare (a hostile or
huge JPEG) holds at most one pool thread, and is throttled so that it cannot take the pool from
the others.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..config import MotionConfig, Points
from ..hub import Camera, Frame
from ..ingest.jpeg import BadFrame
from ..motion import MotionDetector, MotionGate, MotionResult, MotionSwitch
from .base import Detection
from .frames import decode_frame

# A camera whose frames take longer than this to prepare is throttled: its next frame starts
# only after THROTTLE_FACTOR times that cost, so it uses at most a quarter of one thread.
COSTLY_S = 0.1
THROTTLE_FACTOR = 3.0
LAG_S = 5.0  # a camera whose frames arrive and are not published, or not detected, this long is lagging


@dataclass(slots=True)
class Prepared:
    """A frame ready for the next step: published, or detected first."""

    frame: Frame
    image: np.ndarray | None  # the decoded frame, when something needs the picture
    motion: MotionResult | None  # None with motion off or no model
    detect: str | None  # why it goes to the detector (the gate's reason), None: it does not
    error: str | None = None  # the frame is unusable (it does not decode): rejected
    cost_s: float = 0.0  # CPU time of the preparation
    published: bool = False  # already on the annotated stream (it waited for the detector)


class CameraPipeline:
    """The scheduler's state of one camera: its frame in preparation, its detection, its latest boxes, motion."""

    def __init__(self, motion: MotionConfig | None, masks: list[Points]) -> None:
        self.preparing = False  # a frame of this camera is being prepared in the pool
        self.not_before = 0.0  # monotonic: a throttled camera's next preparation waits until then
        self.cost_s = 0.0  # the last preparation's CPU time
        self.throttled = 0  # frames held back in the slot (taken later, or replaced) because the camera was throttled
        self.throttled_seq = -1  # the last frame counted in throttled
        self.pending: Prepared | None = None  # wants the detector and waits for it (newest wins)
        self.wanting_since: float | None = None  # monotonic: since when a frame waits for detection
        self.detecting = False  # a frame of this camera is in a batch
        self.last_dispatch = 0  # scheduler tick of the last frame sent to the detector
        self.inference_ms: deque[float] = deque(maxlen=30)
        self.detections: list[Detection] = []  # of the latest detected frame
        self.detections_frame: Frame | None = None  # that frame, as the camera sent it
        self.detections_at: float | None = None  # monotonic time the boxes came
        self.drawn_seq = 0  # the annotated frame of this seq has the boxes drawn on it
        self.frames_detected = 0
        self.detect_errors = 0  # frames published unannotated because the detector failed or stalled
        self.motion = MotionDetector(motion, masks) if motion is not None and motion.enabled else None
        self.gate = MotionGate(motion) if motion is not None else None
        self.switch = MotionSwitch(motion.mqtt_off_delay_s) if motion is not None and motion.enabled else None
        self.last_motion: MotionResult | None = None
        self.held_at = 0.0  # steady time the events stage last heard that a held frame still shows the scene

    @property
    def busy(self) -> bool:
        """Whether a frame of this camera is being prepared, waits for the detector or is detected."""
        return self.preparing or self.pending is not None or self.detecting

    def finished(self, cost_s: float, now: float) -> bool:
        """A preparation ended; True when the camera is now throttled."""
        self.preparing = False
        self.cost_s = cost_s
        if cost_s > COSTLY_S:
            self.not_before = now + THROTTLE_FACTOR * cost_s
            return True
        return False

    def figures(self, now: float) -> dict[str, object]:
        """What /api/cameras shows of the camera's detection and motion."""
        ms = self.inference_ms
        motion = self.last_motion
        return {
            "frames_detected": self.frames_detected,
            "detect_errors": self.detect_errors,
            "frames_throttled": self.throttled,
            "inference_ms": round(sum(ms) / len(ms), 1) if ms else None,
            "boxes_age_s": None if self.detections_at is None else round(now - self.detections_at, 2),
            "motion": None if self.motion is None else {
                "active": bool(self.switch and self.switch.on), "share": round(motion.share, 4) if motion else 0.0,
            },
            "gate": self.gate.figures() if self.gate is not None else None,
        }


def prepare(pipeline: CameraPipeline, frame: Frame, size: tuple[int, int] | None, objects_moving: bool,
            decode: bool, detect_decode: bool) -> Prepared:
    """Prepare one frame (in the frame pool; one frame per camera at a time).

    Args:
        pipeline: the camera's state (its motion detector and gate are touched here only).
        size: the frame's (w, h) from its headers.
        objects_moving: whether a tracked object of the camera still moves (the events stage's view).
        decode: decode in full whatever the gate says (boxes to draw for a viewer, or no model at all:
            a frame that does not decode must never reach a viewer).
        detect_decode: decode in full when the frame goes to the detector (a local model).
    """
    started = time.thread_time()
    motion = None
    if pipeline.motion is not None:
        try:
            motion = pipeline.motion.detect(frame.jpeg, size)
        except BadFrame as exc:
            return Prepared(frame, None, None, None, str(exc), time.thread_time() - started)
        pipeline.last_motion = motion
    reason = pipeline.gate.decide(frame.steady, motion.motion if motion else False, objects_moving) \
        if pipeline.gate is not None else None
    image = None
    if decode or (reason is not None and detect_decode):
        image = decode_frame(frame.jpeg)
        if image is None:
            return Prepared(frame, None, motion, None, "JPEG did not decode", time.thread_time() - started)
    return Prepared(frame, image, motion, reason, None, time.thread_time() - started)


def lag(cam: Camera, state: CameraPipeline | None, stalled: bool, now: float) -> str | None:
    """Why a camera lags: its frames arrive and none was published, or none detected, for LAG_S; None when not."""
    if cam.waiting_since is not None and now - cam.waiting_since >= LAG_S:
        if state is not None and state.preparing:
            cause = "its frame is still in decode"
        elif stalled:
            cause = "the detector is stalled"
        else:
            cause = "its frames are not taken (throttled: they cost too much to decode)"
        return f"no frame published for {now - cam.waiting_since:.0f} s: {cause}"
    if state is not None and state.wanting_since is not None and now - state.wanting_since >= LAG_S:
        cause = "still in inference" if state.detecting else "the detector is saturated"
        return f"no frame detected for {now - state.wanting_since:.0f} s: {cause}"
    return None
