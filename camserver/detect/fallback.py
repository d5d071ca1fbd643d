"""The first run without internet: the default model cannot download, so the real network runs with random weights.

The default `detect.model`, yolo11n.pt, is not shipped: ultralytics downloads it on first use. On a
machine without internet that fails, and a new user would get no server at all. So when the model
is that default (from the defaults or config.toml, not named with --model) and it is not a local
file, camserver starts with yolo11n.yaml instead: the same network built from its architecture,
with random weights. It streams, and says loudly that its boxes mean nothing (the log, the page's
banner through /healthz `model_random_weights`). A model the user named on the command line,
yolo11n.pt included, is what they asked for: it fails with one line and exit 3, as any other.
"""

from __future__ import annotations

from pathlib import Path

from ..config import DetectConfig

DEFAULT_MODEL = "yolo11n.pt"
FALLBACK_MODEL = "yolo11n.yaml"


def offline_fallback(d: DetectConfig) -> DetectConfig | None:
    """`d` with yolo11n.yaml when its model is the default yolo11n.pt and must be downloaded; else None.

    Call it only after loading `d.model` failed, and only when the user did not name the model.
    """
    if d.model != DEFAULT_MODEL or Path(d.model).exists():
        return None  # another model, or a local yolo11n.pt that is broken: that error is the user's to see
    return d.model_copy(update={"model": FALLBACK_MODEL})


def fallback_warning(reason: str) -> str:
    """The log line that says the boxes of the fallback model are meaningless, and how to get real ones."""
    return (f"{reason}. RUNNING {FALLBACK_MODEL} INSTEAD: the YOLO11n network with random weights, so its boxes "
            "and events are meaningless. For real detection give a model file (--model PATH, or make run "
            f"MODEL=PATH), or start once with internet so that {DEFAULT_MODEL} downloads")
