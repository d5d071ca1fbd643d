"""Motion: a cheap per-camera motion detector, and the gate that decides which frames the detector gets."""

from .detector import NO_MOTION, MotionDetector, MotionResult, mask_image, reduced_decode_flag
from .gate import MotionGate, MotionSwitch, masks_for

__all__ = ["NO_MOTION", "MotionDetector", "MotionGate", "MotionResult", "MotionSwitch", "mask_image",
           "masks_for", "reduced_decode_flag"]
