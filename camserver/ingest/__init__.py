"""Camera side: the websockets listener (listener.py), each camera's connection with its messages
numbered and its text messages paced (connection.py), keepalive pings an ESP32 can answer
(keepalive.py), structural JPEG checks (jpeg.py) and control messages to cameras (control.py)."""

from .listener import CameraIngest

__all__ = ["CameraIngest"]
