"""Choosing the fastest precision that still detects what true f32 detects: the gate, the choice, the cache.

`detect.precision = "auto"` measures every candidate (f32, bf16, fp16, int8) on this machine (tuner.py);
this module decides. A reduced precision passes the accuracy gate when, on held-out frames, its
detections match f32's (same class, IoU >= 0.5) with agreement >= 0.97 (matched boxes over all boxes
of either, 2m / (n_f32 + n_candidate)) and their scores differ by 0.05 at most on average. Each
precision is measured in each execution mode (one stream; two streams, two frames in flight; batch 2)
and every mode is gated against f32 in one stream. The fastest candidate that passes wins; f32 in one
stream itself always passes, so there is always a winner.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

MATCH_IOU = 0.5
AGREEMENT_MIN = 0.97
SCORE_DIFF_MAX = 0.05
CACHE_KEYS_KEPT = 32  # the cache file keeps the newest results only: it never grows without bound
BASELINE = "f32"


@dataclass
class Candidate:
    """One precision measured (or skipped, with why) on this machine."""

    precision: str  # what was asked: f32, bf16, fp16, int8
    executed: str | None = None  # what the compiled model runs, read back
    samples_ms: list[float] = field(default_factory=list)  # ms per frame of each timed chunk
    agreement: float | None = None
    score_diff: float | None = None
    skipped: str | None = None  # why it was not measured
    mode: str = "latency"  # execution mode: latency (1 stream), streams (2 in flight), batch2 (openvino.MODES)

    @property
    def name(self) -> str:
        """precision, or precision/mode for a mode other than latency."""
        return self.precision if self.mode == "latency" else f"{self.precision}/{self.mode}"

    @property
    def ms(self) -> float | None:
        """Median ms per frame over the timed chunks."""
        return round(statistics.median(self.samples_ms), 2) if self.samples_ms else None

    @property
    def passed(self) -> bool:
        """Whether it passed the accuracy gate against f32 (f32 itself always does)."""
        if self.skipped is not None:
            return False
        if self.precision == BASELINE and self.mode == "latency":
            return True
        return (self.agreement is not None and self.score_diff is not None
                and self.agreement >= AGREEMENT_MIN and self.score_diff <= SCORE_DIFF_MAX)

    def figures(self) -> dict[str, Any]:
        """What /healthz shows of it."""
        return {"precision": self.precision, "mode": self.mode, "executed": self.executed, "ms_per_frame": self.ms,
                "agreement": None if self.agreement is None else round(self.agreement, 4),
                "score_diff": None if self.score_diff is None else round(self.score_diff, 4),
                "passed": self.passed, "skipped": self.skipped}


# batch 2 is timed on full pairs; through camserver a frame that finds no partner is padded to one (measured
# 2026-12-07 with 4 cameras: batch 2 0.83-0.94x two streams, which timed slower alone): it must win clearly
BATCH2_MARGIN = 1.15


def choose(candidates: Sequence[Candidate]) -> tuple[Candidate | None, str]:
    """The fastest measured candidate that passed the gate, and why it won (one line)."""
    timed = [c for c in candidates if c.ms is not None]
    passing = sorted((c for c in timed if c.passed), key=lambda c: c.ms or 0.0)
    if not passing:
        return None, "no candidate was measured"
    winner = passing[0]
    unpadded = next((c for c in passing if c.mode != "batch2"), None)
    if winner.mode == "batch2" and unpadded is not None and (unpadded.ms or 0.0) < (winner.ms or 0.0) * BATCH2_MARGIN:
        winner = unpadded  # not clearly faster: through camserver a lone frame is padded to a pair
    baseline = next((c for c in timed if c.precision == BASELINE and c.mode == "latency"), None)
    failed = [f"{c.name} (agreement {c.agreement}, score diff {c.score_diff})" for c in timed
              if not c.passed and c.skipped is None]
    why = f"{winner.name} is the fastest passing candidate at {winner.ms} ms a frame"
    if baseline is not None and baseline is not winner and baseline.ms and winner.ms:
        why += f", {baseline.ms / winner.ms:.2f}x f32's {baseline.ms} ms"
    if failed:
        why += "; failed the gate: " + ", ".join(failed)
    return winner, why


def verdicts(candidates: Sequence[Candidate], winner: Candidate | None) -> list[str]:
    """One line per candidate for the System view: why the winner won, or why another did not."""
    def one(c: Candidate) -> str:
        if c.skipped is not None:
            return f"skipped: {c.skipped}"
        if c.ms is None:
            return "not measured (the pass ran out of time)"
        if not c.passed:
            return "failed the gate"
        if winner is None or winner.ms is None:
            return "passed the gate"
        if c is winner:
            faster = [o for o in candidates if o.passed and o.ms is not None and o.ms < c.ms and o.mode == "batch2"]
            return (f"winner: fastest passing the gate without batch 2 (batch2 needs {BATCH2_MARGIN}x to win)" if faster
                    else "winner: fastest passing the gate")
        if c.ms < winner.ms:
            return f"{winner.ms / c.ms:.2f}x the winner, but batch2 needs {BATCH2_MARGIN}x to win"
        return f"passed; {c.ms / winner.ms:.2f}x the winner's ms"
    return [one(c) for c in candidates]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def agreement(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> tuple[float, float]:
    """(agreement, mean score difference) of a candidate's detections against f32's over the same frames.

    Each frame's detections are rows of x1, y1, x2, y2, score, class. A candidate box matches the
    best unmatched f32 box of its class at IoU >= 0.5 (f32's boxes taken by falling score). Frames
    where neither finds anything agree; agreement is 2 * matched / (f32 boxes + candidate boxes).
    """
    matched, total, diffs = 0, 0, []
    for ref, got in zip(reference, candidate, strict=True):
        total += len(ref) + len(got)
        free = list(range(len(got)))
        for r in ref[np.argsort(-ref[:, 4])] if len(ref) else []:
            best, best_iou = None, MATCH_IOU
            for j in free:
                if got[j, 5] == r[5] and (overlap := iou(r[:4], got[j, :4])) >= best_iou:
                    best, best_iou = j, overlap
            if best is not None:
                free.remove(best)
                matched += 1
                diffs.append(abs(float(r[4]) - float(got[best, 4])))
    score_diff = float(np.mean(diffs)) if diffs else 0.0
    return (2 * matched / total if total else 1.0), score_diff


def cache_key(f32_model: str, int8_model: str | None, cpu: str, capabilities: Sequence[str], runtime: str,
              threads: int) -> str:
    """What a tuning result depends on: the models (their cache names hold the model hash and input shape),
    the CPU, the runtime's version, the threads and the gate; any change measures again."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "")  # a capped instruction set is another CPU as far as speed goes
    return "|".join([f32_model, int8_model or "no-int8", cpu, ",".join(sorted(capabilities)), runtime,
                     f"threads={threads}", f"isa={isa}", f"gate={AGREEMENT_MIN}/{SCORE_DIFF_MAX}/{MATCH_IOU}", "modes=latency,streams,batch2"])


class TuningCache:
    """Tuning results by key in one JSON file (next to the export cache), written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def load(self, key: str) -> dict[str, Any] | None:
        """The result kept for `key`, or None."""
        result = self._read().get(key)
        return result if isinstance(result, dict) and isinstance(result.get("winner"), str) else None

    def save(self, key: str, result: dict[str, Any]) -> None:
        """Keep `result` for `key` (the newest CACHE_KEYS_KEPT keys only)."""
        data = self._read()
        data.pop(key, None)
        data[key] = result
        data = dict(list(data.items())[-CACHE_KEYS_KEPT:])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False, suffix=".tmp") as fh:
                json.dump(data, fh, indent=1)
            os.replace(fh.name, self.path)
        except OSError as exc:
            log.warning("cannot keep the tuning result in %s (%s); it is measured again next start", self.path, exc)


def result_of(candidates: Sequence[Candidate], winner: Candidate, why: str, elapsed_s: float) -> dict[str, Any]:
    """The JSON-ready result that is cached and shown."""
    return {"winner": winner.precision, "mode": winner.mode, "why": why, "elapsed_s": round(elapsed_s, 1),
            "candidates": [{**asdict(c), "samples_ms": [round(s, 2) for s in c.samples_ms]} for c in candidates]}


def candidates_of(result: dict[str, Any]) -> list[Candidate]:
    """The candidates of a cached result."""
    fields = Candidate.__dataclass_fields__
    return [Candidate(**{k: v for k, v in c.items() if k in fields}) for c in result.get("candidates", [])
            if isinstance(c, dict) and isinstance(c.get("precision"), str)]


def synthetic_frames(count: int, width: int = 640, height: int = 480) -> list[np.ndarray]:
    """Frames for the gate and calibration where no camera has sent any: a smooth moving scene (as the
    simulator's), a red disc, a blue block and a green standing figure at varying places and sizes."""
    x = np.linspace(0, 1, width, dtype=np.float32)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    frames = []
    for i in range(count):
        base = (np.sin(6 * x + i * 0.7) * 60 + np.cos(4 * y + i * 0.3) * 60 + 128).clip(0, 255)
        img = np.dstack([base, base * 0.8, base * 0.6]).astype(np.uint8)
        cv2.circle(img, (60 + (i * 97) % 520, 150), 40, (30, 30, 200), -1)
        cv2.rectangle(img, (400 - (i * 53) % 300, 250), (470 - (i * 53) % 300, 380), (200, 160, 40), -1)
        h = 120 + (i * 29) % 200  # a figure: legs, torso, head, outlined
        cx, bottom = 80 + (i * 61) % 480, 300 + (i * 37) % 170
        w, top = h * 0.4, bottom - h
        for left in (cx - 0.23 * w, cx + 0.23 * w):
            cv2.line(img, (int(left), int(top + 0.6 * h)), (int(left), int(bottom - 0.08 * w)), (40, 150, 50),
                     max(2, int(0.35 * w)), cv2.LINE_AA)
        cv2.ellipse(img, (int(cx), int(top + 0.46 * h)), (int(w / 2), int(0.22 * h)), 0, 0, 360, (40, 170, 60), -1,
                    cv2.LINE_AA)
        cv2.circle(img, (int(cx), int(top + 0.11 * h)), int(min(0.11 * h, 0.32 * w)), (60, 200, 70), -1, cv2.LINE_AA)
        frames.append(img)
    return frames
