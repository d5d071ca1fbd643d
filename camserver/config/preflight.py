"""`--check-config` beyond the values: the model file, storage.dir, and names the model does not know.

Loading validates every value on its own (checks.py, tables.py). These checks look at the machine:
whether the model file is there, whether storage.dir can be written, and, where the model's class
names can be read cheaply, whether the configured labels are among them. They never load the model or
import torch, and leave nothing behind.

Reading a model's class names cheaply:
- the official COCO models by name (`yolo11n.pt`, `yolov8s.pt`, ...): ultralytics' own coco.yaml;
- a local `.pt` (a torch zip): its pickle is read with a loader that builds no object and runs no
  code (every class is a stand-in, no tensor is loaded), and the model's `names` taken from it:
  about 15 ms for YOLO11n, where loading it with torch takes seconds;
- an OpenVINO folder: its metadata.yaml; a TensorRT `.engine` written by ultralytics: the JSON
  metadata before the engine.
Other models (.onnx, a Triton URL, a .yaml with random weights) are not read: no label warning.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from .checks import ConfigError
from .tables import Config

DOWNLOADABLE = re.compile(r"^yolo(v\d+|\d+)[nsmlx]\.pt$")  # official COCO detection weights ultralytics fetches


class _StandIn:
    """Whatever the pickle asks for: keeps its arguments and state, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _NamesUnpickler(pickle.Unpickler):
    """Reads a torch checkpoint's pickle with stand-ins for every class (no code runs, no tensor loads)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        return type(name, (_StandIn,), {})

    def persistent_load(self, pid: Any) -> None:
        return None  # a tensor's storage: not needed for the names


def _names_from_state(model: Any) -> dict[int, str] | None:
    state = getattr(model, "state", None)
    if isinstance(state, tuple):  # (dict, slots) from some pickles
        state = state[0]
    names = state.get("names") if isinstance(state, dict) else None
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items()}
    if isinstance(names, list):
        return dict(enumerate(map(str, names)))
    return None


def checkpoint_names(path: Path) -> dict[int, str] | None:
    """The class names in an ultralytics .pt checkpoint, without torch; None when it cannot tell."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            if not pickles:
                return None
            with archive.open(pickles[0]) as fh:
                checkpoint = _NamesUnpickler(fh).load()
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError):
        return None
    if not isinstance(checkpoint, dict):
        return None
    return _names_from_state(checkpoint.get("model")) or _names_from_state(checkpoint.get("ema"))


def _yaml_names(path: Path) -> dict[int, str] | None:
    import yaml  # ultralytics' dependency; only when a model needs it

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items()}
    return dict(enumerate(map(str, names))) if isinstance(names, list) else None


def _engine_names(path: Path) -> dict[int, str] | None:
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(4), "little")
            meta = json.loads(fh.read(size)) if 0 < size < 1 << 20 else None
    except (OSError, ValueError):
        return None
    names = meta.get("names") if isinstance(meta, dict) else None
    return {int(k): str(v) for k, v in names.items()} if isinstance(names, dict) else None


def model_names(model: str) -> dict[int, str] | None:
    """The model's class names where they can be read cheaply (see the module's text); else None."""
    path = Path(model).expanduser()
    if DOWNLOADABLE.match(model) and not path.exists():
        spec = importlib.util.find_spec("ultralytics")
        if spec is None or not spec.submodule_search_locations:
            return None
        return _yaml_names(Path(list(spec.submodule_search_locations)[0]) / "cfg" / "datasets" / "coco.yaml")
    if path.is_dir() and (path / "metadata.yaml").is_file():
        return _yaml_names(path / "metadata.yaml")
    if path.suffix == ".pt" and path.is_file():
        return checkpoint_names(path)
    if path.suffix == ".engine" and path.is_file():
        return _engine_names(path)
    return None


def _model_problem(model: str) -> tuple[str | None, str | None]:
    """(error, warning) about the model file."""
    if model.lower() == "none" or "://" in model:
        return None, None  # pass-through, or a Triton server: nothing on this machine to look at
    path = Path(model).expanduser()
    if path.exists():
        return None, None
    if path.name == model and DOWNLOADABLE.match(model):
        return None, (f"detect.model = {model!r} is not a local file: ultralytics downloads it on first use, "
                      "which needs internet (without it the default yolo11n.pt gives way to yolo11n.yaml, "
                      "random weights)")
    if path.name == model and path.suffix in (".yaml", ".yml"):
        return None, None  # an architecture ultralytics ships (yolo11n.yaml): built, not read
    return "no such file or folder", None


def _storage_problem(folder: str) -> str | None:
    """Why storage.dir cannot be used, tried for real (permission bits say nothing for root, or on a
    read-only or special file system): a temporary file in it, or a temporary folder where it would be
    created. Nothing is left behind."""
    path = Path(folder).expanduser()
    target = path
    while not target.exists() and target != target.parent:
        target = target.parent
    if not target.is_dir():
        return "exists but is not a folder" if target == path else f"cannot be created: {target} is not a folder"
    try:
        if target == path:
            with tempfile.TemporaryFile(dir=path):
                pass
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".camserver-check-", dir=target))
    except OSError as exc:
        what = "is not writable" if target == path else f"cannot be created in {target}"
        return f"{what} ({exc.strerror or exc})"
    return None


def _configured_labels(config: Config) -> list[tuple[str, str]]:
    """(dotted key, label) for every label the config names."""
    found = [("events.labels", label) for label in config.events.labels if label != "*"]
    for i, zone in enumerate(config.events.zones):
        found += [(f"events.zones[{i}].labels", label) for label in sorted(zone.labels)]
    for i, group in enumerate(config.notify):
        found += [(f"notify[{i}].labels", label) for label in group.labels]
    for i, hook in enumerate(config.webhooks):
        found += [(f"webhooks[{i}].labels", label) for label in hook.labels]
    return found


def preflight(config: Config) -> tuple[list[ConfigError], list[str]]:
    """The checks that look at the machine: (errors, warnings), each a line naming the key."""
    errors: list[ConfigError] = []
    warnings: list[str] = []
    model = config.detect.model
    error, warning = _model_problem(model)
    if error:
        errors.append(ConfigError("detect.model", model, error))
    if warning:
        warnings.append(warning)
    if problem := _storage_problem(config.storage.dir):
        errors.append(ConfigError("storage.dir", config.storage.dir, problem))
    read = model_names(model) if not error else None
    names = set(read.values()) if read else set()
    for key, label in _configured_labels(config) if names else ():
        if label not in names:
            known = ", ".join(sorted(names)[:12]) + (", ..." if len(names) > 12 else "")
            warnings.append(f"{key}: {label!r} is not a label of {Path(model).name} (it knows {known}): "
                            "nothing will ever match it")
    if config.cameras.ids:
        for i, zone in enumerate(config.events.zones):
            if zone.camera not in config.cameras.ids:
                warnings.append(f"events.zones[{i}].camera = {zone.camera!r} is not in cameras.ids "
                                f"({', '.join(config.cameras.ids)}): the zone applies only if that camera connects")
    return errors, warnings
