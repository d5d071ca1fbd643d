"""Frame validation before any decode: markers and the SOF header."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from camserver.detect.frames import decode_frame, mark_frame, render_frame
from camserver.ingest.jpeg import BadFrame, inspect_jpeg
from conftest import FakeDetector, decode, is_green, make_jpeg


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


def test_render_frame_draws_on_a_copy_and_encodes_a_new_jpeg():
    """render_frame (what the scheduler calls for a watched camera) draws the boxes on a copy and encodes it."""
    det = FakeDetector()
    image = decode_frame(make_jpeg(1))
    (detections,) = det.detect([image])
    untouched = image.copy()
    jpeg = render_frame(det, image, detections, 80)
    assert det.draws == 1 and is_green(decode(jpeg)) and not is_green(image)
    assert np.array_equal(image, untouched), "the decoded frame is shared with the events stage: never drawn on"


def test_decode_and_mark_frame():
    """decode_frame gives the frame or None for data that does not decode; mark_frame writes a red banner."""
    assert decode_frame(make_jpeg(2, 320, 240)).shape == (240, 320, 3)
    assert decode_frame(b"\xff\xd8\xff" + b"\x00" * 50 + b"\xff\xd9") is None
    banner = decode(mark_frame(make_jpeg(2), "detector stalled"))[5, 5]
    assert banner[2] > 120 and banner[0] < 60  # BGR: red
    assert mark_frame(b"\xff\xd8\xff" + b"\x00" * 50 + b"\xff\xd9", "x") is None
