"""camserver: ESP32-CAM frames in over WebSocket, YOLO detection, annotated MJPEG out."""

__version__ = "0.1.0"
