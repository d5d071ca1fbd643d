"""Exports a model once with ultralytics' own export() and keeps it in a cache folder.

The cache key is the model's content hash, the input shape, the format and the runtime's version,
so a new model file, another size or an upgraded runtime exports again, and nothing else does.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SUFFIX = {"openvino": "_openvino_model", "onnx": ".onnx"}
INT8_SUFFIX = "-int8_openvino_model"  # python -m camserver.detect.calibrate writes it beside the f32 export


def default_cache_dir() -> Path:
    """~/.cache/camserver (or $XDG_CACHE_HOME/camserver)."""
    import os

    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "camserver"


def model_hash(model: str) -> str:
    """sha256 of the model file, or of the name for a built-in architecture (yolo11n.yaml)."""
    path = Path(model)
    digest = hashlib.sha256()
    if path.is_file():
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    else:
        digest.update(model.encode())
    return digest.hexdigest()[:16]


def export_key(model: str, fmt: str, shape: tuple[int, int], runtime_version: str) -> str:
    """The cache name of an export, without its suffix."""
    return f"{Path(model).stem}-{model_hash(model)}-{shape[0]}x{shape[1]}-{fmt}-{runtime_version}"


def export_path(model: str, fmt: str, shape: tuple[int, int], runtime_version: str, cache_dir: Path) -> Path:
    """Where the export of `model` to `fmt` at `shape` is kept (whether or not it exists yet)."""
    return cache_dir / (export_key(model, fmt, shape, runtime_version) + SUFFIX[fmt])


def int8_path(model: str, shape: tuple[int, int], runtime_version: str, cache_dir: Path) -> Path:
    """Where the INT8 (NNCF-calibrated) OpenVINO model of `model` at `shape` is kept."""
    return cache_dir / (export_key(model, "openvino", shape, runtime_version) + INT8_SUFFIX)


def exported_model(model: str, fmt: str, shape: tuple[int, int], runtime_version: str, cache_dir: Path) -> Path:
    """The path of `model` exported to `fmt` at `shape` (height, width), exporting it if not cached.

    Raises whatever the export raises; the caller falls back to torch.
    """
    final = export_path(model, fmt, shape, runtime_version, cache_dir)
    if final.exists():
        log.info("using the cached %s export of %s: %s", fmt, model, final)
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    from ultralytics import YOLO

    from .ultralytics import quiet_ultralytics

    quiet_ultralytics()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".export-") as tmp:
        yolo: Any = YOLO(model, task="detect")  # its .model is typed as the path it was given
        # export() writes beside the model file (or the working directory for a .yaml): point it here
        yolo.model.pt_path = str(Path(tmp) / "model.pt")
        with warnings.catch_warnings():  # torch.jit.trace deprecation and tracer notes: not for the user
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            produced = Path(yolo.export(format=fmt, imgsz=shape, batch=1, dynamic=False, verbose=False))
        try:
            produced.rename(final)
        except OSError:
            if not final.exists():  # another worker finished the same export first: keep that one
                raise
    log.info("exported %s to %s at %dx%d in %.1f s: %s", model, fmt, shape[1], shape[0], time.monotonic() - started, final)
    return final


def export_shape(imgsz: int) -> tuple[int, int]:
    """(height, width) of a static export: 4:3 landscape at `imgsz` wide.

    Every ESP32 camera frame size is landscape (4:3, 5:4 or 16:9), and each is letterboxed into
    this shape at the same scale as into an imgsz square, so boxes come out the same in 25% less
    input than the square; a portrait camera still works, at a lower resolution.
    """
    return (imgsz * 3 // 4 // 32 * 32, imgsz)
