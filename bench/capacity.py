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

`--scene mix --active 2` gives the first 2 cameras the walking person and the others a still
picture with sensor noise (+-3 grey levels per pixel per frame) and a slow exposure drift (+-1%);
`--motion both` measures the same load with motion gating on and off. Every camera is streamed at
its rate either way; the figures say how many of its frames were detected:

    python -m bench.capacity --model ../shared/testdata/shapes-yolo11n.pt --imgsz 320 \
        --scene mix --active 2 --cameras 16 --motion both

The frames carry a stamped sequence number along their bottom edge (for the latency): a motion
mask covers it, as a timestamp overlay would be masked on a real camera.

Frames "processed" are frames streamed; "detected" are those that went to the detector.
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

from bench.fanout import HEIGHT, STAMP_BLOCK, Viewer, pct, stamp, view
from camserver.config.tables import RECORD_MODES
from tests.serverproc import ServerProcess
from camserver.sim.scenes import draw_person, make_scene, person_box

CYCLE = 256  # distinct stamped frames; a latency over CYCLE/fps seconds would be misread


def person_scene(i: int) -> np.ndarray:
    """A simulator scene with a person walking across it (64 frames a crossing)."""
    img = make_scene(i)
    draw_person(img, person_box(cx=80 + 8 * (i % 64), bottom=400, height=220))
    return img


def still_scene(i: int, rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A still picture as a camera sees it: sensor noise of +-3 grey levels, exposure drifting by +-1%."""
    drift = 1.0 + 0.01 * np.sin(2 * np.pi * i / CYCLE)
    noise = rng.integers(-3, 4, background.shape, dtype=np.int16)
    return np.clip(background.astype(np.float32) * drift + noise, 0, 255).astype(np.uint8)


def encode_cycle(quality: int = 80, scene: str = "plain") -> list[bytes]:
    """CYCLE stamped VGA JPEGs, made once so that the cameras cost the benchmark little CPU."""
    if scene == "still":
        rng, background = np.random.default_rng(7), make_scene(5)
        scenes = [still_scene(i, rng, background) for i in range(CYCLE)]
    else:
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


def camera_ids(n: int) -> list[str]:
    """The ids of a phase's n cameras."""
    return [f"cap{n}-{i}" for i in range(n)]


async def run_phase(server: ServerProcess, frames: list[bytes] | dict[str, list[bytes]], n: int, viewers: int,
                    args: argparse.Namespace) -> dict:
    """n cameras at args.fps, `viewers` annotated viewers on each of the first cameras, for args.seconds.

    `frames`: the same cycle for every camera, or one per camera id.
    """
    stop = asyncio.Event()
    ids = camera_ids(n)
    per_camera_frames = frames if isinstance(frames, dict) else {cid: frames for cid in ids}
    sent = {cid: {} for cid in ids}
    watched = ids[: max(0, min(n, args.watched if args.watched is not None else n))]
    tallies = {cid: [Viewer() for _ in range(viewers)] for cid in watched}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        tasks = [asyncio.create_task(camera(server.ws(cid), per_camera_frames[cid], args.fps, sent[cid], stop))
                 for cid in ids]
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
    detected = {c: (after[c]["frames_detected"] - before[c]["frames_detected"]) / span for c in ids}
    active = ids[: args.active] if args.scene == "mix" else ids
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
        "detected_fps_total": round(sum(detected.values()), 1),
        "detected_fps_per_active_camera_min": round(min(detected[c] for c in active), 2) if active else None,
        "detected_fps_per_still_camera_max": round(max((d for c, d in detected.items() if c not in active),
                                                       default=0.0), 2),
        "viewer_fps_min": round(min(viewer_fps), 2) if viewer_fps else None,
        "latency_p50_ms": round(pct(latencies, 0.5), 1) if latencies else None,
        "latency_p95_ms": round(pct(latencies, 0.95), 1) if latencies else None,
        "unreadable_frames": sum(v.unreadable for vs in tallies.values() for v in vs),
        "mean_batch": detection["mean_batch"],
        "batch_inference_ms": detection["batch_ms"],
        "backend": detection["backend"],
        "device": detection["device"],
        "precision": detection.get("precision"),
        "executed": {k: (detection.get("executed") or {}).get(k) for k in ("mode", "num_streams", "threads", "batch")},
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


async def tuned(server: ServerProcess, limit_s: float = 180.0) -> dict | None:
    """Wait (no camera connected yet) for detect.precision auto's pass to finish; its /healthz figures."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            async with session.get(f"{server.http}/healthz") as resp:
                tuning = (await resp.json())["detection"].get("tuning")
            if not tuning or tuning.get("state") in ("done", "failed", "off"):
                return tuning
            await asyncio.sleep(1.0)
    raise TimeoutError(f"precision tuning did not finish within {limit_s:.0f} s")


async def serve_and_measure(extra: list[str], frames: list[bytes] | dict[str, list[bytes]], counts: list[int],
                            viewers: int, args, wait_tuning: bool = False) -> list[dict]:
    workdir = Path(tempfile.mkdtemp(prefix="camserver-bench-"))  # the event store goes here
    server = await ServerProcess.start(*extra, cwd=workdir)
    try:
        if wait_tuning:
            tuning = await tuned(server)
            print(json.dumps({"tuning": tuning}), flush=True)
        results = []
        for n in counts:
            result = await run_phase(server, frames, n, viewers, args)
            print(json.dumps(result), flush=True)
            results.append(result)
        return results
    finally:
        await server.stop()


def bench_config(events: bool, motion: bool, counts: list[int], record: str = "events", precision: str = "") -> str:
    """A config file: events on or off, motion gating on or off with the stamp masked on every camera, recording,
    detect.precision (and a fresh cache for the tuning) where given."""
    path = Path(tempfile.mkdtemp(prefix="camserver-bench-")) / "bench.toml"
    text = (f"[events]\nenabled = {str(events).lower()}\n[motion]\nenabled = {str(motion).lower()}\n"
            f'[record]\nmode = "{record}"\n')
    if precision:
        text += f'[detect]\nprecision = "{precision}"\ncache_dir = "{path.parent / "cache"}"\n'
    band = 1 - (STAMP_BLOCK + 8) / HEIGHT  # the stamped bottom edge, and a little above it
    for n in counts:
        for cid in camera_ids(n):
            text += (f'[[motion.masks]]\ncamera = "{cid}"\n'
                     f"points = [[0.0, {band:.3f}], [1.0, {band:.3f}], [1.0, 1.0], [0.0, 1.0]]\n")
    path.write_text(text)
    return str(path)


def frames_for(args: argparse.Namespace) -> list[bytes] | dict[str, list[bytes]]:
    """One cycle for every camera, or (--scene mix) the person for the first --active cameras, stillness for the rest."""
    if args.scene != "mix":
        return encode_cycle(scene=args.scene)
    person, still = encode_cycle(scene="person"), encode_cycle(scene="still")
    return {cid: person if i < args.active else still for n in args.cameras for i, cid in enumerate(camera_ids(n))}


async def main_async(args: argparse.Namespace) -> dict:
    frames = frames_for(args)
    alone = predict_alone(args, frames if isinstance(frames, list) else next(iter(frames.values())))
    print(json.dumps({"predict_alone": alone}), flush=True)
    flags = ["--model", args.model, "--imgsz", str(args.imgsz), "--backend", args.backend,
             "--max-batch", str(args.max_batch)]
    results: dict = {"model": args.model, "imgsz": args.imgsz, "scene": args.scene, "predict_alone": alone}
    modes = ["on", "off"] if args.events == "both" else [args.events]
    motions = ["on", "off"] if args.motion == "both" else [args.motion]
    if args.precision:
        return await precisions(args, flags, frames, modes[0], motions[0], results)
    for motion in motions:
        for mode in modes:
            extra = ["--config", bench_config(mode == "on", motion == "on", args.cameras, args.record)]
            print(json.dumps({"events": mode, "motion": motion}), flush=True)
            phases = await serve_and_measure(flags + extra, frames, args.cameras, args.viewers, args)
            for p in phases:
                p["events"], p["motion"] = mode, motion
                p["ratio_to_predict_alone"] = round(p["detected_fps_total"] / alone["frames_per_s"], 3)
            key = f"phases_events_{mode}" if len(motions) == 1 else f"phases_events_{mode}_motion_{motion}"
            results[key] = phases
    if len(motions) == 2:
        on, off = results[f"phases_events_{modes[0]}_motion_on"], results[f"phases_events_{modes[0]}_motion_off"]
        results["cpu_motion_on_over_off"] = [round(a["server_cpu_cores"] / b["server_cpu_cores"], 3)
                                             for a, b in zip(on, off)]
        return results
    passthrough = await serve_and_measure(["--model", "none"], frames, [max(args.cameras)], args.viewers, args)
    results["model_none"] = passthrough[0]
    for mode in modes:
        for p in results[f"phases_events_{mode}"]:
            p["ratio_to_model_none"] = round(p["processed_fps_total"] / passthrough[0]["processed_fps_total"], 3)
    if len(modes) == 2:
        results["events_on_over_off"] = [
            round(on["detected_fps_total"] / off["detected_fps_total"], 3)
            for on, off in zip(results["phases_events_on"], results["phases_events_off"])
        ]
    return results


async def precisions(args: argparse.Namespace, flags: list[str], frames: list[bytes] | dict[str, list[bytes]],
                     events: str, motion: str, results: dict) -> dict:
    """--precision a,b: the same load once per detect.precision (auto after its pass finished); the ratios to the first."""
    runs = {}
    for i, precision in enumerate(args.precision.split(",")):
        extra = ["--config", bench_config(events == "on", motion == "on", args.cameras, args.record, precision)]
        print(json.dumps({"precision": precision, "events": events, "motion": motion}), flush=True)
        name = precision if precision not in runs else f"{precision}#{i}"  # repeated: f32,auto,f32,auto
        runs[name] = await serve_and_measure(flags + extra, frames, args.cameras, args.viewers, args,
                                             wait_tuning=precision == "auto")
    results["phases_by_precision"] = runs
    first = next(iter(runs))
    results["detected_fps_over_" + first] = {
        p: [round(a["detected_fps_total"] / b["detected_fps_total"], 3) for a, b in zip(phases, runs[first])]
        for p, phases in runs.items()}
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
    p.add_argument("--scene", choices=["plain", "person", "still", "mix"], default="plain")
    p.add_argument("--active", type=int, default=2, help="--scene mix: cameras with the walking person")
    p.add_argument("--motion", choices=["on", "off", "both"], default="off",
                   help="motion gating (off: every frame to the detector, as before it existed)")
    p.add_argument("--record", choices=RECORD_MODES, default="events",
                   help="record.mode (events: the default)")
    p.add_argument("--precision", default="", help="comma-separated detect.precision values measured one after the "
                   "other under the same load (auto: after its tuning pass), e.g. f32,auto; ratios to the first")
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
