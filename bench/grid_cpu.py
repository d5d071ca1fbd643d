"""Server CPU for 16 cameras at 10 fps watched by the live grid's one WebSocket vs 16 MJPEG viewers.

Runs `python -m camserver --model none` in a child process; cameras and viewers run here, so the
child's CPU time (/proc) is the server's alone. Usage: python bench/grid_cpu.py [cameras] [seconds]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import aiohttp
import cv2
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from serverproc import ServerProcess

from camserver.sim.scenes import make_scene


async def camera(url: str, frames: list[bytes], stop: asyncio.Event) -> None:
    """Send `frames` in a loop at 10 fps."""
    async with websockets.connect(url, compression=None) as ws:
        i, next_at = 0, time.monotonic()
        while not stop.is_set():
            await ws.send(frames[i % len(frames)])
            i += 1
            next_at += 0.1
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def mjpeg_viewer(http: aiohttp.ClientSession, url: str, counts: list[int], k: int, stop: asyncio.Event) -> None:
    """Read an MJPEG stream, counting parts."""
    async with http.get(url) as resp:
        reader = aiohttp.MultipartReader.from_response(resp)
        while not stop.is_set():
            part = await reader.next()
            if part is None:
                return
            await part.read()
            counts[k] += 1


async def grid_viewer(http: aiohttp.ClientSession, url: str, ids: list[str], counts: list[int], stop: asyncio.Event) -> None:
    """One grid WebSocket subscribed to every camera."""
    async with http.ws_connect(url, compress=15) as ws:  # offers permessage-deflate, as browsers do
        await ws.send_json({"cameras": ids})
        while not stop.is_set():
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.BINARY:
                return
            counts[0] += 1


async def measure(srv: ServerProcess, ids: list[str], mode: str, seconds: float) -> tuple[float, float]:
    """(server CPU seconds per second, frames per second received by viewers) over `seconds`."""
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as http:
        counts = [0] * len(ids)
        if mode == "grid":
            tasks = [asyncio.create_task(grid_viewer(http, f"{srv.http}/api/grid.ws", ids, counts, stop))]
        else:
            tasks = [asyncio.create_task(mjpeg_viewer(http, f"{srv.http}/cameras/{cid}/stream.mjpg", counts, k, stop))
                     for k, cid in enumerate(ids)]
        await asyncio.sleep(3)  # warm up
        cpu0, n0, t0 = srv.cpu_seconds(), sum(counts), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, n1, t1 = srv.cpu_seconds(), sum(counts), time.monotonic()
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return (cpu1 - cpu0) / (t1 - t0), (n1 - n0) / (t1 - t0)


async def main(n: int, seconds: float) -> None:
    ids = [f"cam-{i:02d}" for i in range(n)]
    frames = [cv2.imencode(".jpg", make_scene(i, 640, 480), [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes() for i in range(10)]
    srv = await ServerProcess.start("--model", "none")
    stop = asyncio.Event()
    cams = [asyncio.create_task(camera(srv.ws(cid), frames, stop)) for cid in ids]
    try:
        await asyncio.sleep(2)
        base_cpu, _ = await measure(srv, [], "mjpeg", seconds)
        for mode in ("mjpeg", "grid", "mjpeg", "grid"):
            cpu, fps = await measure(srv, ids, mode, seconds)
            print(f"{mode:5s}: server CPU {cpu * 100:.1f}% of a core (cameras alone {base_cpu * 100:.1f}%), "
                  f"viewers got {fps:.0f} frames/s ({fps / n:.1f} per camera)", flush=True)
    finally:
        stop.set()
        await asyncio.gather(*cams, return_exceptions=True)
        await srv.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 16, float(sys.argv[2]) if len(sys.argv) > 2 else 10))
