"""ONNX Runtime: the model exported once to ONNX, run through ultralytics.

Needs `pip install onnx onnxruntime` (not installed by default; OpenVINO is faster on x86 CPUs).
"""

from __future__ import annotations

import importlib.util

FORMAT = "onnx"


def available() -> bool:
    """Whether onnxruntime (to run) and onnx (to export) are installed."""
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def runtime_version() -> str:
    """The runtime's version: part of the export cache key."""
    import onnxruntime

    return str(onnxruntime.__version__)
