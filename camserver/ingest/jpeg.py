"""Cheap structural checks of a camera's JPEG, run before anything decodes it."""

from __future__ import annotations

from dataclasses import dataclass

# Start-of-frame markers carry the image size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])
_SOS = 0xDA
_SOS_MARKER = b"\xff\xda"
# An ESP32 sends baseline JPEGs: one scan. Progressive encoders use up to about a dozen (libjpeg's
# standard script has 10 for colour; jpegtran/mozjpeg optimised ones 12 at most). Every scan makes
# the decoder walk every block of the frame again, so a frame of thousands of tiny scans costs
# seconds to decode (84,000 scans of a 2592x1944 frame: 16 s of CPU here). 16 leaves room for any
# real encoder and bounds the decode at 16 passes.
MAX_SCANS = 16


class BadFrame(ValueError):
    """A binary message that is not an acceptable JPEG; the text says why, `reason` names the kind.

    Reasons (counted per camera in /api/cameras `rejected`): not_jpeg, truncated, malformed,
    empty, too_large (pixels), too_many_scans.
    """

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


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
        raise BadFrame("not_jpeg", "not a JPEG (does not start with FF D8 FF)")
    if data[-2:] != b"\xff\xd9":
        raise BadFrame("truncated", "truncated JPEG (does not end with FF D9)")
    scans = data.count(_SOS_MARKER)  # entropy-coded data stuffs every FF with 00: FF DA is a real marker
    if scans > MAX_SCANS:
        raise BadFrame("too_many_scans", f"JPEG has {scans} scans, over the {MAX_SCANS} any camera or encoder uses")
    i, end = 2, len(data) - 2
    while i + 4 <= end:
        if data[i] != 0xFF:
            raise BadFrame("malformed", f"malformed JPEG (no marker at byte {i})")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if length < 2 or i + 2 + length > end:
            raise BadFrame("malformed", f"malformed JPEG (segment FF{marker:02X} overruns the data)")
        if marker in _SOF_MARKERS:
            if length < 8:
                raise BadFrame("malformed", "malformed JPEG (short frame header)")
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            if width == 0 or height == 0:
                raise BadFrame("empty", f"JPEG declares an empty image ({width}x{height})")
            if width > max_width or height > max_height:
                raise BadFrame("too_large", f"JPEG is {width}x{height}, over the {max_width}x{max_height} limit")
            return JpegInfo(width, height)
        if marker == _SOS:
            break
        i += 2 + length
    raise BadFrame("malformed", "malformed JPEG (no frame header before the image data)")
