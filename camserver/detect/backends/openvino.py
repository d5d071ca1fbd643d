"""OpenVINO on the CPU: the model exported once to OpenVINO IR, run through ultralytics, compiled by camserver.

On x86 CPUs it runs YOLO11n about 4x faster than torch (bench/capacity.py measures it). camserver
compiles the IR itself with the precision and threads `detect.precision` / `detect.threads` ask for
and reads back what the compiled model executes: that, not the request, is what /healthz shows.
A CPU without the asked precision's instructions runs f32 and says so.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from ..base import BackendInfo
from .ultralytics import UltralyticsDetector

log = logging.getLogger(__name__)

FORMAT = "openvino"
PRECISIONS = ("f32", "bf16", "fp16", "int8")  # what detect.precision may name besides auto
HINTS = {"f32": "f32", "bf16": "bf16", "fp16": "f16"}  # INFERENCE_PRECISION_HINT of each; int8 is a quantized IR
CAPABILITY = {"f32": "FP32", "bf16": "BF16", "fp16": "FP16", "int8": "INT8"}  # in the CPU's OPTIMIZATION_CAPABILITIES
SHOWN = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}  # the executed precision as /healthz names it
QUANTIZED = {"u8", "i8"}  # runtime precisions of layers that run in INT8


def available() -> bool:
    """Whether the openvino package is installed."""
    return importlib.util.find_spec("openvino") is not None


def runtime_version() -> str:
    """The runtime's version: part of the export cache key."""
    import openvino

    return str(openvino.get_version().split("-")[0])


def cpu_capabilities() -> list[str]:
    """The CPU plugin's OPTIMIZATION_CAPABILITIES (FP32, INT8, BF16, FP16 ...): what this CPU runs natively."""
    import openvino

    return [str(c) for c in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def cpu_model() -> str:
    """The CPU's name as the OpenVINO plugin reads it (part of the tuning cache key)."""
    import openvino

    return str(openvino.Core().get_property("CPU", "FULL_DEVICE_NAME")).strip()


def model_xml(folder: Path) -> Path:
    """The .xml of an OpenVINO IR folder (or the file itself)."""
    return folder if folder.is_file() else next(folder.glob("*.xml"))


def compile_config(precision: str, threads: int = 0) -> dict[str, Any]:
    """The compile properties of one precision: ultralytics' sync LATENCY mode, the precision hint, threads (0: runtime's)."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if precision in HINTS:
        config["INFERENCE_PRECISION_HINT"] = HINTS[precision]
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


def compile_ir(folder: Path, precision: str, threads: int = 0) -> Any:
    """The IR in `folder` compiled for the CPU at `precision` (the int8 folder for int8): a CompiledModel."""
    import openvino

    core = openvino.Core()
    return core.compile_model(core.read_model(str(model_xml(folder))), "CPU", compile_config(precision, threads))


def executed(compiled: Any) -> dict[str, Any]:
    """What a compiled model really runs, read back from it: precision, execution mode, streams, threads, INT8 layers."""
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    name = getattr(hint, "get_type_name", lambda: str(hint))()
    runtime = compiled.get_runtime_model()
    layers = [op.get_rt_info()["runtimePrecision"].astype(str) for op in runtime.get_ops()
              if "runtimePrecision" in op.get_rt_info()]
    int8 = sum(1 for p in layers if p in QUANTIZED)
    return {
        "precision": "int8" if int8 else SHOWN.get(name, name),
        "inference_precision": name,  # INFERENCE_PRECISION_HINT as compiled: the precision of the non-INT8 layers
        "int8_layers": int8,
        "layers": len(layers),
        "execution_mode": str(compiled.get_property("EXECUTION_MODE_HINT")).rsplit(".", 1)[-1],
        "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")).rsplit(".", 1)[-1],
        "num_streams": int(str(compiled.get_property("NUM_STREAMS"))),
        "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
    }


class OpenVINODetector(UltralyticsDetector):
    """An OpenVINO IR through ultralytics' pre- and post-processing, compiled here at the asked precision.

    `install()` swaps the compiled model; it runs on the worker's own thread (queued like a batch), so a
    swap falls between two inferences and no frame is dropped.
    """

    def __init__(self, folder: str, conf: float, iou: float, shape: tuple[int, int], max_batch: int,
                 precision: str = "f32", threads: int = 0) -> None:
        super().__init__(folder, "cpu", conf, iou, shape, max_batch, backend="openvino")  # loads and runs once
        self.folder = Path(folder)
        self.threads = threads
        self.executed: dict[str, Any] = {}
        self.install(compile_ir(self.folder, precision, threads), precision)

    def install(self, compiled: Any, requested: str) -> BackendInfo:
        """Run `compiled` from the next inference on (call on this detector's worker thread); the new info."""
        predictor: Any = self.model.predictor  # set up by the first predict(), in __init__
        backend = predictor.model.backend  # ultralytics' OpenVINOBackend: forward() calls this model
        backend.ov_compiled_model = compiled
        self.executed = {**executed(compiled), "requested": requested}
        self.info = BackendInfo("openvino", "cpu", self.executed["precision"], self.info.max_batch)
        return self.info
