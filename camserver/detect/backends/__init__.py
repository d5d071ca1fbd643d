"""Detector backends: which one runs (`detect.backend`), and the factory that loads it.

auto resolves to: torch on the GPU in fp16 when CUDA is there; else OpenVINO on x86 CPUs; else
torch with as many threads as camserver may use. An already exported model (.onnx, an OpenVINO
folder, a TensorRT engine, a Triton URL) always runs as given through ultralytics.
"""

from __future__ import annotations

import logging
import platform
from pathlib import Path
from typing import Callable

from ...config import DetectConfig
from ..base import Detector, first_line
from . import onnx, openvino
from .export import default_cache_dir, export_shape, exported_model, int8_path
from .tuned import cached_choice
from .ultralytics import UltralyticsDetector, resolve_device

log = logging.getLogger(__name__)

EXPORTED = {"openvino": openvino, "onnx": onnx}
X86 = ("x86_64", "amd64", "i386", "i686")
Exporter = Callable[[str, str, tuple[int, int], str, Path], Path]


def exportable(model: str) -> bool:
    """Whether the model is a torch model camserver may export (.pt weights or a .yaml architecture)."""
    return model.endswith((".pt", ".yaml", ".yml"))


def resolve_backend(d: DetectConfig, cuda: bool | None = None, machine: str | None = None) -> str:
    """The backend `detect.backend` means on this machine (auto resolved)."""
    if d.backend != "auto":
        return d.backend
    if not exportable(d.model):
        return "torch"
    if cuda is None:
        cuda = resolve_device(d.device).startswith("cuda")
    if cuda:
        return "torch"
    machine = (machine or platform.machine()).lower()
    if machine in X86 and openvino.available():
        return "openvino"
    return "torch"


def detector_factory(d: DetectConfig, exporter: Exporter = exported_model) -> Callable[[], Detector]:
    """A function that loads the configured detector (run once per worker, in its thread).

    OpenVINO and ONNX export the model on first use (cached); if that or the runtime fails, one
    log line says why and torch runs instead: the server still starts.
    """
    backend = resolve_backend(d)
    cache_dir = Path(d.cache_dir).expanduser() if d.cache_dir else default_cache_dir()

    def load() -> Detector:
        if backend in EXPORTED:
            runtime = EXPORTED[backend]
            try:
                if not exportable(d.model):
                    raise ValueError(f"only .pt and .yaml models can be exported, not {d.model!r}")
                if not runtime.available():
                    raise RuntimeError(f"the {backend} package is not installed")
                shape = export_shape(d.imgsz)
                path = exporter(d.model, runtime.FORMAT, shape, runtime.runtime_version(), cache_dir)
                if backend == "openvino":
                    return openvino_detector(d, path, shape, cache_dir)
                return UltralyticsDetector(str(path), "cpu", d.conf, d.iou, shape, d.max_batch, backend=backend)
            except Exception as exc:
                log.warning("detect.backend %s failed (%s); falling back to torch", backend, first_line(exc))
        return UltralyticsDetector(d.model, d.device, d.conf, d.iou, d.imgsz, d.max_batch, backend="torch")

    return load


def openvino_detector(d: DetectConfig, path: Path, shape: tuple[int, int], cache_dir: Path) -> Detector:
    """The OpenVINO detector at `detect.precision` (auto: the runtime's default until tuning switches), saying
    in the log what the compiled model really runs."""
    precision: str = d.precision
    folder, mode = path, "latency"
    if precision == "auto":
        choice = cached_choice(d)
        if choice is not None:
            precision, mode, folder = choice
            log.info("detect.precision auto: %s in %s mode, as measured before on this CPU (cached)", precision, mode)
    if precision == "int8":
        folder = int8_path(d.model, shape, openvino.runtime_version(), cache_dir)
        if not folder.exists():
            log.warning("detect.precision int8: no calibrated model (%s); running f32. Make one with "
                        "python -m camserver.detect.calibrate", folder.name)
            precision, folder = "f32", path
    detector = openvino.OpenVINODetector(str(folder), d.conf, d.iou, shape, d.max_batch, precision, d.threads, mode)
    runs = detector.executed
    log.info("openvino compiled for %s: runs %s (inference precision %s, %d of %d layers int8), %s mode, "
             "%s, %d stream(s), %d thread(s), batch %d", precision, runs["precision"], runs["inference_precision"],
             runs["int8_layers"], runs["layers"], runs["execution_mode"], runs["performance_hint"], runs["num_streams"],
             runs["threads"], runs["batch"])
    wanted = {"f32": "fp32"}.get(precision, precision)
    if precision != "auto" and runs["precision"] != wanted:
        log.warning("detect.precision %s: this CPU runs %s (it lists %s)", precision, runs["precision"],
                    ", ".join(openvino.cpu_capabilities()))
    return detector
