"""The precision an earlier tuning pass chose, read where a worker loads its detector (see detect/tuner.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..tuning import BASELINE, TuningCache, cache_key
from .export import default_cache_dir, export_path, export_shape, int8_path
from .openvino import cpu_capabilities, cpu_model, runtime_version


def tuning_folders(d: Any) -> tuple[dict[str, Path], Path]:
    """The IR folder of each candidate precision of `d.model` (int8 where calibrated), and the tuning cache file."""
    cache_dir = Path(d.cache_dir).expanduser() if d.cache_dir else default_cache_dir()
    shape, version = export_shape(d.imgsz), runtime_version()
    folders = {p: export_path(d.model, "openvino", shape, version, cache_dir) for p in ("f32", "bf16", "fp16")}
    int8 = int8_path(d.model, shape, version, cache_dir)
    if int8.exists():
        folders["int8"] = int8
    return folders, cache_dir / "precision-tuning.json"


def cached_choice(d: Any) -> tuple[str, str, Path] | None:
    """The precision and execution mode an earlier tuning pass chose for this model, shape, CPU and runtime, and
    the precision's folder; None if none.

    A worker loaded later (the next start, or a replacement after a stall) starts with it at once.
    """
    folders, path = tuning_folders(d)
    int8 = folders.get("int8")
    key = cache_key(folders[BASELINE].name, int8.name if int8 else None, cpu_model(), cpu_capabilities(),
                    runtime_version(), d.threads)
    result = TuningCache(path).load(key)
    if result is None or result["winner"] not in folders:
        return None
    mode = result.get("mode", "latency")
    return result["winner"], mode if isinstance(mode, str) else "latency", folders[result["winner"]]
