"""INT8 for the OpenVINO backend: the model quantized with NNCF on this installation's own frames.

    python -m camserver.detect.calibrate [--config config.toml] [--frames DIR] [--count 300]

Frames come from DIR (JPEG or PNG files, spread evenly over the sorted names), else from the
installation under storage.dir: its event snapshots and frames decoded from its recordings, shared
out over the cameras and the time recorded (recorded.py; the snapshots at most half when there are
recordings), else synthetic scenes (the simulator's kind, with a figure). They are written
one by one into a temporary folder (bounded memory) and handed to ultralytics' own INT8 export,
which runs NNCF post-training quantization and keeps the detection head in higher precision. The
result is cached beside the f32 export under the same key (model hash, input shape, runtime), so
`detect.precision = "auto"` measures it next start, and "int8" runs it. Needs `pip install nncf`
(camserver[int8]); it is used at calibration time only.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import cv2

from ..config import Config, DetectConfig
from .backends import exportable, openvino
from .backends.export import default_cache_dir, export_shape
from .backends.export import int8_path
from .recorded import recorded_frames
from .tuning import synthetic_frames

log = logging.getLogger(__name__)

DEFAULT_COUNT = 300
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def spread(paths: list[Path], count: int) -> list[Path]:
    """`count` of the sorted paths, evenly spread (over cameras and times when names sort that way)."""
    paths = sorted(paths)
    if len(paths) <= count:
        return paths
    step = len(paths) / count
    return [paths[int(i * step)] for i in range(count)]


def found_frames(folder: Path, count: int) -> list[Path]:
    """Up to `count` image files under `folder`, spread over their names."""
    if not folder.is_dir():
        return []
    return spread([p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()], count)


def gathered_frames(folder: Path, count: int, scratch: Path) -> list[Path]:
    """Up to `count` frames of an installation: its event snapshots under `folder` (storage.dir; at most half of
    them when there are recordings) and frames decoded from its recordings (recorded.py), written into `scratch`."""
    snapshots = found_frames(folder, count)
    recorded = recorded_frames(folder, count - min(len(snapshots), count // 2), scratch)
    return spread(snapshots, count - len(recorded)) + recorded


def write_dataset(folder: Path, frames: list[Path], count: int, names: dict[int, str]) -> Path:
    """A YOLO dataset (images only: calibration needs no labels) of the frames; its data.yaml."""
    images = folder / "images" / "val"
    images.mkdir(parents=True)
    written = 0
    sources = (cv2.imread(str(p)) for p in frames) if frames else synthetic_frames(count)
    for image in sources:
        if image is not None:
            cv2.imwrite(str(images / f"{written:05d}.jpg"), image)
            written += 1
    if not written:
        raise ValueError("no frame could be read for calibration")
    yaml = folder / "data.yaml"
    lines = [f"path: {folder}", "train: images/val", "val: images/val", "names:"]
    lines += [f"  {k}: {v!r}" for k, v in sorted(names.items())]
    yaml.write_text("\n".join(lines) + "\n")
    return yaml


def calibrate(d: DetectConfig, frames: list[Path], count: int = DEFAULT_COUNT, cache_dir: Path | None = None) -> Path:
    """Quantize `d.model` at camserver's input shape on `frames` (synthetic scenes when empty); the INT8 model's folder."""
    if not exportable(d.model):
        raise ValueError(f"only .pt and .yaml models can be calibrated, not {d.model!r}")
    if importlib.util.find_spec("nncf") is None:
        raise RuntimeError("nncf is not installed: pip install 'camserver[int8]' (or pip install nncf)")
    cache_dir = cache_dir or (Path(d.cache_dir).expanduser() if d.cache_dir else default_cache_dir())
    shape = export_shape(d.imgsz)
    final = int8_path(d.model, shape, openvino.runtime_version(), cache_dir)
    if final.exists():
        log.info("the INT8 model is already calibrated: %s", final)
        return final
    from ultralytics import YOLO

    from .backends.ultralytics import quiet_ultralytics

    quiet_ultralytics()
    started = time.monotonic()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".calibrate-") as tmp:
        yolo = YOLO(d.model, task="detect")
        data = write_dataset(Path(tmp) / "frames", frames, count, dict(yolo.names))
        network: Any = yolo.model
        network.pt_path = str(Path(tmp) / "model.pt")  # export() writes beside the model: point it here
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            produced = Path(yolo.export(format="openvino", int8=True, data=str(data), fraction=1.0, imgsz=shape,
                                        batch=1, dynamic=False, verbose=False))
        try:
            produced.rename(final)
        except OSError:
            if not final.exists():
                raise
    log.info("calibrated %s to INT8 at %dx%d in %.1f s: %s", d.model, shape[1], shape[0], time.monotonic() - started,
             final)
    return final


def main(argv: list[str] | None = None) -> int:
    """The command line: calibrate the configured model; 0 on success, 1 with one line on failure."""
    from ..config import load

    parser = argparse.ArgumentParser(prog="python -m camserver.detect.calibrate", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="config.toml", help="config file (default: config.toml)")
    parser.add_argument("--model", help="override detect.model")
    parser.add_argument("--imgsz", type=int, help="override detect.imgsz")
    parser.add_argument("--frames", help="a folder of JPEG/PNG frames (default: the event snapshots and frames of the "
                        "recordings under storage.dir, else synthetic scenes)")
    parser.add_argument("--cache-dir", help="override detect.cache_dir")
    parser.add_argument("--nice", type=int, default=0, help="lower this process's CPU priority by N (the server's API "
                        "passes 10: its cameras come first)")
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help=f"frames to use (default {DEFAULT_COUNT})")
    args = parser.parse_args(argv)
    if args.nice > 0:
        os.nice(args.nice)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        overrides = {k: v for k, v in (("model", args.model), ("imgsz", args.imgsz),
                                                           ("cache_dir", args.cache_dir)) if v is not None}
        config: Config = load(Path(args.config) if Path(args.config).exists() else None, {"detect": overrides})
        d = config.detect
        folder = Path(args.frames) if args.frames else Path(config.storage.dir)
        with tempfile.TemporaryDirectory(prefix="camserver-calibrate-") as scratch:
            frames = found_frames(folder, args.count) if args.frames else gathered_frames(folder, args.count, Path(scratch))
            log.info("calibrating %s on %s", d.model, f"{len(frames)} frames from {folder}" if frames
                     else f"{args.count} synthetic frames")
            print(calibrate(d, frames, args.count))
    except Exception as exc:  # one line, no traceback: this is a command for people
        print(f"calibration failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
