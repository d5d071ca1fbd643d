"""Frames for INT8 calibration (calibrate.py) decoded from the recordings under storage.dir.

The recordings are where an installation's own scenes are kept over days: every camera, day and
night. `recorded_frames` picks up to `count` of the MP4 files under <storage.dir>/recordings (the
recorder's layout, recordings/<camera>/<YYYY-MM-DD>/<file>.mp4; exports are elsewhere), shared out
over the cameras and, within a camera, evenly over its files in time order, decodes one frame from
the middle of each and writes it as a JPEG into a scratch folder, one at a time (memory stays one
frame). A file that cannot be read (one being written, a damaged one) is skipped.
"""

from __future__ import annotations

import logging
from pathlib import Path

import av
import cv2

log = logging.getLogger(__name__)


def recording_files(storage_dir: Path) -> dict[str, list[Path]]:
    """camera -> its MP4 files under <storage_dir>/recordings, in name order (the time they started)."""
    base = storage_dir / "recordings"
    cameras: dict[str, list[Path]] = {}
    if not base.is_dir():
        return cameras
    for path in base.glob("*/*/*.mp4"):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(base).parts):
            cameras.setdefault(path.relative_to(base).parts[0], []).append(path)
    return {camera: sorted(paths, key=lambda p: p.name) for camera, paths in sorted(cameras.items())}


def shares(sizes: dict[str, int], count: int) -> dict[str, int]:
    """`count` shared out over the cameras as evenly as their numbers of files allow (one camera's spare goes to the
    others)."""
    left, share = dict(sizes), {camera: 0 for camera in sizes}
    while count > 0 and any(left.values()):
        for camera in sorted(c for c, n in left.items() if n):
            if count == 0:
                break
            share[camera] += 1
            left[camera] -= 1
            count -= 1
    return share


def evenly(paths: list[Path], n: int) -> list[Path]:
    """`n` of the paths, evenly spread over them (the middle of each of n equal stretches)."""
    if n >= len(paths):
        return list(paths)
    return [paths[int((i + 0.5) * len(paths) / n)] for i in range(n)]


def middle_frame(path: Path) -> bytes | None:
    """The JPEG of the frame in the middle of an MP4 (None when it cannot be read)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if container.duration:
                container.seek(container.duration // 2)  # in AV_TIME_BASE units: the keyframe before the middle
            for frame in container.decode(stream):
                ok, jpeg = cv2.imencode(".jpg", frame.to_ndarray(format="bgr24"), [cv2.IMWRITE_JPEG_QUALITY, 90])
                return jpeg.tobytes() if ok else None
    except (av.FFmpegError, IndexError, OSError) as exc:
        log.debug("calibration: %s skipped: %s", path.name, exc)
    return None


def recorded_frames(storage_dir: Path, count: int, scratch: Path) -> list[Path]:
    """Up to `count` frames of the recordings (see the module docstring), written into `scratch`; their paths."""
    cameras = recording_files(storage_dir)
    chosen = [p for camera, n in shares({c: len(p) for c, p in cameras.items()}, count).items()
              for p in evenly(cameras[camera], n)]
    written: list[Path] = []
    for path in chosen:
        jpeg = middle_frame(path)
        if jpeg is not None:
            out = scratch / f"r{len(written):05d}-{path.parts[-3]}.jpg"
            out.write_bytes(jpeg)
            written.append(out)
    return written
