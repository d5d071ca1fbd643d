"""Frame validation before any decode: markers and the SOF header."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from camserver.detect import annotate_frame
from camserver.ingest.jpeg import BadFrame, inspect_jpeg
from conftest import FakeDetector, make_jpeg


def test_reads_size_from_header():
    """The SOF header gives width and height without decoding."""
    info = inspect_jpeg(make_jpeg(1, 320, 240), 2592, 1944)
    assert (info.width, info.height) == (320, 240)


def _claim_size(jpeg: bytes, width: int, height: int) -> bytes:
    i = jpeg.index(b"\xff\xc0")
    return jpeg[: i + 5] + struct.pack(">HH", height, width) + jpeg[i + 9 :]


@pytest.mark.parametrize(
    "data, words",
    [
        (cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes(), "not a JPEG"),
        (cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))[1].tobytes(), "not a JPEG"),
        (b"", "not a JPEG"),
        (make_jpeg(1)[:-2], "truncated"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 10 + b"\xff\xd9", "malformed"),
        (_claim_size(make_jpeg(1), 65500, 65500), "over the 2592x1944 limit"),
        (_claim_size(make_jpeg(1), 0, 10), "empty image"),
    ],
)
def test_rejects_before_decoding(data, words):
    """Non-JPEG, truncated, malformed and oversized frames are rejected from the bytes alone."""
    with pytest.raises(BadFrame, match=words):
        inspect_jpeg(data, 2592, 1944)


def test_annotate_frame_is_a_plain_function():
    """annotate_frame decodes, runs the detector once, and returns a new JPEG."""
    det = FakeDetector()
    result = annotate_frame(det, make_jpeg(1), 80)
    assert det.calls == 1 and result.error is None and result.jpeg is not None
    assert result.jpeg != make_jpeg(1)
    assert [d.class_name for d in result.detections] == ["fake"]


def test_annotate_frame_passthrough_and_failures():
    """No detector: bytes untouched; a failing detector: frame unannotated with the reason."""
    frame = make_jpeg(2)
    assert annotate_frame(None, frame).jpeg == frame

    class Broken:
        def detect(self, images):
            raise RuntimeError("boom")

    result = annotate_frame(Broken(), frame)
    assert result.jpeg == frame and "boom" in result.error
    assert annotate_frame(None, b"\xff\xd8\xff" + b"\x00" * 50 + b"\xff\xd9").jpeg is None
