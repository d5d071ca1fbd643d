"""Decode-bomb benchmark: what one hostile camera costs the others.

A normal camera streams VGA at 10 fps with V annotated viewers, first alone, then while a second
camera sends the 84,000-scan progressive JPEG (1 MB, 2592x1944, 16 s of CPU to decode) at 2 fps.
It prints, for both phases, the normal camera's frames streamed and detected per second and its
viewers' fps, and their ratios (the target: >= 0.9 each), plus what the bomb camera's frames
became (rejected by reason).

    python -m bench.bomb --seconds 20 --viewers 2
    python -m bench.bomb --model ../shared/testdata/shapes-yolo11n.pt --imgsz 320

Every frame of the normal camera goes to the detector here (motion gating off), as in the
report that found the problem.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import aiohttp
import websockets

from bench.capacity import camera, cameras_json, encode_cycle
from bench.fanout import Viewer, view
from tests.hostile import scan_bomb
from tests.serverproc import ServerProcess


async def bomber(url: str, bomb: bytes, fps: float, stop: asyncio.Event) -> int:
    """Send the bomb at `fps` until `stop`; returns how many went."""
    sent = 0
    async with websockets.connect(url, compression=None, max_size=None) as ws:
        next_at = time.monotonic()
        while not stop.is_set():
            await ws.send(bomb)
            sent += 1
            next_at += 1 / fps
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return sent


async def phase(server: ServerProcess, frames: list[bytes], bomb: bytes | None, args: argparse.Namespace) -> dict:
    stop = asyncio.Event()
    sent: dict[int, float] = {}
    viewers = [Viewer() for _ in range(args.viewers)]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        tasks = [asyncio.create_task(camera(server.ws("good"), frames, args.fps, sent, stop))]
        tasks += [asyncio.create_task(view(session, f"{server.http}/cameras/good/stream.mjpg", sent, v, stop))
                  for v in viewers]
        bomb_task = asyncio.create_task(bomber(server.ws("bomb"), bomb, args.bomb_fps, stop)) if bomb else None
        await asyncio.sleep(args.warmup)
        for v in viewers:
            v.frames = 0
        before = await cameras_json(session, server.http)
        started = time.monotonic()
        await asyncio.sleep(args.seconds)
        span = time.monotonic() - started
        after = await cameras_json(session, server.http)
        async with session.get(f"{server.http}/healthz") as resp:
            health = await resp.json()
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        bombs = (await bomb_task) if bomb_task else 0
    good0, good1 = before["good"], after["good"]
    return {
        "bomb": bomb is not None,
        "good_streamed_fps": round((good1["frames_processed"] - good0["frames_processed"]) / span, 2),
        "good_detected_fps": round((good1["frames_detected"] - good0["frames_detected"]) / span, 2),
        "good_viewer_fps_min": round(min(v.frames for v in viewers) / span, 2),
        "bombs_sent": bombs,
        "bomb_camera_rejected": after.get("bomb", {}).get("rejected"),
        "healthz_status": health["status"],
    }


async def main_async(args: argparse.Namespace) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="camserver-bench-"))
    config = folder / "bench.toml"
    config.write_text(f'[motion]\nenabled = false\n[storage]\ndir = "{folder / "data"}"\n')
    frames = encode_cycle()
    bomb = scan_bomb()
    server = await ServerProcess.start("--config", str(config), "--model", args.model, "--imgsz", str(args.imgsz),
                                       cwd=folder)
    try:
        alone = await phase(server, frames, None, args)
        print(json.dumps(alone), flush=True)
        attacked = await phase(server, frames, bomb, args)
        print(json.dumps(attacked), flush=True)
    finally:
        await server.stop()
    ratios = {key: round(attacked[key] / alone[key], 3) if alone[key] else None
              for key in ("good_streamed_fps", "good_detected_fps", "good_viewer_fps_min")}
    return {"model": args.model, "bomb_bytes": len(bomb), "alone": alone, "with_bomb": attacked,
            "ratio_with_bomb_over_alone": ratios}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="yolo11n.yaml")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--bomb-fps", type=float, default=2.0)
    p.add_argument("--viewers", type=int, default=2)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=3.0)
    args = p.parse_args()
    if Path(args.model).exists():
        args.model = str(Path(args.model).resolve())  # the server runs in a folder of its own
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    main()
