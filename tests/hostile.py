"""Hostile camera input for tests and benchmarks (bench/ imports it too)."""

from __future__ import annotations

import io

import numpy as np


def _segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, bytes) of each segment after SOI; a scan's entropy-coded data stays with its SOS."""
    i, out = 2, []
    while i < len(data):
        marker = data[i + 1]
        if marker == 0xD9:
            break
        end = i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xDA:  # the scan's data runs to the next marker that is not FF00 or a restart
            end = data.index(b"\xff", end)
            while data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                end = data.index(b"\xff", end + 2)
        out.append((marker, data[i:end]))
        i = end
    return out


def scan_bomb(width: int = 2592, height: int = 1944, scans: int = 84_000) -> bytes:
    """A valid progressive JPEG whose one tiny scan repeats `scans` times: each costs the decoder a pass.

    At 2592x1944 and 84,000 scans it is about 1 MB and takes seconds of CPU to decode.
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(buf, "JPEG", progressive=True, quality=90)
    segments = _segments(buf.getvalue())

    def ac_first(seg: bytes) -> bool:  # one component, Ss > 0, Ah = 0: all EOB runs in a flat picture
        n = seg[4]
        return n == 1 and seg[5 + 2 * n] > 0 and seg[7 + 2 * n] >> 4 == 0

    tiny = min((s for m, s in segments if m == 0xDA and ac_first(s)), key=len)
    return b"\xff\xd8" + b"".join(s for _, s in segments) + tiny * scans + b"\xff\xd9"
