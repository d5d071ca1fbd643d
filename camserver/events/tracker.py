"""One ultralytics BYTETracker per camera, fed with the detections of each processed frame.

model.track() keeps one tracker per model, so cameras sharing a model would mix their tracks;
camserver calls BYTETracker directly, one instance per camera. Its track ids restart whenever a
tracker is created, so the rules key objects by (camera, track id) and events get ids of their own.

BYTETracker counts how long it keeps a lost track in frames (`track_buffer`, written for a 30 fps
video). A camera's frames reach it at the camera's own rate, 10 fps or 2, and with the motion gate
at an irregular one, so the buffer is set at every update to the number of frames it got in the
last max_disappeared_s: a lost track is kept max_disappeared_s at any rate, like the rules' events.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..detect.base import Detection

FRAMES_KEPT = 30  # lost-track buffer in frames until frame times are known (update without `now`)


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
        from ultralytics.trackers.basetrack import TrackState
        from ultralytics.trackers.byte_tracker import BYTETracker
        from ultralytics.utils import IterableSimpleNamespace

        self._boxes = Boxes  # imported here, once: ultralytics loads only when events run
        self._removed = TrackState.Removed

        self.max_disappeared_s = max_disappeared_s
        self._times: deque[float] = deque()  # times of the frames of the last max_disappeared_s
        args = IterableSimpleNamespace(tracker_type="bytetrack", track_high_thresh=0.25, track_low_thresh=0.1,
                                       new_track_thresh=0.25, track_buffer=FRAMES_KEPT, match_thresh=0.8,
                                       fuse_score=True)
        self._tracker = BYTETracker(args)
        # ultralytics renamed the attribute (max_time_lost before 8.4)
        self._buffer_attr = "max_frames_lost" if hasattr(self._tracker, "max_frames_lost") else "max_time_lost"

    @property
    def frames_kept(self) -> int:
        """How many frames BYTETracker keeps a lost track now."""
        return int(getattr(self._tracker, self._buffer_attr))

    def update(self, detections: list[Detection], size: tuple[int, int], now: float | None = None) -> list[Track]:
        """Tracks for this frame's detections (each detection at most once); `now` is the frame's time in seconds."""
        if now is not None:
            self._times.append(now)
            while now - self._times[0] > self.max_disappeared_s:
                self._times.popleft()
            # the frames before this one within max_disappeared_s: BYTETracker drops a track when more
            # frames than that came after its last one (at the end of the update, after matching)
            setattr(self._tracker, self._buffer_attr, len(self._times) - 1)
        rows = np.array([[*d.box, d.confidence, d.class_id] for d in detections], dtype=np.float32).reshape(-1, 6)
        out = self._tracker.update(self._boxes(rows, (size[1], size[0])))
        # a track dropped in this update stays in the lost pool until the next one's bookkeeping, so
        # the next frame could still re-find it: it goes now, when max_disappeared_s is over
        self._tracker.lost_stracks = [t for t in self._tracker.lost_stracks if t.state != self._removed]
        tracks = []
        for row in out:
            d = detections[int(row[7])]
            tracks.append(Track(int(row[4]), d.class_name, d.class_id, d.confidence, d.box))
        return tracks
