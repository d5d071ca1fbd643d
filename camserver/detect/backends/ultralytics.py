"""The ultralytics backend: YOLO() on any model it accepts (.pt, .yaml, .onnx, an OpenVINO folder,
a TensorRT engine, a Triton URL), one predict() call per batch of frames."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from ..base import BackendInfo, Detection, ModelLoadError, first_line
from ..cores import usable_cores
from ..frames import draw_detections

log = logging.getLogger(__name__)

CUDA_MAX_BATCH = 32  # one forward pass for up to 32 cameras: measured on an H100 (see README)
CPU_MAX_BATCH = 2  # under load a pair halves the per-call overhead; bench/capacity.py measured 1, 2 and 4


def resolve_device(device: str) -> str:
    """auto -> cuda:0 when torch sees a GPU, else cpu; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def quiet_ultralytics() -> None:
    """Keep ultralytics' progress lines off stdout unless camserver logs at debug level.

    It prints its own INFO lines (banner, export progress, runtime set-up) to stdout on import;
    camserver logs what matters (backend, export path and time) itself.
    """
    from ultralytics.utils import LOGGER

    if not logging.getLogger("camserver").isEnabledFor(logging.DEBUG):
        LOGGER.setLevel(logging.WARNING)


def use_every_core() -> None:
    """Let torch use every core camserver may use: detection is its main work.

    ultralytics sets torch to cpu_count - 1 threads, and sets it again whenever a predictor picks
    its device, from a module global: raise that global too.
    """
    import torch
    from ultralytics.utils import torch_utils

    cores = usable_cores()
    torch_utils.NUM_THREADS = cores
    torch.set_num_threads(cores)


def fp16_args() -> dict[str, Any]:
    """predict() arguments for half precision: `quantize=16` in current ultralytics, `half` before."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return {"quantize": 16} if "quantize" in DEFAULT_CFG_DICT else {"half": True}


class UltralyticsDetector:
    """Any model ultralytics' YOLO() accepts; batched predict(), fp16 on CUDA."""

    def __init__(
        self,
        model: str,
        device: str = "auto",
        conf: float = 0.25,
        iou: float = 0.45,
        imgsz: int | tuple[int, int] = 640,
        max_batch: int = 0,
        backend: str = "torch",
    ) -> None:
        try:
            from ultralytics import YOLO

            quiet_ultralytics()
            self.model = YOLO(model, task="detect")
            device = resolve_device(device) if backend == "torch" else "cpu"
        except Exception as exc:  # ultralytics raises many kinds; all mean "cannot load"
            reason = first_line(exc)
            hint = ""
            if model.endswith(".pt") and "/" not in model:
                hint = (
                    f" ('{model}' downloads on first use and needs internet; offline, pass a local"
                    " file with --model, or --model yolo11n.yaml for random weights)"
                )
            raise ModelLoadError(f"cannot load model '{model}': {reason}{hint}") from None
        cuda = device.startswith("cuda")
        if backend == "torch" and not cuda:
            use_every_core()
        self.predict_args: dict[str, Any] = {"conf": conf, "iou": iou, "imgsz": imgsz, "verbose": False, "device": device}
        if cuda:
            self.predict_args.update(fp16_args())
        self.info = BackendInfo(
            backend=backend,
            device=device,
            precision="fp16" if cuda else "fp32",
            max_batch=max_batch or (CUDA_MAX_BATCH if cuda else CPU_MAX_BATCH),
        )
        side = imgsz if isinstance(imgsz, int) else max(imgsz)
        try:  # the first call is slow (graph set-up); pay it now, not on the first frame
            self.detect([np.zeros((side * 3 // 4, side, 3), np.uint8)])
        except Exception as exc:
            raise ModelLoadError(f"model '{model}' loaded but cannot run: {first_line(exc)}") from None

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """One predict() over the list: a single batched forward pass."""
        results: Any = self.model.predict(list(images), **self.predict_args)  # ultralytics Results
        out = []
        for result in results:
            names = result.names
            boxes = result.boxes
            detections = []
            if boxes is not None and len(boxes):
                for (x1, y1, x2, y2), cls, conf in zip(
                    boxes.xyxy.cpu().numpy().tolist(), boxes.cls.cpu().numpy().tolist(), boxes.conf.cpu().numpy().tolist()
                ):
                    detections.append(Detection(int(cls), str(names.get(int(cls), cls)), float(conf), (x1, y1, x2, y2)))
            out.append(detections)
        return out

    def draw(self, image: np.ndarray, detections: list[Detection]) -> np.ndarray:
        """Boxes and labels drawn in place."""
        return draw_detections(image, detections)
