"""The installed environment is what a headless server needs."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version


def test_cv2_is_the_headless_build():
    """cv2 comes from opencv-python-headless (no GUI, no libGL): ultralytics-opencv-headless asks for that build."""
    import cv2

    assert re.search(r"GUI:\s+NONE", cv2.getBuildInformation()), "cv2 is a GUI build: it needs libGL"
    assert version("opencv-python-headless")
    try:
        version("opencv-python")
    except PackageNotFoundError:
        pass
    else:
        raise AssertionError("opencv-python is installed beside the headless build; one of them owns cv2 by chance")
