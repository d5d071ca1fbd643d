"""Motion detector and gate on synthetic camera frames: noise and exposure drift, a person walking, masks, flashes."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from camserver.config import ConfigError, MotionConfig, from_mapping
from camserver.ingest.jpeg import BadFrame
from camserver.motion import MotionDetector, MotionGate, MotionSwitch, mask_image, masks_for, reduced_decode_flag
from camserver.sim.simcam import make_scene

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
FPS = 10
W, H = 640, 480


def draw_person(img: np.ndarray, cx: float, bottom: float = 440, height: float = 220) -> tuple[float, ...] | None:
    """The shapes model's person figure if the test data is there, else a green figure of the same size."""
    if (TESTDATA / "draw_shapes.py").exists():
        sys.path.insert(0, str(TESTDATA))
        import draw_shapes as ds

        return ds.draw_person(img, ds.person_box(cx=cx, bottom=bottom, height=height))
    w = height * 0.4
    box = (cx - w / 2, bottom - height, cx + w / 2, bottom)
    cv2.rectangle(img, (int(box[0]), int(box[1] + height * 0.22)), (int(box[2]), int(box[3])), (60, 170, 40), -1)
    cv2.circle(img, (int(cx), int(box[1] + height * 0.11)), int(height * 0.11), (70, 200, 50), -1)
    x1, x2 = max(0.0, box[0]), min(float(img.shape[1]), box[2])
    return (x1, box[1], x2, box[3]) if x2 - x1 >= 1 else None


class Camera:
    """A still scene as a camera sends it: sensor noise (+-3 grey levels per pixel per frame), a slow
    auto-exposure drift (+-1% brightness, 20 s period), JPEG quality 80."""

    PAD = 64

    def __init__(self, seed: int = 0, width: int = W, height: int = H) -> None:
        self.rng = np.random.default_rng(seed)
        self.base = make_scene(17, width, height)
        self.size = (width, height)
        # noise comes from fields a little larger than the frame, read at a random offset each frame
        # (as random as fresh noise for the detector, and a tenth of the cost)
        self.noise = [self.rng.integers(0, 4, (height + self.PAD, width + self.PAD, 3), dtype=np.uint8) for _ in range(8)]

    def _noise(self) -> np.ndarray:
        field = self.noise[int(self.rng.integers(len(self.noise)))]
        x, y = (int(v) for v in self.rng.integers(0, self.PAD, 2))
        return field[y : y + self.size[1], x : x + self.size[0]]

    def frame(self, i: int, person_cx: float | None = None, gain: float = 1.0) -> tuple[bytes, bool]:
        """Frame i (at FPS) and whether a person is visible in it."""
        drift = 1 + 0.01 * np.sin(2 * np.pi * i / (20 * FPS))
        img = cv2.convertScaleAbs(self.base, alpha=drift * gain)
        img = cv2.subtract(cv2.add(img, self._noise()), self._noise())  # -3..+3 per pixel and channel
        visible = person_cx is not None and draw_person(img, person_cx) is not None
        return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes(), visible


def test_static_scene_with_noise_and_drift_reaches_the_detector_only_for_rechecks():
    """60 s of a still scene at 10 fps with sensor noise and exposure drift: no motion; only the recheck_s re-checks pass."""
    config = MotionConfig()
    cam, det, gate = Camera(), MotionDetector(config), MotionGate(config)
    reasons = []
    for i in range(60 * FPS):
        jpeg, _ = cam.frame(i)
        result = det.detect(jpeg, (W, H))
        reasons.append(gate.decide(i / FPS, result.motion, objects_moving=False))
    beyond_rechecks = sum(r not in (None, "recheck") for r in reasons)
    assert beyond_rechecks / len(reasons) <= 0.05, beyond_rechecks
    assert beyond_rechecks == 0  # measured: not one frame
    assert reasons.count("recheck") == 12  # the first frame, then every 5 s
    assert gate.held == 600 - 12


def test_person_walking_across_passes_while_it_moves_and_from_its_first_visible_frames():
    """Still scene, then a person walks in and across at 8 px/frame: >= 90% of its frames pass, the first within 2 frames."""
    config = MotionConfig()
    cam, det, gate = Camera(seed=1), MotionDetector(config), MotionGate(config)
    for i in range(30):  # still first: background learnt, the start-up re-check spent
        gate.decide(i / FPS, det.detect(cam.frame(i)[0], (W, H)).motion, False)
    passed, visible_frames = [], []
    for k in range(100):
        i = 30 + k
        jpeg, visible = cam.frame(i, person_cx=-50 + 8 * k)
        result = det.detect(jpeg, (W, H))
        reason = gate.decide(i / FPS, result.motion, False)
        if visible:
            visible_frames.append(k)
            passed.append(reason == "motion")
    first = visible_frames[0]
    assert passed.index(True) <= 2, f"first visible frame {first}, first detected {first + passed.index(True)}"
    assert sum(passed) / len(passed) >= 0.9, f"{sum(passed)}/{len(passed)}"
    assert len(visible_frames) >= 80


def test_motion_boxes_cover_the_person_in_relative_coordinates():
    """The motion boxes are relative (0..1) and cover where the person is; the share is the moving part of the frame."""
    cam, det = Camera(seed=2), MotionDetector(MotionConfig())
    det.detect(cam.frame(0)[0], (W, H))
    jpeg, _ = cam.frame(1, person_cx=320)
    result = det.detect(jpeg, (W, H))
    assert result.motion and 0.02 < result.share < 0.2
    x1, y1, x2, y2 = max(result.boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    assert 0 <= x1 < 320 / W < x2 <= 1 and y1 < 300 / H < y2
    assert x1 > 0.35 and x2 < 0.65  # the person is 88 px wide around x = 320


def test_masked_motion_is_ignored_and_unmasked_motion_is_not():
    """A flickering patch (a tree, a clock overlay) inside a motion mask gives no motion; outside the mask it does."""
    tree = [[0.05, 0.05], [0.35, 0.05], [0.35, 0.4], [0.05, 0.4]]
    config = from_mapping({"motion": {"masks": [{"camera": "yard", "points": tree}]}}).motion
    assert [[list(p) for p in m] for m in masks_for(config, "yard")] == [tree] and masks_for(config, "door") == []
    cam = Camera(seed=3)
    masked, unmasked = MotionDetector(config, masks_for(config, "yard")), MotionDetector(config)
    hits = {"masked": 0, "unmasked": 0}
    for i in range(40):
        img = cv2.imdecode(np.frombuffer(cam.frame(i)[0], np.uint8), cv2.IMREAD_COLOR)
        img[60:160, 60:200] = 40 if i % 2 else 220  # the patch flickers dark and bright
        jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
        hits["masked"] += masked.detect(jpeg, (W, H)).motion
        hits["unmasked"] += unmasked.detect(jpeg, (W, H)).motion
    # unmasked: every dark frame differs from the background, which learnt the bright patch
    assert hits == {"masked": 0, "unmasked": 20}
    # and a person outside the mask is still seen
    jpeg, _ = cam.frame(41, person_cx=450)
    assert masked.detect(jpeg, (W, H)).motion


def test_mask_rasterised_at_the_working_size():
    """A relative polygon becomes a mask image of the size asked for: 0 inside, 255 outside."""
    img = mask_image([[[0, 0], [0.5, 0], [0.5, 1], [0, 1]]], (100, 50))
    assert img is not None and img.shape == (50, 100)
    assert img[25, 10] == 0 and img[25, 90] == 255
    assert mask_image([], (100, 50)) is None


def test_sudden_exposure_change_resets_the_background_instead_of_motion():
    """The flash LED or an auto-exposure jump changes the whole frame at once: reset, not motion, and calm after."""
    cam, det = Camera(seed=4), MotionDetector(MotionConfig())
    for i in range(20):
        assert not det.detect(cam.frame(i)[0], (W, H)).motion
    flash = det.detect(cam.frame(20, gain=1.6)[0], (W, H))
    assert flash.reset and not flash.motion and flash.share > 0.8
    after = [det.detect(cam.frame(i, gain=1.6)[0], (W, H)).motion for i in range(21, 40)]
    assert not any(after)


def test_reduced_decode_scale_follows_the_frame_size():
    """The JPEG is decoded at the largest reduction that keeps ~100 rows: 1/2 for QVGA, 1/4 for VGA, 1/8 for UXGA."""
    assert reduced_decode_flag(320, 240) == (2, cv2.IMREAD_REDUCED_GRAYSCALE_2)
    assert reduced_decode_flag(640, 480) == (4, cv2.IMREAD_REDUCED_GRAYSCALE_4)
    assert reduced_decode_flag(1600, 1200) == (8, cv2.IMREAD_REDUCED_GRAYSCALE_8)
    assert reduced_decode_flag(160, 120) == (1, cv2.IMREAD_GRAYSCALE)
    det = MotionDetector(MotionConfig())
    det.detect(Camera(width=320, height=240).frame(0)[0])  # size read from the JPEG's headers
    assert det.state() == {"frame": (320, 240), "motion_size": (133, 100), "decode_scale": 2}
    det.detect(Camera().frame(0)[0], (W, H))  # the camera switched to VGA: new size, new background
    assert det.state() == {"frame": (640, 480), "motion_size": (133, 100), "decode_scale": 4}


def test_bad_jpeg_raises_bad_frame():
    """A frame that does not decode raises BadFrame (the caller counts it), not a numpy error."""
    det = MotionDetector(MotionConfig())
    with pytest.raises(BadFrame):
        det.detect(b"not a jpeg")
    jpeg = Camera().frame(0)[0]
    with pytest.raises(BadFrame):
        det.detect(jpeg[:200] + b"\xff\xd9", (W, H))


def test_disabled_motion_sends_every_frame():
    """motion.enabled = false: the detector reports nothing and the gate passes every frame (today's behaviour)."""
    config = MotionConfig(enabled=False)
    det, gate = MotionDetector(config), MotionGate(config)
    cam = Camera()
    assert not det.detect(cam.frame(0, person_cx=300)[0], (W, H)).motion
    assert [gate.decide(i / FPS, False, False) for i in range(5)] == ["always"] * 5


def test_gate_reasons_and_recheck_timing():
    """The gate: motion first, then a moving tracked object, then a re-check recheck_s after the last frame sent."""
    gate = MotionGate(MotionConfig(recheck_s=2.0))
    assert gate.decide(0.0, False, False) == "recheck"  # nothing sent yet: look once
    assert gate.decide(0.5, False, False) is None
    assert gate.decide(1.0, False, True) == "objects"
    assert gate.decide(2.9, False, False) is None  # 1.9 s since the last frame sent
    assert gate.decide(3.0, False, False) == "recheck"
    assert gate.decide(3.1, True, True) == "motion"
    assert gate.decide(5.0, False, False) is None
    assert gate.figures() == {"sent": 4, "held": 3, "reasons": {"motion": 1, "objects": 1, "recheck": 2, "always": 0}}


def test_motion_switch_turns_off_after_the_delay():
    """The MQTT motion state: on at the first motion, off only after mqtt_off_delay_s without motion."""
    switch = MotionSwitch(off_delay_s=30.0)
    assert switch.update(0.0, False) is None
    assert switch.update(1.0, True) is True
    assert switch.update(1.1, True) is None
    assert switch.update(30.0, False) is None
    assert switch.update(31.1, False) is False
    assert switch.update(40.0, False) is None and not switch.on


def test_motion_config_defaults_and_validation():
    """[motion] has Frigate's defaults; a bad value or a bad mask polygon is one clear ConfigError."""
    c = from_mapping({}).motion
    assert (c.enabled, c.threshold, c.contour_area, c.improve_contrast, c.lightning_threshold, c.recheck_s,
            c.mqtt_off_delay_s, c.masks) == (True, 30, 10, True, 0.8, 5.0, 30.0, ())
    with pytest.raises(ConfigError, match="motion.threshold"):
        from_mapping({"motion": {"threshold": 0}})
    with pytest.raises(ConfigError, match=r"motion.masks\[0\].points = .*: must be 3 or more"):
        from_mapping({"motion": {"masks": [{"camera": "door", "points": [[0, 0], [1, 1]]}]}})
    with pytest.raises(ConfigError, match=r"motion.masks.*each from 0 to 1"):
        from_mapping({"motion": {"masks": [{"camera": "door", "points": [[0, 0], [1.5, 0], [1, 1]]}]}})
    with pytest.raises(ConfigError, match=r"motion.masks\[1\].labels = .*unknown key; allowed: camera, points"):
        from_mapping({"motion": {"masks": [{"camera": "door", "points": [[0, 0], [1, 0], [1, 1]]},
                                           {"camera": "door", "points": [[0, 0], [1, 0], [1, 1]], "labels": ["x"]}]}})
    with pytest.raises(ConfigError, match="motion.recheck_s"):
        from_mapping({"motion": {"recheck_s": "5"}})
