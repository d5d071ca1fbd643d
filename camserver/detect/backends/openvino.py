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

import numpy as np

from ..base import BackendInfo
from .ultralytics import UltralyticsDetector

log = logging.getLogger(__name__)

FORMAT = "openvino"
PRECISIONS = ("f32", "bf16", "fp16", "int8")  # what detect.precision may name besides auto
HINTS = {"f32": "f32", "bf16": "bf16", "fp16": "f16"}  # INFERENCE_PRECISION_HINT of each; int8 is a quantized IR
CAPABILITY = {"f32": "FP32", "bf16": "BF16", "fp16": "FP16", "int8": "INT8"}  # in the CPU's OPTIMIZATION_CAPABILITIES
SHOWN = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}  # the executed precision as /healthz names it
QUANTIZED = {"u8", "i8"}  # runtime precisions of layers that run in INT8
# execution modes: one stream (sync, ultralytics' LATENCY); 2 streams (THROUGHPUT, the scheduler's pair of frames
# as two requests in flight); the IR reshaped to batch 2 (one request for the pair)
MODES = ("latency", "streams", "batch2")


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


def compile_config(precision: str, threads: int = 0, mode: str = "latency") -> dict[str, Any]:
    """The compile properties of one precision and mode: the hint (LATENCY, or THROUGHPUT with 2 streams),
    the precision hint, threads (0: runtime's)."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if mode == "streams":
        config = {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": 2}
    if precision in HINTS:
        config["INFERENCE_PRECISION_HINT"] = HINTS[precision]
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


def compile_ir(folder: Path, precision: str, threads: int = 0, mode: str = "latency") -> Any:
    """The IR in `folder` compiled for the CPU at `precision` (the int8 folder for int8) in `mode`: a CompiledModel."""
    import openvino

    core = openvino.Core()
    model = core.read_model(str(model_xml(folder)))
    if mode == "batch2":
        model.reshape([2, *list(model.input(0).get_shape())[1:]])
    return core.compile_model(model, "CPU", compile_config(precision, threads, mode))


class Runner:
    """What ultralytics' OpenVINO backend calls with a (n, 3, h, w) batch: the compiled model in its mode.

    In `streams` mode the frames go as n requests in flight at once (one per stream); a frame of zeros is
    ultralytics' padding of a short batch and is not inferred. Otherwise the compiled model runs the batch.
    """

    def __init__(self, compiled: Any, mode: str) -> None:
        self.compiled, self.mode = compiled, mode
        self.requests = [compiled.create_infer_request() for _ in range(2)] if mode == "streams" else []

    @property
    def batch(self) -> int:
        """Frames per call ultralytics should hand over: 2 where two go at once."""
        return 1 if self.mode == "latency" else 2

    def __call__(self, im: np.ndarray) -> dict[Any, np.ndarray]:
        if self.mode != "streams":
            return dict(self.compiled(im))
        real = [i for i in range(len(im)) if im[i].any()] or [0]
        for i, request in zip(real[1:], self.requests[1:], strict=False):
            request.start_async({0: im[i:i + 1]})
        first = self.requests[0].infer({0: im[real[0]:real[0] + 1]})
        outs = [dict(first)] + [(r.wait(), dict(r.results))[1] for r in self.requests[1:len(real)]]
        keys = list(outs[0])
        rows = {k: np.zeros((len(im), *outs[0][k].shape[1:]), outs[0][k].dtype) for k in keys}
        for i, out in zip(real, outs, strict=True):
            for k in keys:
                rows[k][i] = out[k][0]
        return rows


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
        "batch": int(compiled.input(0).get_shape()[0]),
    }


class OpenVINODetector(UltralyticsDetector):
    """An OpenVINO IR through ultralytics' pre- and post-processing, compiled here at the asked precision.

    `install()` swaps the compiled model; it runs on the worker's own thread (queued like a batch), so a
    swap falls between two inferences and no frame is dropped.
    """

    def __init__(self, folder: str, conf: float, iou: float, shape: tuple[int, int], max_batch: int,
                 precision: str = "f32", threads: int = 0, mode: str = "latency") -> None:
        super().__init__(folder, "cpu", conf, iou, shape, max_batch, backend="openvino")  # loads and runs once
        self.folder = Path(folder)
        self.threads = threads
        self.executed: dict[str, Any] = {}
        self.compiled: Any = None
        self.install(compile_ir(self.folder, precision, threads, mode), precision, mode)

    def install(self, compiled: Any, requested: str, mode: str = "latency") -> BackendInfo:
        """Run `compiled` in `mode` from the next inference on (call on this detector's worker thread); the new info."""
        predictor: Any = self.model.predictor  # set up by the first predict(), in __init__
        backend = predictor.model.backend  # ultralytics' OpenVINOBackend: forward() calls this model
        runner = Runner(compiled, mode)
        backend.ov_compiled_model, backend.batch = runner, runner.batch  # ultralytics pads or splits to .batch
        self.compiled = compiled
        self.executed = {**executed(compiled), "mode": mode, "requested": requested}
        self.info = BackendInfo("openvino", "cpu", self.executed["precision"], self.info.max_batch)
        return self.info
