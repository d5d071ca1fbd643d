"""Fan-out benchmark: one camera at a set fps, N MJPEG viewers, the real server in a child process.

Prints, per phase: each viewer's fps, camera-to-viewer latency (the camera stamps a sequence
number into the pixels; viewers read it back), the server's CPU, and the inference time the
server reports. The last phase keeps the viewers connected while the camera is silent.

    python -m bench.fanout --model yolo11n.yaml --fps 10 --viewers 1,16 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass, field

import aiohttp
import cv2
import numpy as np
import websockets

from camserver.config.tables import RECORD_MODES
from tests.serverproc import ServerProcess, config_file
from camserver.sim.simcam import make_scene

STAMP_BITS = 16
STAMP_BLOCK = 32  # pixels per bit; 4 px once a viewer decodes at 1/8 scale
WIDTH, HEIGHT = 640, 480


def stamp(img: np.ndarray, seq: int) -> np.ndarray:
    """Write `seq` as black/white blocks along the bottom edge."""
    out = img.copy()
    for bit in range(STAMP_BITS):
        value = 255 if (seq >> bit) & 1 else 0
        out[HEIGHT - STAMP_BLOCK :, bit * STAMP_BLOCK : (bit + 1) * STAMP_BLOCK] = value
    return out


def read_stamp(jpeg: bytes) -> int | None:
    """The sequence number stamped in a frame, read from a 1/8-scale greyscale decode."""
    small = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
    if small is None or small.shape != (HEIGHT // 8, WIDTH // 8):
        return None
    row = small[-STAMP_BLOCK // 16, :]
    block = STAMP_BLOCK // 8
    seq = 0
    for bit in range(STAMP_BITS):
        px = int(row[bit * block + block // 2])
        if 60 < px < 195:
            return None  # not a stamp (placeholder, or a box drawn over it)
        seq |= (px >= 128) << bit
    return seq


@dataclass
class Viewer:
    """One MJPEG reader's tally."""

    frames: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    unreadable: int = 0


async def view(session: aiohttp.ClientSession, url: str, sent: dict[int, float], viewer: Viewer, stop: asyncio.Event) -> None:
    """Read parts until `stop`; note each frame's latency from the camera's send time."""
    async with session.get(url) as resp:
        content = resp.content
        await content.readline()  # first boundary
        while not stop.is_set():
            length = 0
            seq_header = -1
            while (line := await content.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "x-frame-seq":
                    seq_header = int(value)
            if not length:
                return
            jpeg = await content.readexactly(length)
            now = time.monotonic()
            await content.readline()
            await content.readline()
            if seq_header == 0:
                continue  # placeholder
            seq = read_stamp(jpeg)
            if seq is None or seq not in sent:
                viewer.unreadable += 1
                continue
            viewer.frames += 1
            viewer.latencies_ms.append((now - sent[seq]) * 1000)


async def camera(url: str, fps: float, sent: dict[int, float], stop: asyncio.Event, pause: asyncio.Event) -> None:
    """Send stamped JPEGs paced to `fps` until `stop`; silent (connection open) while `pause` is set."""
    scenes = [make_scene(i) for i in range(30)]
    async with websockets.connect(url, compression=None, max_size=None) as ws:
        await ws.send(json.dumps({"type": "hello", "camera": "bench"}))
        seq = 0
        period = 1.0 / fps
        next_at = time.monotonic()
        while not stop.is_set():
            if pause.is_set():
                await asyncio.sleep(0.05)
                next_at = time.monotonic()
                continue
            seq = (seq + 1) % (1 << STAMP_BITS)
            ok, buf = cv2.imencode(".jpg", stamp(scenes[seq % len(scenes)], seq), [cv2.IMWRITE_JPEG_QUALITY, 80])
            sent[seq] = time.monotonic()
            await ws.send(buf.tobytes())
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def camera_figures(session: aiohttp.ClientSession, base: str) -> dict:
    async with session.get(f"{base}/api/cameras") as resp:
        return next(c for c in await resp.json() if c["id"] == "bench")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def measure(server: ServerProcess, session: aiohttp.ClientSession, n: int, seconds: float, sent: dict[int, float]) -> dict:
    """Run `n` viewers for 2 s of warm-up plus `seconds` of measurement; returns the raw tallies."""
    stop = asyncio.Event()
    viewers = [Viewer() for _ in range(n)]
    url = f"{server.http}/cameras/bench/stream.mjpg"
    tasks = [asyncio.create_task(view(session, url, sent, v, stop)) for v in viewers]
    await asyncio.sleep(2.0)  # let every viewer connect and get past the first frame
    for v in viewers:
        v.frames, v.latencies_ms, v.unreadable = 0, [], 0
    before = await camera_figures(session, server.http)
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, t1 = server.cpu_seconds(), time.monotonic()
    after = await camera_figures(session, server.http)
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "viewers": viewers,
        "span": t1 - t0,
        "server_cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0),
        "after": after,
        "delta": {k: after[k] - before[k] for k in ("frames_processed", "frames_dropped")},
    }


async def phase(server: ServerProcess, session: aiohttp.ClientSession, n: int, seconds: float, sent: dict[int, float]) -> dict:
    """Measure `seconds` with `n` viewers on a live camera."""
    m = await measure(server, session, n, seconds, sent)
    viewers = m["viewers"]
    fps = [v.frames / m["span"] for v in viewers]
    lat = [ms for v in viewers for ms in v.latencies_ms]
    return {
        "viewers": n,
        "viewer_fps_min": round(min(fps), 2),
        "viewer_fps_mean": round(statistics.mean(fps), 2),
        "latency_p50_ms": round(pct(lat, 0.5), 1),
        "latency_p95_ms": round(pct(lat, 0.95), 1),
        "server_cpu_pct": round(m["server_cpu_pct"], 1),
        "inference_ms": m["after"]["inference_ms"],
        "frames_processed": m["delta"]["frames_processed"],
        "frames_dropped": m["delta"]["frames_dropped"],
        "unreadable": sum(v.unreadable for v in viewers),
    }


async def idle_phase(server: ServerProcess, session: aiohttp.ClientSession, n: int, seconds: float, pause: asyncio.Event) -> dict:
    """Viewers connected, camera connected but silent: count inferences and CPU."""
    pause.set()
    try:
        m = await measure(server, session, n, seconds, {})
    finally:
        pause.clear()
    return {
        "viewers": n,
        "camera": "silent",
        "inferences": m["delta"]["frames_processed"],
        "server_cpu_pct": round(m["server_cpu_pct"], 2),
    }


async def main_async(args: argparse.Namespace) -> dict:
    server = await ServerProcess.start("--model", args.model, "--imgsz", str(args.imgsz), "--config", config_file(f'[record]\nmode = "{args.record}"\n'))
    sent: dict[int, float] = {}
    stop, pause = asyncio.Event(), asyncio.Event()
    results: dict = {"model": args.model, "imgsz": args.imgsz, "camera_fps": args.fps, "phases": []}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            cam = asyncio.create_task(camera(server.ws("bench"), args.fps, sent, stop, pause))
            await asyncio.sleep(3.0)  # warm-up frames
            for n in args.viewers:
                res = await phase(server, session, n, args.seconds, sent)
                print(json.dumps(res), flush=True)
                results["phases"].append(res)
            idle = await idle_phase(server, session, max(args.viewers), args.idle_seconds, pause)
            print(json.dumps(idle), flush=True)
            results["idle"] = idle
            stop.set()
            await cam
    finally:
        await server.stop()
    phases = results["phases"]
    if len(phases) >= 2:
        one, many = phases[0], phases[-1]
        results["summary"] = {
            f"fps_{many['viewers']}_over_{one['viewers']}": round(many["viewer_fps_min"] / one["viewer_fps_mean"], 3),
            f"cpu_{many['viewers']}_over_{one['viewers']}": round(many["server_cpu_pct"] / one["server_cpu_pct"], 3),
            "latency_p50_minus_inference_ms": round(many["latency_p50_ms"] - (many["inference_ms"] or 0), 1),
            "idle_inferences": results["idle"]["inferences"],
            "idle_cpu_pct": results["idle"]["server_cpu_pct"],
        }
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="yolo11n.yaml")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--viewers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--idle-seconds", type=float, default=10.0)
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--record", choices=RECORD_MODES, default="events", help="record.mode (events: the default)")
    args = p.parse_args()
    results = asyncio.run(main_async(args))
    print(json.dumps(results.get("summary", {}), indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    sys.exit(main())
