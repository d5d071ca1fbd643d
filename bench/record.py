"""Recording benchmark: CPU per recorded frame (JPEG in, H.264 MP4 out), the share of JPEG decode,
clip size against the JPEG bytes, and N cameras recording continuously, in cores.

Everything is CPU time of this process (time.process_time / getrusage: the machine is shared,
wall times are noise). Per-frame figures are the best of --repeats runs, single-threaded, as the
recorder runs them (one camera per worker thread, x264 with one thread).

    python -m bench.record                        # VGA, 10 fps, both scenes, veryfast and ultrafast
    python -m bench.record --cameras 8 --seconds 20

Scenes: "sim" is the simulator's moving scene (camserver.sim.simcam.make_scene, JPEG 4:2:0 at the
simulator's quality); "real" looks like a fixed camera: a static textured background, sensor noise
in every frame, one moving figure, JPEG 4:2:2 as the ESP32 sends it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sqlite3
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import cv2
import numpy as np

from camserver.config import from_mapping
from camserver.config.tables import DEFAULT_X264_PARAMS
from camserver.record import ClipWriter, EncodeSettings, JpegDecoder, RecordingIndex, remux
from camserver.record.recorder import Recorder
from camserver.sim.simcam import cv_quality, make_scene

QUALITY = cv_quality(12)  # the simulator's default (ESP32 quality 12)


def real_scene(i: int, width: int, height: int, background: np.ndarray) -> np.ndarray:
    """A fixed camera: textured background, sensor noise (sigma 3), a figure walking across."""
    rng = np.random.default_rng(i)
    img = background.astype(np.int16) + rng.normal(0, 3, background.shape).astype(np.int16)
    x = int((i * 9) % (width + 80)) - 40
    cv2.rectangle(img, (x, height // 3), (x + 40, height * 5 // 6), (60, 70, 90), -1)
    cv2.circle(img, (x + 20, height // 3 - 15), 15, (120, 140, 170), -1)
    return img.clip(0, 255).astype(np.uint8)


def make_background(width: int, height: int) -> np.ndarray:
    """Texture at several scales (foliage, a wall) under a lighting gradient."""
    rng = np.random.default_rng(7)
    tex = np.zeros((height, width), np.float32)
    for scale, weight in ((4, 40), (16, 50), (64, 60)):
        small = rng.random((height // scale + 1, width // scale + 1), np.float32)
        tex += cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)[:height, :width] * weight
    light = np.linspace(0.6, 1.1, width, dtype=np.float32)[None, :]
    base = (tex * light + 40).clip(0, 255)
    return np.dstack([base * 0.9, base, base * 0.8]).astype(np.uint8)


def jpegs_for(scene: str, n: int, width: int, height: int) -> list[bytes]:
    """n JPEG frames of a scene."""
    if scene == "sim":
        return [cv2.imencode(".jpg", make_scene(i, width, height), [cv2.IMWRITE_JPEG_QUALITY, QUALITY])[1].tobytes()
                for i in range(n)]
    background = make_background(width, height)
    params = [cv2.IMWRITE_JPEG_QUALITY, QUALITY, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422]
    return [cv2.imencode(".jpg", real_scene(i, width, height, background), params)[1].tobytes() for i in range(n)]


def per_frame(jpegs: list[bytes], settings: EncodeSettings, fps: float, folder: Path, repeats: int) -> dict:
    """CPU ms per frame, JPEG in to a finished MP4 out (remux included), best of `repeats`; and the size ratio."""
    best = float("inf")
    size = 0
    for r in range(repeats):
        path = folder / f"clip-{r}.mp4"
        t0 = time.process_time()
        writer = ClipWriter(path, settings)
        for k, jpeg in enumerate(jpegs):
            writer.write(jpeg, 1000.0 + k / fps)
        writer.close()
        remux(path, path)
        best = min(best, (time.process_time() - t0) / len(jpegs) * 1000)
        size = path.stat().st_size
        path.unlink()
    return {"ms_per_frame": round(best, 2), "mp4_bytes": size, "ratio": round(sum(map(len, jpegs)) / size, 1)}


def decode_costs(jpegs: list[bytes], repeats: int) -> dict:
    """CPU ms per frame of the two ways to get a yuv420p frame from a JPEG."""
    decoder = JpegDecoder()

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.process_time()
            for jpeg in jpegs:
                fn(jpeg)
            times.append((time.process_time() - t0) / len(jpegs) * 1000)
        return round(min(times), 3)

    def opencv(jpeg: bytes) -> av.VideoFrame:
        bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        return av.VideoFrame.from_ndarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420), format="yuv420p")

    return {"pyav_mjpeg_ms": best(decoder.decode), "opencv_imdecode_ms": best(opencv),
            "pyav_mjpeg_no_convert_ms": best(lambda j: decoder.codec.decode(av.Packet(j)))}


async def cameras_continuous(n: int, jpegs: list[bytes], fps: float, seconds: float, folder: Path, preset: str) -> dict:
    """n cameras recording continuously in real time: CPU of this whole process (all threads) per wall second."""
    db = sqlite3.connect(folder / "events.db", check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    index_thread = ThreadPoolExecutor(1)
    config = from_mapping({"record": {"mode": "continuous", "segment_s": 10, "preset": preset}}).record
    recorder = Recorder(config, folder, RecordingIndex(db, folder), index_thread)
    await recorder.start()
    loop_cpu = 0.0
    calls = 0
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.monotonic()
    k = 0
    while time.monotonic() - wall0 < seconds:
        now = time.time()
        t0 = time.thread_time()
        for cam in range(n):
            recorder.on_frame(f"cam{cam}", jpegs[(k + cam * 7) % len(jpegs)], now)
        loop_cpu += time.thread_time() - t0
        calls += n
        k += 1
        await asyncio.sleep(max(0.0, wall0 + k / fps - time.monotonic()))
    await recorder.stop()
    wall = time.monotonic() - wall0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    index_thread.shutdown()
    db.close()
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    recorded = sum(c.frames_recorded for c in recorder.cameras.values())
    dropped = sum(c.frames_dropped for c in recorder.cameras.values())
    return {"cameras": n, "cores": round(cpu / wall, 3), "cpu_ms_per_frame": round(cpu / max(recorded, 1) * 1000, 2),
            "frames_recorded": recorded, "frames_dropped": dropped,
            "on_frame_us": round(loop_cpu / max(calls, 1) * 1e6, 1)}


def main() -> None:
    """Run the benchmark and print the figures (JSON with --json)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--frames", type=int, default=150, help="frames per per-frame run (15 s at 10 fps)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cameras", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0, help="length of the N-camera run")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    av.logging.set_level(av.logging.ERROR)  # x264's per-encoder summary lines
    results: dict = {"load_avg": os.getloadavg(), "size": f"{args.width}x{args.height}", "fps": args.fps}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for scene in ("sim", "real"):
            jpegs = jpegs_for(scene, args.frames, args.width, args.height)
            entry: dict = {"jpeg_kb": round(statistics.mean(map(len, jpegs)) / 1024, 1)}
            entry["decode"] = decode_costs(jpegs, args.repeats)
            for preset, variants in (("veryfast", ((DEFAULT_X264_PARAMS, "camserver"), ("", "plain"))),
                                     ("ultrafast", ((DEFAULT_X264_PARAMS, "camserver"),))):
                for params, label in variants:
                    res = per_frame(jpegs, EncodeSettings(preset, 28, params), args.fps, folder, args.repeats)
                    res["decode_share"] = round(entry["decode"]["pyav_mjpeg_ms"] / res["ms_per_frame"], 2)
                    entry[f"{preset}/{label}"] = res
            results[scene] = entry
            if not args.json:
                print(f"\n{scene} scene {args.width}x{args.height}, JPEG {entry['jpeg_kb']} KB/frame; decode to yuv420p:"
                      f" PyAV mjpeg {entry['decode']['pyav_mjpeg_ms']} ms (of which the decode itself"
                      f" {entry['decode']['pyav_mjpeg_no_convert_ms']} ms), OpenCV imdecode+I420"
                      f" {entry['decode']['opencv_imdecode_ms']} ms")
                for key, res in entry.items():
                    if "/" in key:
                        print(f"  {key:22s} {res['ms_per_frame']:5.2f} ms/frame CPU, decode {res['decode_share']:.0%},"
                              f" clip {res['ratio']:4.1f}x smaller than the JPEGs")
        for scene in ("sim", "real"):
            for preset in ("veryfast", "ultrafast"):
                jpegs = jpegs_for(scene, 50, args.width, args.height)
                with tempfile.TemporaryDirectory() as run_dir:
                    res = asyncio.run(cameras_continuous(args.cameras, jpegs, args.fps, args.seconds, Path(run_dir), preset))
                results[f"{args.cameras}_cameras/{scene}/{preset}"] = res
                if not args.json:
                    print(f"{args.cameras} cameras continuous, {scene} scene, {preset}: {res['cores']} cores"
                          f" ({res['cpu_ms_per_frame']} ms CPU/frame all in, {res['frames_recorded']} frames,"
                          f" {res['frames_dropped']} dropped; on_frame {res['on_frame_us']} us on the loop)")
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(f"\nload average at start {results['load_avg']}")


if __name__ == "__main__":
    main()
