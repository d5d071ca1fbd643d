"""The real ultralytics backend, built from yolo11n.yaml (the real network, random weights, no download)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from camserver.detect import ModelLoadError, UltralyticsDetector
from camserver.detect.frames import decode_frame, render_frame
from conftest import decode, make_jpeg


@pytest.fixture(scope="module")
def yolo():
    os.environ["YOLO_OFFLINE"] = "1"
    return UltralyticsDetector("yolo11n.yaml", device="cpu", conf=0.25, iou=0.45, imgsz=320)


def test_real_model_annotates_a_frame(yolo):
    """The scheduler's steps with YOLO: decode, detect, render give a JPEG of the original size with the boxes drawn."""
    image = decode_frame(make_jpeg(1, 640, 480))
    yolo.predict_args["conf"] = 0.0001  # random weights: only a near-zero threshold is sure to give boxes
    try:
        (detections,) = yolo.detect([image])
    finally:
        yolo.predict_args["conf"] = 0.25
    assert detections and all(0 <= d.confidence <= 1 for d in detections)
    annotated = decode(render_frame(yolo, image, detections, 80))
    assert annotated.shape == (480, 640, 3) and not np.array_equal(annotated, decode(make_jpeg(1, 640, 480)))


def test_real_model_boxes_are_in_frame_pixels(yolo):
    """With the threshold at zero the random network reports boxes, in the original frame's pixels."""
    yolo.predict_args["conf"] = 0.0001
    try:
        (dets,) = yolo.detect([np.zeros((480, 640, 3), np.uint8)])
    finally:
        yolo.predict_args["conf"] = 0.25
    assert dets, "expected some boxes at conf 0.0001"
    plotted = yolo.draw(np.zeros((480, 640, 3), np.uint8), dets)
    assert plotted.shape == (480, 640, 3) and plotted.any()
    for d in dets:
        x1, y1, x2, y2 = d.box
        assert -1 <= x1 <= x2 <= 641 and -1 <= y1 <= y2 <= 481
        assert isinstance(d.class_name, str)


def test_missing_model_file_is_a_model_load_error(tmp_path):
    """A model path that does not exist raises ModelLoadError with the path in the message."""
    with pytest.raises(ModelLoadError, match="nothing-here.pt"):
        UltralyticsDetector(str(tmp_path / "nothing-here.pt"))


TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
needs_shapes = pytest.mark.skipif(not (TESTDATA / "shapes-yolo11n.pt").exists(), reason="../shared/testdata not beside the checkout")


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def shapes_frames():
    """A person and a car drawn on camera frames of three shapes: 4:3, 16:9 and portrait 3:4."""
    sys.path.insert(0, str(TESTDATA))
    import draw_shapes as ds

    from camserver.sim.simcam import make_scene

    frames = []
    for w, h in ((640, 480), (640, 360), (360, 480)):
        img = cv2.resize(make_scene(5), (w, h))
        person = ds.draw_person(img, ds.person_box(cx=w * 0.25, bottom=h * 0.9, height=h * 0.5))
        car = ds.draw_car(img, ds.car_box(cx=w * 0.68, bottom=h * 0.85, width=w * 0.4))
        frames.append((img, {"person": person, "car": car}))
    return frames


@needs_shapes
@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_real_detections_on_mixed_camera_shapes_in_one_batch(backend, tmp_path):
    """A trained model finds a person and a car in 4:3, 16:9 and portrait frames of one batch, torch and OpenVINO alike."""
    from camserver.config import from_mapping
    from camserver.detect.backends import detector_factory
    from camserver.detect.backends import openvino as ov

    if backend == "openvino" and not ov.available():
        pytest.skip("openvino not installed (make test installs it)")
    config = from_mapping({"detect": {"model": str(TESTDATA / "shapes-yolo11n.pt"), "backend": backend,
                                      "device": "cpu", "imgsz": 320, "cache_dir": str(tmp_path)}}).detect
    detector = detector_factory(config)()
    assert detector.info.backend == backend
    frames = shapes_frames()
    results = detector.detect([img for img, _ in frames])
    for (img, truth), detections in zip(frames, results):
        found = {d.class_name: d.box for d in detections if d.confidence >= 0.5}
        assert set(found) == {"person", "car"}, (img.shape, detections)
        for name, box in truth.items():
            assert iou(found[name], box) >= 0.5, (img.shape, name, found[name], box)
