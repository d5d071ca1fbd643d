"""Cheap structural checks of a camera's JPEG, run before anything decodes it."""

from __future__ import annotations

from dataclasses import dataclass

# Start-of-frame markers carry the image size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])
_SOS = 0xDA


class BadFrame(ValueError):
    """A binary message that is not an acceptable JPEG; the text says why."""


@dataclass(frozen=True, slots=True)
class JpegInfo:
    """What the headers of a JPEG declare."""

    width: int
    height: int


def inspect_jpeg(data: bytes, max_width: int, max_height: int) -> JpegInfo:
    """Check the markers and read the frame size from the SOF header, without decoding.

    Raises:
        BadFrame: not a JPEG, truncated, malformed, or larger than the limits.
    """
    if len(data) < 4 or data[:3] != b"\xff\xd8\xff":
        raise BadFrame("not a JPEG (does not start with FF D8 FF)")
    if data[-2:] != b"\xff\xd9":
        raise BadFrame("truncated JPEG (does not end with FF D9)")
    i, end = 2, len(data) - 2
    while i + 4 <= end:
        if data[i] != 0xFF:
            raise BadFrame(f"malformed JPEG (no marker at byte {i})")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if length < 2 or i + 2 + length > end:
            raise BadFrame(f"malformed JPEG (segment FF{marker:02X} overruns the data)")
        if marker in _SOF_MARKERS:
            if length < 8:
                raise BadFrame("malformed JPEG (short frame header)")
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            if width == 0 or height == 0:
                raise BadFrame(f"JPEG declares an empty image ({width}x{height})")
            if width > max_width or height > max_height:
                raise BadFrame(f"JPEG is {width}x{height}, over the {max_width}x{max_height} limit")
            return JpegInfo(width, height)
        if marker == _SOS:
            break
        i += 2 + length
    raise BadFrame("malformed JPEG (no frame header before the image data)")
