"""Capacity benchmark: N simulated VGA cameras at F fps, V annotated MJPEG viewers spread over them.

For each camera count it prints the fps processed per camera (min, median) and in total, the
viewers' fps (min), camera-to-viewer latency p50/p95 (frames carry a stamped sequence number, as
in bench/fanout.py), the mean batch size and inference time, and the server's CPU in cores.

In the same run it measures the server with `--model none` (the ceiling of ingest and fan-out)
and ultralytics' predict() alone on the backend in use (frames/s on lists of max_batch frames),
and gives every figure as a ratio to those limits.

    python -m bench.capacity --cameras 4,6 --fps 10 --viewers 1 --seconds 20

`--events both` runs the phases with events on and off and gives the ratio (the events stage
must cost at most 5% of the frames processed); `--scene person` walks a person (the figure
../shared/testdata/shapes-yolo11n.pt was trained on) through every frame, so that there is
something to track:

    python -m bench.capacity --model ../shared/testdata/shapes-yolo11n.pt --imgsz 320 \
        --scene person --events both --cameras 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import websockets

from bench.fanout import Viewer, pct, stamp, view
from tests.serverproc import ServerProcess
from camserver.sim.scenes import draw_person, make_scene, person_box

CYCLE = 256  # distinct stamped frames; a latency over CYCLE/fps seconds would be misread


def person_scene(i: int) -> np.ndarray:
    """A simulator scene with a person walking across it (64 frames a crossing)."""
    img = make_scene(i)
    draw_person(img, person_box(cx=80 + 8 * (i % 64), bottom=400, height=220))
    return img


def encode_cycle(quality: int = 80, scene: str = "plain") -> list[bytes]:
    """CYCLE stamped VGA JPEGs, made once so that the cameras cost the benchmark little CPU."""
    scenes = [person_scene(i) if scene == "person" else make_scene(i) for i in range(64 if scene == "person" else 30)]
    return [
        cv2.imencode(".jpg", stamp(scenes[seq % len(scenes)], seq), [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
        for seq in range(CYCLE)
    ]


async def camera(url: str, frames: list[bytes], fps: float, sent: dict[int, float], stop: asyncio.Event) -> None:
    """Send the stamped frames paced to `fps` until `stop`, noting when each sequence number went out."""
    async with websockets.connect(url, compression=None, max_size=None) as ws:
        seq, period, next_at = 0, 1.0 / fps, time.monotonic()
        while not stop.is_set():
            seq = (seq + 1) % CYCLE or 1  # 0 would read as a placeholder
            sent[seq] = time.monotonic()
            await ws.send(frames[seq])
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def cameras_json(session: aiohttp.ClientSession, base: str) -> dict[str, dict]:
    async with session.get(f"{base}/api/cameras") as resp:
        return {c["id"]: c for c in await resp.json()}


async def run_phase(server: ServerProcess, frames: list[bytes], n: int, viewers: int, args: argparse.Namespace) -> dict:
    """n cameras at args.fps, `viewers` annotated viewers on each of the first cameras, for args.seconds."""
    stop = asyncio.Event()
    ids = [f"cap{n}-{i}" for i in range(n)]
    sent = {cid: {} for cid in ids}
    watched = ids[: max(0, min(n, args.watched if args.watched is not None else n))]
    tallies = {cid: [Viewer() for _ in range(viewers)] for cid in watched}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        tasks = [asyncio.create_task(camera(server.ws(cid), frames, args.fps, sent[cid], stop)) for cid in ids]
        for cid, vs in tallies.items():
            url = f"{server.http}/cameras/{cid}/stream.mjpg"
            tasks += [asyncio.create_task(view(session, url, sent[cid], v, stop)) for v in vs]
        await asyncio.sleep(args.warmup)
        for vs in tallies.values():
            for v in vs:
                v.frames, v.latencies_ms, v.unreadable = 0, [], 0
        before = await cameras_json(session, server.http)
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        await asyncio.sleep(args.seconds)
        cpu1, t1 = server.cpu_seconds(), time.monotonic()
        after = await cameras_json(session, server.http)
        async with session.get(f"{server.http}/healthz") as resp:
            detection = (await resp.json())["detection"]
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    span = t1 - t0
    per_camera = [(after[c]["frames_processed"] - before[c]["frames_processed"]) / span for c in ids]
    viewer_fps = [v.frames / span for vs in tallies.values() for v in vs]
    latencies = [ms for vs in tallies.values() for v in vs for ms in v.latencies_ms]
    return {
        "cameras": n,
        "camera_fps": args.fps,
        "watched_cameras": len(watched),
        "viewers_per_watched_camera": viewers,
        "processed_fps_total": round(sum(per_camera), 1),
        "processed_fps_per_camera_min": round(min(per_camera), 2),
        "processed_fps_per_camera_median": round(statistics.median(per_camera), 2),
        "processed_share_of_offered": round(sum(per_camera) / (n * args.fps), 3),
        "viewer_fps_min": round(min(viewer_fps), 2) if viewer_fps else None,
        "latency_p50_ms": round(pct(latencies, 0.5), 1) if latencies else None,
        "latency_p95_ms": round(pct(latencies, 0.95), 1) if latencies else None,
        "unreadable_frames": sum(v.unreadable for vs in tallies.values() for v in vs),
        "mean_batch": detection["mean_batch"],
        "batch_inference_ms": detection["batch_ms"],
        "backend": detection["backend"],
        "device": detection["device"],
        "server_cpu_cores": round((cpu1 - cpu0) / span, 2),
    }


def predict_alone(args: argparse.Namespace, frames: list[bytes]) -> dict:
    """predict() alone on the backend the server uses: frames/s on lists of max_batch frames."""
    from camserver.config import from_mapping
    from camserver.detect.backends import detector_factory

    config = from_mapping({"detect": {"model": args.model, "imgsz": args.imgsz, "backend": args.backend,
                                      "max_batch": args.max_batch}}).detect
    detector = detector_factory(config)()
    batch = detector.info.max_batch
    images = [cv2.imdecode(np.frombuffer(frames[i % CYCLE], np.uint8), cv2.IMREAD_COLOR) for i in range(batch)]
    detector.detect(images)  # warm
    reps = 0
    started = time.perf_counter()
    while time.perf_counter() - started < args.predict_seconds:
        detector.detect(images)
        reps += 1
    elapsed = time.perf_counter() - started
    return {"backend": detector.info.backend, "device": detector.info.device, "precision": detector.info.precision,
            "batch": batch, "frames_per_s": round(reps * batch / elapsed, 1)}


async def serve_and_measure(extra: list[str], frames: list[bytes], counts: list[int], viewers: int, args) -> list[dict]:
    workdir = Path(tempfile.mkdtemp(prefix="camserver-bench-"))  # the event store goes here
    server = await ServerProcess.start(*extra, cwd=workdir)
    try:
        results = []
        for n in counts:
            result = await run_phase(server, frames, n, viewers, args)
            print(json.dumps(result), flush=True)
            results.append(result)
        return results
    finally:
        await server.stop()


def events_off_config() -> str:
    """A config file that turns the events stage off."""
    path = Path(tempfile.mkdtemp(prefix="camserver-bench-")) / "events-off.toml"
    path.write_text("[events]\nenabled = false\n")
    return str(path)


async def main_async(args: argparse.Namespace) -> dict:
    frames = encode_cycle(scene=args.scene)
    alone = predict_alone(args, frames)
    print(json.dumps({"predict_alone": alone}), flush=True)
    flags = ["--model", args.model, "--imgsz", str(args.imgsz), "--backend", args.backend,
             "--max-batch", str(args.max_batch)]
    results: dict = {"model": args.model, "imgsz": args.imgsz, "scene": args.scene, "predict_alone": alone}
    modes = ["on", "off"] if args.events == "both" else [args.events]
    for mode in modes:
        extra = [] if mode == "on" else ["--config", events_off_config()]
        print(json.dumps({"events": mode}), flush=True)
        phases = await serve_and_measure(flags + extra, frames, args.cameras, args.viewers, args)
        for p in phases:
            p["events"] = mode
            p["ratio_to_predict_alone"] = round(p["processed_fps_total"] / alone["frames_per_s"], 3)
        results[f"phases_events_{mode}"] = phases
    passthrough = await serve_and_measure(["--model", "none"], frames, [max(args.cameras)], args.viewers, args)
    results["model_none"] = passthrough[0]
    for mode in modes:
        for p in results[f"phases_events_{mode}"]:
            p["ratio_to_model_none"] = round(p["processed_fps_total"] / passthrough[0]["processed_fps_total"], 3)
    if len(modes) == 2:
        results["events_on_over_off"] = [
            round(on["processed_fps_total"] / off["processed_fps_total"], 3)
            for on, off in zip(results["phases_events_on"], results["phases_events_off"])
        ]
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="yolo11n.yaml")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--backend", default="auto")
    p.add_argument("--max-batch", type=int, default=0, help="0: the backend's default")
    p.add_argument("--cameras", type=lambda s: [int(x) for x in s.split(",")], default=[4, 6])
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--viewers", type=int, default=1, help="annotated viewers on each watched camera")
    p.add_argument("--watched", type=int, help="cameras with viewers (default: all)")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=4.0)
    p.add_argument("--predict-seconds", type=float, default=10.0)
    p.add_argument("--events", choices=["on", "off", "both"], default="on")
    p.add_argument("--scene", choices=["plain", "person"], default="plain")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args()
    if Path(args.model).exists():
        args.model = str(Path(args.model).resolve())  # the server runs in a folder of its own
    results = asyncio.run(main_async(args))
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    sys.exit(main())
