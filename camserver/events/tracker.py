"""One ultralytics BYTETracker per camera, fed with the detections of each processed frame.

model.track() keeps one tracker per model, so cameras sharing a model would mix their tracks;
camserver calls BYTETracker directly, one instance per camera. Its track ids restart whenever a
tracker is created, so the rules key objects by (camera, track id) and events get ids of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..detect.base import Detection

FRAMES_KEPT = 30  # how long BYTETracker keeps a lost track, in its frames; the rules end events by time


@dataclass(frozen=True, slots=True)
class Track:
    """A detection with the id of the object it belongs to."""

    track_id: int
    label: str
    class_id: int
    score: float
    box: tuple[float, float, float, float]  # the detection's own box, x1 y1 x2 y2 pixels


class CameraTracker:
    """BYTETracker for one camera."""

    def __init__(self, max_disappeared_s: float) -> None:
        from ultralytics.engine.results import Boxes
        from ultralytics.trackers.byte_tracker import BYTETracker
        from ultralytics.utils import IterableSimpleNamespace

        self._boxes = Boxes  # imported here, once: ultralytics loads only when events run

        # lost tracks are kept long enough for any camera up to 30 fps; the time rule is ours
        buffer = max(FRAMES_KEPT, int(max_disappeared_s * 30))
        args = IterableSimpleNamespace(tracker_type="bytetrack", track_high_thresh=0.25, track_low_thresh=0.1,
                                       new_track_thresh=0.25, track_buffer=buffer, match_thresh=0.8, fuse_score=True)
        self._tracker = BYTETracker(args)

    def update(self, detections: list[Detection], size: tuple[int, int]) -> list[Track]:
        """Tracks for this frame's detections (each detection at most once)."""
        rows = np.array([[*d.box, d.confidence, d.class_id] for d in detections], dtype=np.float32).reshape(-1, 6)
        out = self._tracker.update(self._boxes(rows, (size[1], size[0])))
        tracks = []
        for row in out:
            d = detections[int(row[7])]
            tracks.append(Track(int(row[4]), d.class_name, d.class_id, d.confidence, d.box))
        return tracks
