"""camserver: ESP32-CAM frames in over WebSocket, YOLO detection, annotated MJPEG out."""

import os

# Before ultralytics is ever imported: it must never pip-install packages while the server runs.
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

__version__ = "0.1.0"
