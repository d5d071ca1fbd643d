"""Motion detector benchmark: CPU time per frame, and the reduced JPEG decode against a full decode.

Frames are camera-like JPEGs (quality 80) of the simulator's scene with sensor noise (+-3 grey
levels per pixel); "moving" frames carry a figure walking across. CPU time is process CPU time
(time.process_time), so other load on the machine does not count; wall time would. Each figure is
the median of three runs (CPU time still varies with the load of a shared machine: caches, clocks).

    python -m bench.motion                     # VGA, 300 frames per phase
    python -m bench.motion --sizes 320x240,640x480,800x600,1600x1200 --frames 500
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import cv2
import numpy as np

from camserver.config import MotionConfig
from camserver.motion import MotionDetector, reduced_decode_flag
from camserver.sim.simcam import make_scene

BUDGET_MS = 1.5  # the limit per VGA frame


def scene_frames(width: int, height: int, n: int, moving: bool, seed: int = 0) -> list[bytes]:
    """`n` JPEGs of a still scene with noise; with `moving`, a figure crosses it left to right."""
    rng = np.random.default_rng(seed)
    base = make_scene(17, width, height).astype(np.int16)
    frames = []
    for i in range(n):
        img = (base + rng.integers(-3, 4, (height, width, 1), dtype=np.int16)).clip(0, 255).astype(np.uint8)
        if moving:
            w, h = width // 7, int(height * 0.45)
            x = int(-w + (width + 2 * w) * i / n)
            y = height - h - height // 12
            cv2.rectangle(img, (x, y), (x + w, y + h), (60, 170, 40), -1)
            cv2.circle(img, (x + w // 2, y - w // 3), w // 3, (80, 200, 60), -1)
        frames.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
    return frames


def measure(width: int, height: int, n: int, rounds: int = 3) -> dict:
    """Decode variants and the detector, on still and moving frames of one size; the median of `rounds` runs."""
    still = scene_frames(width, height, n, moving=False)
    moving = scene_frames(width, height, n, moving=True, seed=1)
    runs = [measure_once(width, height, still, moving) for _ in range(rounds)]
    out = {k: statistics.median(r[k] for r in runs) if isinstance(v, float) else v for k, v in runs[0].items()}
    out["reduced_vs_color"] = round(out["decode_reduced_ms"] / out["decode_color_ms"], 2)
    out["detect_vs_color_decode"] = round(max(out["detect_still_ms"], out["detect_moving_ms"]) / out["decode_color_ms"], 2)
    return out


def measure_once(width: int, height: int, still: list[bytes], moving: list[bytes]) -> dict:
    """One run of every measurement."""
    scale, flag = reduced_decode_flag(width, height)
    buf = [np.frombuffer(f, np.uint8) for f in still]
    out: dict = {"size": f"{width}x{height}", "jpeg_kb": round(sum(map(len, still)) / len(still) / 1024, 1),
                 "decode_scale": scale}
    for name, mode in (("decode_color_ms", cv2.IMREAD_COLOR), ("decode_gray_ms", cv2.IMREAD_GRAYSCALE),
                       ("decode_reduced_ms", flag)):
        start = time.process_time()
        for b in buf:
            cv2.imdecode(b, mode)
        out[name] = round((time.process_time() - start) / len(buf) * 1000, 3)

    for label, frames in (("still", still), ("moving", moving)):
        det = MotionDetector(MotionConfig())
        size = (width, height)
        results = []
        start = time.process_time()
        for f in frames:
            results.append(det.detect(f, size))
        out[f"detect_{label}_ms"] = round((time.process_time() - start) / len(frames) * 1000, 3)
        out[f"motion_frames_{label}"] = sum(r.motion for r in results)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="640x480", help="comma-separated WxH (default 640x480)")
    p.add_argument("--frames", type=int, default=300, help="frames per phase (default 300)")
    p.add_argument("--json", action="store_true", help="print JSON only")
    args = p.parse_args()
    rows = []
    for spec in args.sizes.split(","):
        w, h = (int(v) for v in spec.lower().split("x"))
        rows.append(measure(w, h, args.frames))
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"process CPU per frame, ms (median of 3 runs of {args.frames} frames; budget {BUDGET_MS} ms per VGA frame)")
    print(f"{'size':>10} {'KB':>5} {'color':>7} {'gray':>7} {'reduced':>8} {'(1/n)':>5} {'ratio':>6}"
          f" {'still':>7} {'moving':>7} {'motion frames still/moving':>27}")
    for r in rows:
        print(f"{r['size']:>10} {r['jpeg_kb']:>5} {r['decode_color_ms']:>7.3f} {r['decode_gray_ms']:>7.3f}"
              f" {r['decode_reduced_ms']:>8.3f} {r['decode_scale']:>5} {r['reduced_vs_color']:>6.2f}"
              f" {r['detect_still_ms']:>7.3f} {r['detect_moving_ms']:>7.3f}"
              f" {r['motion_frames_still']:>13}/{r['motion_frames_moving']}")
        if r["size"] == "640x480":
            worst = max(r["detect_still_ms"], r["detect_moving_ms"])
            print(f"VGA: {worst:.3f} ms per frame, {'within' if worst <= BUDGET_MS else 'OVER'} the {BUDGET_MS} ms budget;"
                  f" the detector costs {r['detect_vs_color_decode']:.2f}x one full colour decode")


if __name__ == "__main__":
    main()
