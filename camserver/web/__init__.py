"""Viewer side: the aiohttp app (viewer.py: MJPEG, snapshots, JSON API, page), event history and
live feed (events.py), and the bounded long-lived responses they share (stream.py)."""

from .viewer import ViewerApp

__all__ = ["ViewerApp"]
