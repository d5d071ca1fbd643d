"""The real ultralytics backend, built from yolo11n.yaml (the real network, random weights, no download)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from camserver.detect import ModelLoadError, UltralyticsDetector, annotate_frame
from conftest import decode, make_jpeg


@pytest.fixture(scope="module")
def yolo():
    os.environ["YOLO_OFFLINE"] = "1"
    return UltralyticsDetector("yolo11n.yaml", device="cpu", conf=0.25, iou=0.45, imgsz=320)


def test_real_model_annotates_a_frame(yolo):
    """annotate_frame with YOLO returns a decodable JPEG of the original size and Detection objects."""
    result = annotate_frame(yolo, make_jpeg(1, 640, 480), 80)
    assert result.error is None and result.inference_ms > 0
    assert decode(result.jpeg).shape == (480, 640, 3)
    assert all(0 <= d.confidence <= 1 for d in result.detections)


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
