"""Camera side: the websockets listener (listener.py), keepalive pings an ESP32 can answer
(keepalive.py), structural JPEG checks (jpeg.py) and control messages to cameras (control.py)."""

from .listener import CameraIngest

__all__ = ["CameraIngest"]
