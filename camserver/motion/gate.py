"""Which frames the detector gets, and the debounced motion state that MQTT publishes.

Both are plain per-camera state machines driven by the frames' times: no clock, no thread, no I/O.
"""

from __future__ import annotations

from typing import Any

from ..config import MotionConfig, Points

MOTION, OBJECTS, RECHECK, ALWAYS = "motion", "objects", "recheck", "always"


def masks_for(config: MotionConfig, camera: str) -> list[Points]:
    """The [[motion.masks]] polygons of one camera."""
    return [m.points for m in config.masks if m.camera == camera]


class MotionGate:
    """Decides per frame whether a camera's frame goes to the detector.

    A frame goes when the camera has motion outside its masks, when one of its tracked objects is
    still moving, or when `recheck_s` has passed since the camera's last frame that went (so a
    stationary object is re-checked and a scene that changed too slowly for motion is caught).
    With motion off (`enabled = false`) every frame goes.
    """

    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self.last_sent: float | None = None  # time of the last frame that went to the detector
        self.sent = 0
        self.held = 0
        self.reasons: dict[str, int] = {MOTION: 0, OBJECTS: 0, RECHECK: 0, ALWAYS: 0}

    def decide(self, now: float, motion: bool, objects_moving: bool) -> str | None:
        """Why this frame goes to the detector ("motion", "objects", "recheck", "always"), or None: it does not.

        Args:
            now: the frame's time in seconds (any clock, as long as it is the same for every frame).
            motion: the frame's MotionResult.motion.
            objects_moving: whether a tracked object of the camera is still moving (CameraRules.moving).
        """
        if not self.config.enabled:
            reason: str | None = ALWAYS
        elif motion:
            reason = MOTION
        elif objects_moving:
            reason = OBJECTS
        elif self.last_sent is None or now - self.last_sent >= self.config.recheck_s:
            reason = RECHECK
        else:
            reason = None
        if reason is None:
            self.held += 1
        else:
            self.sent += 1
            self.reasons[reason] += 1
            self.last_sent = now
        return reason

    def figures(self) -> dict[str, Any]:
        """Counters for the API and metrics."""
        return {"sent": self.sent, "held": self.held, "reasons": dict(self.reasons)}


class MotionSwitch:
    """The camera's motion as an on/off state: on at the first frame with motion, off after `off_delay_s` without.

    Call update() with every frame's motion, and with motion=False from a periodic tick so that a
    camera that stops sending frames still turns off.
    """

    def __init__(self, off_delay_s: float) -> None:
        self.off_delay_s = off_delay_s
        self.on = False
        self.last_motion: float | None = None

    def update(self, now: float, motion: bool) -> bool | None:
        """The new state when it changes (True on, False off), else None."""
        if motion:
            self.last_motion = now
            if not self.on:
                self.on = True
                return True
            return None
        if self.on and self.last_motion is not None and now - self.last_motion >= self.off_delay_s:
            self.on = False
            return False
        return None

