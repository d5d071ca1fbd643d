"""Start-up sweep of the recordings: what a crash or kill -9 left is repaired, indexed or removed.

After it, every listed recording is a regular MP4 that plays: a growing (fragmented) file is
remuxed up to its last complete frame, one with nothing playable is removed with its row, a row
without a file goes, a recording file without a row is repaired and indexed, and temporary files
of an interrupted remux are deleted. Runs on the index thread, before recording starts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from .encoder import Probe, is_fragmented, probe, remux
from .index import RecordingIndex, parse_recording_path, walk_files

log = logging.getLogger(__name__)


@dataclass
class RecoveryReport:
    """What the sweep did."""

    repaired: int = 0  # growing files made final (their unfinished tail is lost)
    removed: int = 0  # files with nothing playable, deleted with their rows
    adopted: int = 0  # files without a row, indexed
    rows_dropped: int = 0  # rows whose file was gone
    temp_removed: int = 0  # leftovers of an interrupted remux

    def __bool__(self) -> bool:
        return any(vars(self).values())


def _finalize(index: RecordingIndex, path: str) -> Probe | None:
    file = index.file(path)
    try:
        return remux(file, file) if is_fragmented(file) else probe(file)
    except Exception:  # a file FFmpeg cannot make sense of at all
        log.warning("recording %s cannot be read; removing it", path, exc_info=True)
        return None


def recover(index: RecordingIndex) -> RecoveryReport:
    """Repair, index or remove what a crash left under <root>/recordings; see the module docstring."""
    report = RecoveryReport()
    for rec in index.in_progress():
        path = rec["path"]
        if not index.file(path).exists():
            index.remove(path)
            report.rows_dropped += 1
            continue
        result = _finalize(index, path)
        if result is None:
            index.remove(path)
            report.removed += 1
            continue
        end = rec["start_time"] + result.duration
        index.finish(path, rec["start_time"], end, result.frames, index.file(path).stat().st_size,
                     result.width, result.height)
        report.repaired += 1
    for path in index.all_paths():
        if not index.file(path).exists():
            index.remove(path)
            report.rows_dropped += 1
    known = index.all_paths()
    # files without a row (a database lost or recreated) are adopted in the order they were written,
    # aged by it: retention then removes the oldest of them first, not the ones the walk found last
    for path in sorted((p for p in walk_files(index.root) if p not in known), key=lambda p: _mtime(index, p)):
        if path.endswith(".tmp"):
            index.file(path).unlink(missing_ok=True)
            report.temp_removed += 1
            continue
        parsed = parse_recording_path(path)
        if parsed is None:
            continue  # not ours: leave it alone
        camera, kind, start = parsed
        written = _mtime(index, path)  # before a repair rewrites it
        result = _finalize(index, path)
        if result is None:
            index.file(path).unlink(missing_ok=True)
            report.removed += 1
            continue
        index.add(path, camera, kind, start)
        index.finish(path, start, start + result.duration, result.frames, index.file(path).stat().st_size,
                     result.width, result.height)
        index.db.execute("UPDATE recordings SET kept_at = ? WHERE path = ?",
                         (index.keep_clock() - max(0.0, time.time() - written), path))
        report.adopted += 1
    _close_open_clips(index)
    return report


def _mtime(index: RecordingIndex, path: str) -> float:
    try:
        return index.file(path).stat().st_mtime
    except OSError:
        return 0.0


def _close_open_clips(index: RecordingIndex) -> None:
    """Clips of events that were open at the crash end where their recording ends."""
    db = index.db
    # labels and steady times each from their own column: a clock step between them does not mix the two
    db.execute("UPDATE event_clips SET clip_end = (SELECT end_time FROM recordings WHERE path = event_clips.recording),"
               " steady_end = (SELECT COALESCE(steady_end, end_time) FROM recordings WHERE path = event_clips.recording)"
               " WHERE clip_end IS NULL AND recording IS NOT NULL")
    newest = ("(SELECT {} FROM recordings WHERE recordings.camera = event_clips.camera AND kind = 'segment'"
              " ORDER BY COALESCE(steady_start, start_time) DESC LIMIT 1)")
    db.execute(f"UPDATE event_clips SET clip_end = COALESCE({newest.format('end_time')}, clip_start),"
               f" steady_end = COALESCE({newest.format('COALESCE(steady_end, end_time)')}, steady_start, clip_start)"
               " WHERE clip_end IS NULL AND recording IS NULL")
